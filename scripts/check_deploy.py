#!/usr/bin/env python3
"""The structural checks of scripts/check-deploy.sh (run by it, inside its pinned venv).

Each subcommand prints what it checked and exits non-zero naming every problem it found:

  k8s RENDERED_DIR K8S_VERSION   rendered kustomize variants: built-in kinds against Kubernetes'
                                 own schemas (kubernetes-validate, strict), KEDA's objects
                                 against the schema below, and the manifests against each other
  metrics ALLOWED_OUT PROMQL_OUT  metric names in alerts.yml and the dashboard against
                                 coordinator/src/metric_families.rs; writes the dashboard's
                                 queries as a rules file for promtool to parse
  compose RENDERED_JSON TOML     `docker compose config` output against the invariants below
  tomls RENDERED_DIR OUT_DIR     writes each variant's coordinator.toml (from its ConfigMap)
  live WHAT RENDERED_DIR ...     the etcd and worker arguments and the probes the live check
                                 runs, one per line
  check-env TOML DIR             the REPOVAULT_* overrides that point TOML's secret files at
                                 stand-ins in DIR, for `repovault coordinator --check`
"""

import json
import re
import sys
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"

# The fleet-scaling gauges every dashboard must show (each declared in
# coordinator/src/metric_families.rs; the check fails on any that is not).
FLEET_GAUGES = [
    "repovault_queue_depth",
    "repovault_queue_oldest_ready_seconds",
    "repovault_tasks_leased",
    "repovault_worker_slots",
    "repovault_desired_workers",
]
# Series Prometheus makes itself.
PROMETHEUS_SERIES = ["up"]

problems: list[str] = []


def fail(msg: str) -> None:
    problems.append(msg)
    print(f"  FAIL {msg}")


def ok(msg: str) -> None:
    print(f"  ok   {msg}")


def finish() -> None:
    if problems:
        print(f"{len(problems)} problem(s)")
        sys.exit(1)


def load_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


# ---------------------------------------------------------------------------------------------
# KEDA (keda.sh/v1alpha1): its CRDs are not among kubernetes-validate's schemas. This schema is
# written from KEDA 2.x's documented fields (keda.sh/docs: ScaledObject, ScaledJob,
# TriggerAuthentication, the external scaler), closed wherever KEDA's own CRD is, so a
# misspelt field fails. A ScaledJob's jobTargetRef is a batch/v1 JobSpec: it is validated by
# kubernetes-validate inside a Job; an HPA behaviour likewise inside an HPA.

_int0 = {"type": "integer", "minimum": 0}
_int1 = {"type": "integer", "minimum": 1}
_TRIGGER = {
    "type": "object",
    "additionalProperties": False,
    "required": ["type", "metadata"],
    "properties": {
        "type": {"type": "string", "minLength": 1},
        "name": {"type": "string"},
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
        "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
        "useCachedMetrics": {"type": "boolean"},
        "authenticationRef": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "kind": {"enum": ["TriggerAuthentication", "ClusterTriggerAuthentication"]},
            },
        },
    },
    # The external scaler: scalerAddress is required (host:port); TLS switches are strings.
    "if": {"properties": {"type": {"enum": ["external", "external-push"]}}},
    "then": {
        "properties": {
            "metadata": {
                "required": ["scalerAddress"],
                "properties": {
                    "scalerAddress": {"type": "string", "pattern": r"^[A-Za-z0-9.-]+:[0-9]+$"},
                    "enableTLS": {"enum": ["true", "false"]},
                    "unsafeSsl": {"enum": ["true", "false"]},
                },
            }
        }
    },
}
_META = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}},
}


def _keda(kind: str, spec: dict) -> dict:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "kind": {"const": kind},
            "metadata": _META,
            "spec": spec,
        },
    }


