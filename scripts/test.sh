#!/usr/bin/env bash
# Runs every check and test of the workspace: formatting, lints, a build of every target
# (benchmark binaries included: compiled, not run), the test suite under nextest, and the
# README's demo (scripts/demo.sh) on the debug CLI, and the checks of deploy/ (scripts/check-deploy.sh).
#
# It installs nothing. Prerequisites: Rust 1.95 with rustfmt and clippy, cargo-nextest, git, and the
# Debian packages restic, git-lfs, zip, unzip, curl, prometheus (promtool), etcd-server and etcd-client, python-github-backup 0.65.1, and the object-store
# peers of peers/install.sh (`.ci/run` installs those before calling this script).
#
# Environment: NEXTEST_PROFILE (default ci), CARGO_TARGET_DIR (default: cargo's, ./target).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

phase() {
    local name=$1 start=$SECONDS
    shift
    echo "== $name: $*"
    "$@"
    echo "== $name: $((SECONDS - start))s"
}

missing=()
for tool in cargo cargo-nextest git restic git-lfs zip unzip curl openssl promtool etcd etcdctl systemd-analyze systemd-sysusers man github-backup; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
peers=${REPOVAULT_PEERS_DIR:-$HOME/.cache/repovault-peers}
for peer in venv/bin/moto_server venv/bin/fake-gcs-server azurite/node_modules/.bin/azurite-blob; do
    [[ -x $peers/$peer ]] || missing+=("$peers/$peer")
done
if ((${#missing[@]})); then
    echo "scripts/test.sh: missing prerequisites: ${missing[*]}" >&2
    echo "  apt-get install -y --no-install-recommends restic git-lfs zip unzip curl openssl prometheus etcd-server etcd-client   (promtool, etcd, etcdctl; or run .ci/run, which does)" >&2
    echo "  cargo-nextest: https://nexte.st/docs/installation/" >&2
    echo "  github-backup: python3 -m pip install github-backup==0.65.1   (forge-sim's independent client)" >&2
    echo "  object-store peers (moto, Azurite, fake-gcs-server): peers/install.sh" >&2
    echo "  deploy checks' tools: scripts/check-deploy.sh --install-only" >&2
    exit 2
fi

total=$SECONDS
phase fmt cargo fmt --all -- --check
phase clippy cargo clippy --workspace --all-targets --locked -- -D warnings
phase build cargo build --workspace --all-targets --locked
phase test cargo nextest run --workspace --locked --profile "${NEXTEST_PROFILE:-ci}"
# The README's main job, on the binary just built: it must keep working as the CLI changes.
phase demo env REPOVAULT_BIN="$(realpath "${CARGO_TARGET_DIR:-target}")/debug/repovault" scripts/demo.sh
# deploy/ against the binary just built: manifests, units, rules and examples (scripts/check-deploy.sh).
phase deploy env REPOVAULT_BIN="$(realpath "${CARGO_TARGET_DIR:-target}")/debug/repovault" scripts/check-deploy.sh --no-install
echo "== all checks and tests passed in $((SECONDS - total))s"