KEDA_SCHEMAS = {
    "ScaledObject": _keda(
        "ScaledObject",
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["scaleTargetRef", "triggers"],
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "envSourceContainerName": {"type": "string"},
                    },
                },
                "pollingInterval": _int1,
                "cooldownPeriod": _int0,
                "initialCooldownPeriod": _int0,
                "idleReplicaCount": _int0,
                "minReplicaCount": _int0,
                "maxReplicaCount": _int1,
                "fallback": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["failureThreshold", "replicas"],
                    "properties": {
                        "failureThreshold": _int0,
                        "replicas": _int0,
                        "behavior": {
                            "enum": [
                                "static",
                                "currentReplicas",
                                "currentReplicasIfHigher",
                                "currentReplicasIfLower",
                                "scalingModifiers",
                            ]
                        },
                    },
                },
                "advanced": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "horizontalPodAutoscalerConfig": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {"name": {"type": "string"}, "behavior": {"type": "object"}},
                        },
                        "scalingModifiers": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "formula": {"type": "string"},
                                "target": {"type": "string"},
                                "activationTarget": {"type": "string"},
                                "metricType": {"enum": ["AverageValue", "Value"]},
                            },
                        },
                    },
                },
                "triggers": {"type": "array", "minItems": 1, "items": _TRIGGER},
            },
        },
    ),
    "ScaledJob": _keda(
        "ScaledJob",
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["jobTargetRef", "triggers"],
            "properties": {
                "jobTargetRef": {"type": "object", "required": ["template"]},
                "pollingInterval": _int1,
                "successfulJobsHistoryLimit": _int0,
                "failedJobsHistoryLimit": _int0,
                "envSourceContainerName": {"type": "string"},
                "minReplicaCount": _int0,
                "maxReplicaCount": _int1,
                "rolloutStrategy": {"enum": ["gradual", "immediate"]},
                "rollout": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "strategy": {"enum": ["gradual", "immediate"]},
                        "propagationPolicy": {"enum": ["foreground", "background"]},
                    },
                },
                "scalingStrategy": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "strategy": {"enum": ["default", "custom", "accurate", "eager"]},
                        "customScalingQueueLengthDeduction": {"type": "integer"},
                        "customScalingRunningJobPercentage": {"type": "string"},
                        "pendingPodConditions": {"type": "array", "items": {"type": "string"}},
                        "multipleScalersCalculation": {"enum": ["max", "min", "avg", "sum"]},
                    },
                },
                "triggers": {"type": "array", "minItems": 1, "items": _TRIGGER},
            },
        },
    ),
    "TriggerAuthentication": _keda(
        "TriggerAuthentication",
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "secretTargetRef": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["parameter", "name", "key"],
                        "properties": {
                            "parameter": {"type": "string"},
                            "name": {"type": "string"},
                            "key": {"type": "string"},
                        },
                    },
                },
                "env": {"type": "array"},
                "configMapTargetRef": {"type": "array"},
                "podIdentity": {"type": "object"},
                "hashiCorpVault": {"type": "object"},
                "azureKeyVault": {"type": "object"},
                "awsSecretManager": {"type": "object"},
                "gcpSecretManager": {"type": "object"},
                "boundServiceAccountToken": {"type": "array"},
            },
        },
    ),
}


def validate_builtin(doc: dict, version: str, where: str) -> None:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = "/".join(str(p) for p in e.path)
        fail(f"{where}: {doc['kind']} {doc['metadata'].get('name')}: {path}: {e.message}")
    except kubernetes_validate.SchemaNotFoundError:
        fail(f"{where}: no Kubernetes {version} schema for {doc.get('apiVersion')} {doc.get('kind')}")


def validate_keda(doc: dict, version: str, where: str) -> None:
    name = f"{doc['kind']} {doc['metadata'].get('name')}"
    errors = sorted(
        jsonschema.Draft202012Validator(KEDA_SCHEMAS[doc["kind"]]).iter_errors(doc), key=str
    )
    for e in errors:
        fail(f"{where}: {name}: {'/'.join(map(str, e.path))}: {e.message}")
    spec = doc["spec"]
    # The parts KEDA hands to Kubernetes unchanged, against Kubernetes' own schemas.
    if doc["kind"] == "ScaledJob" and isinstance(spec.get("jobTargetRef"), dict):
        job = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": doc["metadata"]["name"]},
            "spec": spec["jobTargetRef"],
        }
        validate_builtin(job, version, f"{where}: {name}: jobTargetRef as a batch/v1 Job")
    behavior = spec.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior")
    if behavior is not None:
        hpa = {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": doc["metadata"]["name"]},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
                "maxReplicas": 1,
                "behavior": behavior,
            },
        }
        validate_builtin(hpa, version, f"{where}: {name}: advanced HPA behavior")


# ---------------------------------------------------------------------------------------------
# The manifests against each other and against the coordinator's configuration.


def duration_secs(text: str) -> int:
    m = re.fullmatch(r"(\d+)(s|m|h)", text)
    if not m:
        raise ValueError(f"not a duration this check knows: {text!r}")
    return int(m[1]) * {"s": 1, "m": 60, "h": 3600}[m[2]]


def flag(args: list[str], name: str) -> str | None:
    for i, a in enumerate(args):
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
        if a == name and i + 1 < len(args):
            return args[i + 1]
    return None


def pod_templates(doc: dict):
    kind = doc["kind"]
    if kind in ("Deployment", "StatefulSet"):
        yield doc["spec"]["template"]
    elif kind == "ScaledJob":
        yield doc["spec"]["jobTargetRef"]["template"]


def coordinator_config(docs: list[dict]) -> dict:
    cms = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "repovault-coordinator"]
    return tomllib.loads(cms[0]["data"]["coordinator.toml"]) if cms else {}


def resolve_file(path: str, pod: dict, container: dict, sources: dict, where: str, what: str) -> None:
    """`path` must be a file a mounted ConfigMap or Secret provides in `container`."""
    if path is None:
        fail(f"{where}: {what} is not given")
        return
    volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
    for m in container.get("volumeMounts", []):
        mount = m["mountPath"].rstrip("/")
        if not path.startswith(mount + "/"):
            continue
        rel = path[len(mount) + 1 :]
        v = volumes.get(m["name"], {})
        for kind, ref_key in (("secret", "secretName"), ("configMap", "name")):
            if kind not in v:
                continue
            src_name = v[kind][ref_key]
            items = v[kind].get("items")
            key = next((i["key"] for i in items if i["path"] == rel), None) if items else rel
            keys = sources.get((kind, src_name))
            if keys is None:
                fail(f"{where}: {what} {path}: {kind} {src_name} is neither rendered nor in secrets.example.yaml")
            elif key is None or key not in keys:
                fail(f"{where}: {what} {path}: {kind} {src_name} has no key for {rel!r} (keys: {sorted(keys)})")
            return
        fail(f"{where}: {what} {path}: mounted from volume {m['name']}, which is no ConfigMap or Secret")
        return
    fail(f"{where}: {what} {path}: no volume is mounted there")


def check_variant(name: str, docs: list[dict], secrets: list[dict], version: str) -> None:
    where = f"variant {name}"
    for d in docs:
        if d.get("apiVersion", "").startswith("keda.sh/"):
            validate_keda(d, version, where)
        else:
            validate_builtin(d, version, where)
    ok(f"{where}: {len(docs)} objects validated (Kubernetes {version}, strict; KEDA schema)")

    by = lambda kind, n: next((d for d in docs if d["kind"] == kind and d["metadata"]["name"] == n), None)
    if any(d["kind"] == "Secret" for d in docs):
        fail(f"{where}: renders a Secret; Secrets are created with kubectl create secret, never applied from here")
    sources = {("configMap", d["metadata"]["name"]): set(d.get("data", {})) for d in docs if d["kind"] == "ConfigMap"}
    sources.update({("secret", s["metadata"]["name"]): set(s.get("stringData", {})) | set(s.get("data", {})) for s in secrets})

    cfg = coordinator_config(docs)
    sts = by("StatefulSet", "repovault-coordinator")
    if sts is None or not cfg:
        fail(f"{where}: no coordinator StatefulSet or ConfigMap")
        return
    replicas = sts["spec"].get("replicas")
    if cfg.get("store", {}).get("kind") == "etcd":
        # A group: one leads, the others follow; only the leader is ready (/readyz), so the
        # Service sends it every call, and a rolling update would wait forever on a follower.
        if not isinstance(replicas, int) or replicas < 2:
            fail(f"{where}: a coordinator group on etcd runs at least 2 replicas (one leads, one takes over)")
        elif sts["spec"].get("updateStrategy", {}).get("type") != "OnDelete":
            fail(f"{where}: a coordinator group needs updateStrategy OnDelete (followers are never ready, a RollingUpdate would stall)")
        elif sts["spec"].get("podManagementPolicy") != "Parallel":
            fail(f"{where}: a coordinator group needs podManagementPolicy Parallel (a follower is never ready)")
        else:
            ok(f"{where}: a group of {replicas} coordinators, OnDelete, started in parallel")
    elif replicas != 1:
        fail(f"{where}: the coordinator StatefulSet on redb must have replicas: 1 (redb is one process's file)")
    else:
        ok(f"{where}: one coordinator replica (redb)")
    svc = by("Service", "repovault-coordinator")
    ports = {p["name"]: p["port"] for p in svc["spec"]["ports"]}
    scaling = cfg.get("scaling", {})
    tls = "tls" in cfg

    images = set()
    for d in docs:
        for tmpl in pod_templates(d):
            pod_where = f"{where}: {d['kind']} {d['metadata']['name']}"
            spec = tmpl["spec"]
            if spec.get("enableServiceLinks") is not False:
                fail(f"{pod_where}: enableServiceLinks must be false (service links inject REPOVAULT_* variables)")
            psc = spec.get("securityContext", {})
            if psc.get("runAsNonRoot") is not True:
                fail(f"{pod_where}: runAsNonRoot is not set")
            vols = {v["name"]: v for v in spec.get("volumes", [])}
            for c in spec["containers"]:
                csc = c.get("securityContext", {})
                if csc.get("readOnlyRootFilesystem") is not True or csc.get("allowPrivilegeEscalation") is not False:
                    fail(f"{pod_where}: container {c['name']}: needs readOnlyRootFilesystem and no privilege escalation")
                for m in c.get("volumeMounts", []):
                    if m["name"] not in vols and not (d["kind"] == "StatefulSet" and m["name"] in
                                                      {t["metadata"]["name"] for t in d["spec"].get("volumeClaimTemplates", [])}):
                        fail(f"{pod_where}: mount {m['mountPath']} names no volume {m['name']}")
                for e in c.get("env", []):
                    ref = e.get("valueFrom", {}).get("secretKeyRef")
                    if ref and ref["key"] not in sources.get(("secret", ref["name"]), set()):
                        fail(f"{pod_where}: env {e['name']}: secret {ref['name']} key {ref['key']} unknown")
                if not c["image"].startswith("repovault"):
                    continue
                images.add(c["image"])
                args = c.get("args", [])
                if args[:1] == ["coordinator"]:
                    resolve_file(flag(args, "--config"), tmpl, c, sources, pod_where, "--config")
                    for key in ("master_key_file", "join_token_file", "admin_token_file"):
                        if key in cfg:
                            resolve_file(cfg[key], tmpl, c, sources, pod_where, key)
                    for key in ("cert_file", "key_file"):
                        if tls:
                            resolve_file(cfg["tls"][key], tmpl, c, sources, pod_where, f"tls.{key}")
                    cports = {p["name"]: p["containerPort"] for p in c["ports"]}
                    for port_name, key in (("grpc", "listen"), ("http", "http_listen")):
                        if int(cfg[key].rsplit(":", 1)[1]) != cports.get(port_name):
                            fail(f"{pod_where}: {key} {cfg[key]} is not containerPort {port_name}")
                    probes = {p: c.get(p, {}).get("httpGet", {}) for p in ("startupProbe", "livenessProbe", "readinessProbe")}
                    want = {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}
                    scheme = "HTTPS" if tls else "HTTP"
                    for p, path in want.items():
                        if probes[p].get("path") != path or probes[p].get("port") != "http":
                            fail(f"{pod_where}: {p} must GET {path} on port http")
                        if probes[p].get("scheme", "HTTP") != scheme:
                            fail(f"{pod_where}: {p} must use scheme {scheme}: [tls] {'serves' if tls else 'does not serve'} the HTTP port over TLS")
                    annotations = tmpl["metadata"].get("annotations", {})
                    if annotations.get("prometheus.io/scheme", "http") != scheme.lower():
                        fail(f"{pod_where}: prometheus.io/scheme must be {scheme.lower()}")
                    ok(f"{pod_where}: ports and probes match coordinator.toml; --config and its key files are mounted from the ConfigMap and Secrets")
                elif args[:1] == ["worker"]:
                    grace = duration_secs(flag(args, "--drain-grace") or "60s")
                    tgp = spec.get("terminationGracePeriodSeconds", 30)
                    if tgp < grace + 30:
                        fail(f"{pod_where}: terminationGracePeriodSeconds {tgp} < --drain-grace {grace} s + 30 s for the releases")
                    slots = int(flag(args, "--slots") or 2)
                    if slots != scaling.get("slots_per_worker", 2):
                        fail(f"{pod_where}: --slots {slots} != [scaling] slots_per_worker {scaling.get('slots_per_worker', 2)}")
                    resolve_file(flag(args, "--join-token-file"), tmpl, c, sources, pod_where, "--join-token-file")
                    if tls:
                        resolve_file(flag(args, "--ca-file"), tmpl, c, sources, pod_where, "--ca-file")
                    url = next((e["value"] for e in c.get("env", []) if e["name"] == "REPOVAULT_COORDINATOR"), "")
                    want_url = f"{'https' if tls else 'http'}://repovault-coordinator:{ports['grpc']}"
                    if url != want_url:
                        fail(f"{pod_where}: REPOVAULT_COORDINATOR {url!r}, expected {want_url!r}")
                    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
                    for path in (flag(args, "--cache-dir") or "/var/cache/repovault", "/tmp"):
                        if "emptyDir" not in vols.get(mounts.get(path, ""), {}):
                            fail(f"{pod_where}: {path} must be an emptyDir (the root filesystem is read-only)")
                    if d["kind"] == "ScaledJob" and not flag(args, "--exit-when-idle"):
                        fail(f"{pod_where}: a ScaledJob worker needs --exit-when-idle, or its Job never completes")
                    ok(f"{pod_where}: grace {tgp} s >= {grace} + 30 s, --slots {slots} = slots_per_worker, token and CA mounted, URL {url}")
    if len(images) != 1:
        fail(f"{where}: repovault images differ: {sorted(images)}")
    else:
        ok(f"{where}: every repovault container runs {images.pop()}")

    max_workers = scaling.get("max_workers", 20)
    for d in docs:
        n = d["spec"].get("maxReplicas") if d["kind"] == "HorizontalPodAutoscaler" else (
            d["spec"].get("maxReplicaCount") if d["kind"] in ("ScaledObject", "ScaledJob") else None)
        if n is not None:
            if n != max_workers:
                fail(f"{where}: {d['kind']} {d['metadata']['name']} allows {n} workers, [scaling] max_workers is {max_workers}")
            else:
                ok(f"{where}: {d['kind']} maximum {n} = [scaling] max_workers")
        for t in d["spec"].get("triggers", []) if d["kind"] in ("ScaledObject", "ScaledJob") else []:
            md = t["metadata"]
            host, port = md["scalerAddress"].rsplit(":", 1)
            if not re.fullmatch(r"repovault-coordinator\.[a-z0-9-]+\.svc(\.cluster\.local)?", host) or int(port) != ports["grpc"]:
                fail(f"{where}: {d['kind']} scalerAddress {md['scalerAddress']}: must be the coordinator Service's full name "
                     f"(KEDA runs in its own namespace) and its grpc port {ports['grpc']}")
            if (md.get("enableTLS") == "true") != tls:
                fail(f"{where}: {d['kind']} enableTLS {md.get('enableTLS')!r} but coordinator.toml {'has' if tls else 'has no'} [tls]")
            auth = by("TriggerAuthentication", t.get("authenticationRef", {}).get("name", ""))
            if tls and auth is None:
                fail(f"{where}: {d['kind']}: TLS needs a TriggerAuthentication with caCert")
            for ref in (auth or {}).get("spec", {}).get("secretTargetRef", []):
                if ref["key"] not in sources.get(("secret", ref["name"]), set()):
                    fail(f"{where}: TriggerAuthentication: secret {ref['name']} key {ref['key']} unknown")
            ok(f"{where}: {d['kind']} {d['metadata']['name']} asks {md['scalerAddress']} (TLS {md.get('enableTLS')})")
    if by("ScaledJob", "repovault-worker-burst") and by("ScaledJob", "repovault-worker-burst")["spec"].get("minReplicaCount") != 0:
        fail(f"{where}: the burst ScaledJob must scale to zero (minReplicaCount: 0)")
    scalers = [d for d in docs if d["kind"] in ("HorizontalPodAutoscaler", "ScaledObject", "ScaledJob")]
    if len(scalers) != 1:
        fail(f"{where}: {len(scalers)} autoscalers; the figure is fleet-wide, so exactly one pool may be autoscaled")

    store = cfg.get("store", {})
    if store.get("kind") == "etcd":
        etcd = by("StatefulSet", "repovault-etcd")
        esvc = by("Service", "repovault-etcd")
        if etcd is None or esvc is None:
            fail(f"{where}: [store] is etcd but no repovault-etcd StatefulSet and Service")
            return
        n = etcd["spec"]["replicas"]
        client = next(p["port"] for p in esvc["spec"]["ports"] if p["name"] == "client")
        want = [f"repovault-etcd-{i}.{esvc['metadata']['name']}:{client}" for i in range(n)]
        if store.get("endpoints") != want:
            fail(f"{where}: [store] endpoints {store.get('endpoints')} != the members {want}")
        if esvc["spec"].get("clusterIP") != "None" or esvc["spec"].get("publishNotReadyAddresses") is not True:
            fail(f"{where}: the etcd Service must be headless and publish not-ready addresses (members resolve each other before quorum)")
        if etcd["spec"].get("podManagementPolicy") != "Parallel":
            fail(f"{where}: etcd members must start in parallel (a quorum needs them all)")
        eargs = etcd["spec"]["template"]["spec"]["containers"][0]["args"]
        for needed in ("--auto-compaction-mode", "--auto-compaction-retention", f"--initial-cluster"):
            if not flag(eargs, needed):
                fail(f"{where}: etcd lacks {needed}")
        if "volumeClaimTemplates" in sts["spec"]:
            fail(f"{where}: with the state in etcd the coordinator keeps no volume")
        pdb = by("PodDisruptionBudget", "repovault-etcd")
        if pdb is None or pdb["spec"].get("minAvailable") != n // 2 + 1:
            fail(f"{where}: the etcd PodDisruptionBudget must keep a quorum ({n // 2 + 1} of {n})")
        ok(f"{where}: [store] endpoints = the {n} etcd members; headless Service, parallel start, quorum budget")
    else:
        if not sts["spec"].get("volumeClaimTemplates"):
            fail(f"{where}: redb state needs the coordinator's volume")
        else:
            ok(f"{where}: redb state on the coordinator's volume")


def cmd_k8s(rendered: Path, version: str) -> None:
    secrets = load_docs(DEPLOY / "kubernetes" / "secrets.example.yaml")
    for s in secrets:
        validate_builtin(s, version, "secrets.example.yaml")
        for k, v in s.get("stringData", {}).items():
            if not (v.startswith("<") and v.endswith(">")):
                fail(f"secrets.example.yaml: {s['metadata']['name']} {k} is not a <placeholder>")
    ok(f"secrets.example.yaml: {len(secrets)} Secret templates, placeholders only")
    for f in sorted(rendered.glob("*.yaml")):
        print(f"-- {f.stem}")
        check_variant(f.stem, load_docs(f), secrets, version)
    finish()


# ---------------------------------------------------------------------------------------------
# Metric names.

PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and",
    "or", "unless", "inf", "nan", "atan2",
}


def declared_metrics() -> tuple[set[str], set[str]]:
    """Names from metric_families.rs: (every series name, histogram base names)."""
    src = (ROOT / "coordinator" / "src" / "metric_families.rs").read_text()
    consts = dict(re.findall(r'const ([A-Z_]+): &str = "([a-z_:]+)";', src))
    plain = set(re.findall(r'\b(?:counter|gauge)\(\s*"([a-z_:][a-z0-9_:]*)"', src))
    hist = set()
    for body in re.findall(r"Family\s*\{(.*?)\}", src, re.S):
        if "Kind::Histogram" in body:
            m = re.search(r"name:\s*(?:\"([a-z0-9_:]+)\"|([A-Z_]+))", body)
            hist.add(m[1] or consts[m[2]])
    names = set(plain)
    for h in hist:
        names |= {h + "_bucket", h + "_sum", h + "_count"}
    return names, hist


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects (Grafana variables substituted)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # string literals
    e = re.sub(r"\{[^}]*\}", "", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)  # ranges and subqueries
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    e = re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", "", e)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        word = m.group(0)
        after = e[m.end():].lstrip()
        before = e[: m.start()]
        if after.startswith("(") or word.lower() in PROMQL_WORDS:
            continue
        if re.search(r"[0-9.]$", before) or re.fullmatch(r"[0-9.eE+-]+", word):
            continue
        names.add(word)
    return names


def grafana_queries(dash: dict):
    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                yield p.get("title", "?"), t["expr"]
            yield from walk(p.get("panels", []))

    yield from walk(dash["panels"])
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        if v.get("type") == "query" and q:
            m = re.fullmatch(r"label_values\((.*),\s*[a-z_]+\)", q.strip())
            yield f"variable {v['name']}", m[1] if m else q


def grafana_to_promql(expr: str) -> str:
    """A dashboard query as Prometheus would receive it, for promtool to parse."""
    return (
        expr.replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1d")
        .replace("${datasource}", "x")
        .replace("$job", "repovault-coordinator")
        .replace("$org", ".*")
    )


def cmd_metrics(allowed_out: Path, promql_out: Path) -> None:
    declared, hist = declared_metrics()
    if len(declared) < 20 or not hist:
        fail(f"coordinator/src/metric_families.rs: parsed only {len(declared)} names; has its layout changed?")
    missing = [g for g in FLEET_GAUGES if g not in declared]
    if missing:
        fail(f"coordinator/src/metric_families.rs does not declare {', '.join(missing)}")
    allowed = declared | set(PROMETHEUS_SERIES)
    allowed_out.write_text("\n".join(sorted(allowed)) + "\n")
    ok(f"metric_families.rs declares {len(declared)} series names ({len(hist)} histograms), "
       f"the fleet-scaling gauges among them")

    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    used = set()
    for g in rules["groups"]:
        for r in g["rules"]:
            names = metric_names(r["expr"])
            used |= names
            # Alerts fire on what the coordinator exports today, not on what is still coming.
            unknown = names - declared - set(PROMETHEUS_SERIES)
            if unknown:
                fail(f"alerts.yml {r.get('alert')}: not declared in metric_families.rs: {sorted(unknown)}")
            if not names:
                fail(f"alerts.yml {r.get('alert')}: no metric found in {r['expr']!r}")
    ok(f"alerts.yml uses {len(used)} metric names, all declared: {', '.join(sorted(used))}")

    dash = json.loads((DEPLOY / "grafana" / "repovault-dashboard.json").read_text())
    used, exprs = set(), []
    for title, expr in grafana_queries(dash):
        names = metric_names(expr)
        used |= names
        unknown = names - allowed
        if unknown:
            fail(f"dashboard panel {title!r}: unknown metric names {sorted(unknown)} in {expr!r}")
        if not names:
            fail(f"dashboard panel {title!r}: no metric found in {expr!r}")
        exprs.append((title, grafana_to_promql(expr)))
    if dash.get("uid") is None or dash.get("schemaVersion") is None:
        fail("dashboard: uid and schemaVersion are required for provisioning")
    for p in dash["panels"]:
        if p.get("type") != "row" and p.get("datasource", {}).get("uid") != "${datasource}":
            fail(f"dashboard panel {p.get('title')!r}: datasource must be the ${{datasource}} variable")
    for name in FLEET_GAUGES:
        if name not in used:
            fail(f"dashboard: no panel shows {name}")
    ok(f"dashboard: {len(exprs)} queries use {len(used)} metric names, all known")
    promql_out.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": e} for i, (_, e) in enumerate(exprs)]}]}))
    finish()


# ---------------------------------------------------------------------------------------------
# Compose.


def cmd_compose(rendered: Path, toml_path: Path) -> None:
    c = json.loads(rendered.read_text())
    cfg = tomllib.loads(toml_path.read_text())
    services = c["services"]
    coordinator = services.get("coordinator")
    workers = {n: s for n, s in services.items() if s.get("command", [])[:1] == ["worker"]}
    if not coordinator or len(workers) != 2:
        fail(f"compose: expected a coordinator and 2 workers, found {sorted(services)}")
        finish()
    root = cfg["storage"]["options"]["root"]

    def mounts(s):
        return {v["target"]: v.get("source") for v in s.get("volumes", [])}

    caches = set()
    for name, s in services.items():
        if s.get("read_only") is not True or s.get("user") != "10001:10001" or "ALL" not in s.get("cap_drop", []):
            fail(f"compose {name}: needs read_only, user 10001:10001 and cap_drop ALL")
        if "/tmp" not in s.get("tmpfs", []):
            fail(f"compose {name}: /tmp must be a tmpfs (read-only root; git's temporary HOME)")
        if mounts(s).get(root) != "storage":
            fail(f"compose {name}: the fs storage root {root} must be the shared volume `storage`")
    for name, s in workers.items():
        args = s["command"]
        grace = duration_secs(flag(args, "--drain-grace") or "60s")
        stop = s.get("stop_grace_period", "10s")
        stop_s = sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in re.findall(r"(\d+)([hms])", stop))
        if stop_s < grace + 30:
            fail(f"compose {name}: stop_grace_period {stop} < --drain-grace {grace} s + 30 s")
        cache = mounts(s).get(flag(args, "--cache-dir") or "/var/cache/repovault")
        if cache is None or cache in caches:
            fail(f"compose {name}: needs a cache volume of its own (got {cache})")
        caches.add(cache)
        secrets = {x["source"]: x.get("target", f"/run/secrets/{x['source']}") for x in s.get("secrets", [])}
        if flag(args, "--join-token-file") not in secrets.values():
            fail(f"compose {name}: --join-token-file is not one of its secrets {secrets}")
        if s["environment"].get("REPOVAULT_COORDINATOR") != f"http://coordinator:{cfg['listen'].rsplit(':', 1)[1]}":
            fail(f"compose {name}: REPOVAULT_COORDINATOR does not name the coordinator's listen port")
        if int(flag(args, "--slots") or 2) != cfg.get("scaling", {}).get("slots_per_worker", 2):
            fail(f"compose {name}: --slots differs from [scaling] slots_per_worker")
        ok(f"compose {name}: stop_grace_period {stop} >= {grace} + 30 s, cache volume {cache}, token from secrets")
    secret_targets = {x.get("target", f"/run/secrets/{x['source']}") for x in coordinator.get("secrets", [])}
    for key in ("join_token_file", "admin_token_file", "master_key_file"):
        if key in cfg and cfg[key] not in secret_targets:
            fail(f"compose coordinator: {key} {cfg[key]} is not one of its secrets")
    config_targets = {x["target"] for x in coordinator.get("configs", [])}
    if flag(coordinator["command"], "--config") not in config_targets:
        fail("compose coordinator: --config is not a mounted config")
    stop = coordinator.get("stop_grace_period", "10s")
    ok(f"compose coordinator: config and secrets mounted where coordinator.toml expects them; stop_grace_period {stop}")
    finish()


# ---------------------------------------------------------------------------------------------


def cmd_tomls(rendered: Path, out: Path) -> None:
    for f in sorted(rendered.glob("*.yaml")):
        docs = load_docs(f)
        cms = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "repovault-coordinator"]
        (out / f"kubernetes-{f.stem}.toml").write_text(cms[0]["data"]["coordinator.toml"])
        print(f"kubernetes-{f.stem}.toml")


def live_args(rendered: Path) -> dict:
    """Worker arguments of every worker pod template, the etcd member's, and the probes."""
    out = {"workers": {}, "etcd": None, "etcd_probes": [], "coordinator_probes": []}
    for f in sorted(rendered.glob("*.yaml")):
        for d in load_docs(f):
            for tmpl in pod_templates(d):
                for c in tmpl["spec"]["containers"]:
                    if c.get("args", [])[:1] == ["worker"]:
                        out["workers"][f"{f.stem}/{d['kind']}/{d['metadata']['name']}"] = c["args"]
                    if c.get("args", [])[:1] == ["coordinator"] and f.stem == "base":
                        out["coordinator_probes"] = [
                            f"{c[p]['httpGet'].get('scheme', 'HTTP')} {c[p]['httpGet']['path']}"
                            for p in ("startupProbe", "livenessProbe", "readinessProbe")
                        ]
                    if d["metadata"]["name"] == "repovault-etcd":
                        out["etcd"] = c["command"] + c["args"]
                        out["etcd_probes"] = [c[p]["httpGet"]["path"] for p in ("livenessProbe", "readinessProbe")]
    return out


def replace_flags(args: list[str], values: dict) -> list[str]:
    return [f"{a.split('=', 1)[0]}={values[a.split('=', 1)[0]]}" if a.split("=", 1)[0] in values else a for a in args]


def cmd_live(what: str, rendered: Path, rest: list[str]) -> None:
    """One line per item, for the live check of check-deploy.sh."""
    a = live_args(rendered)
    if what == "etcd-args":
        # The cluster's names and addresses become one loopback member's, its client port TLS;
        # every other flag stays as written.
        ec, ep, em, data, files = rest
        topo = {
            "--name": "m0", "--data-dir": data,
            "--listen-client-urls": f"https://127.0.0.1:{ec}", "--advertise-client-urls": f"https://127.0.0.1:{ec}",
            "--listen-peer-urls": f"http://127.0.0.1:{ep}", "--initial-advertise-peer-urls": f"http://127.0.0.1:{ep}",
            "--listen-metrics-urls": f"http://127.0.0.1:{em}", "--initial-cluster": f"m0=http://127.0.0.1:{ep}",
        }
        lines = replace_flags(a["etcd"][1:], topo) + [f"--cert-file={files}/tls.crt", f"--key-file={files}/tls.key"]
    elif what in ("etcd-probes", "coordinator-probes"):
        lines = a[what.replace("-", "_")]
    elif what == "worker-keys":
        # Identical argument lists (the same Deployment in several variants) are run once.
        seen: dict[str, str] = {}
        for k, args in a["workers"].items():
            seen.setdefault(json.dumps(args), k)
        lines = list(seen.values())
    elif what == "worker-args":
        key, files, cache = rest
        lines = replace_flags(a["workers"][key], {
            "--join-token-file": f"{files}/token", "--ca-file": f"{files}/ca.crt", "--cache-dir": cache})
    print("\n".join(lines))


def cmd_check_env(toml_path: Path, d: Path) -> None:
    """One `VAR=value` line per override `--check` needs here: the files the configuration names
    exist only where it is deployed, so each is pointed at a stand-in in `d` (tokens, a master
    key, a self-signed certificate the caller made); object-store credentials, which a deployment
    gives as variables, get placeholders. Every other key is checked as written."""
    cfg = tomllib.loads(toml_path.read_text())
    env = {"REPOVAULT_DATA_DIR": d / "data"}
    for key, var, stand_in in (
        ("master_key_file", "REPOVAULT_MASTER_KEY_FILE", "master.key"),
        ("join_token_file", "REPOVAULT_JOIN_TOKEN_FILE", "token"),
        ("admin_token_file", "REPOVAULT_ADMIN_TOKEN_FILE", "token"),
    ):
        if key in cfg:
            env[var] = d / stand_in
    if "tls" in cfg:
        env["REPOVAULT_TLS_CERT_FILE"] = d / "tls.crt"
        env["REPOVAULT_TLS_KEY_FILE"] = d / "tls.key"
    store = cfg.get("store", {})
    for key, stand_in in (("ca_file", "ca.crt"), ("cert_file", "client.crt"), ("key_file", "client.key"),
                          ("password_file", "token")):
        if key in store:
            env[f"REPOVAULT_STORE_{key.upper()}"] = d / stand_in
    if cfg.get("admin_tokens"):
        fail(f"{toml_path}: [[admin_tokens]] files cannot be pointed at stand-ins; keep the example in a comment")
    opts = cfg.get("storage", {}).get("options", {})
    if cfg.get("storage", {}).get("kind") == "s3" and "secret_access_key" not in opts:
        env["REPOVAULT_STORAGE_OPTIONS_ACCESS_KEY_ID"] = "AKIAIOSFODNN7EXAMPLE"
        env["REPOVAULT_STORAGE_OPTIONS_SECRET_ACCESS_KEY"] = "placeholder"
    for k, v in env.items():
        print(f"{k}={v}")
    finish()


if __name__ == "__main__":
    cmd, *rest = sys.argv[1:]
    {
        "k8s": lambda: cmd_k8s(Path(rest[0]), rest[1]),
        "metrics": lambda: cmd_metrics(Path(rest[0]), Path(rest[1])),
        "compose": lambda: cmd_compose(Path(rest[0]), Path(rest[1])),
        "tomls": lambda: cmd_tomls(Path(rest[0]), Path(rest[1])),
        "live": lambda: cmd_live(rest[0], Path(rest[1]), rest[2:]),
        "check-env": lambda: cmd_check_env(Path(rest[0]), Path(rest[1])),
    }[cmd]()
