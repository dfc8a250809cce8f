"""Consistency checks of the deployment files against the service's code.

``deploy/validate.sh`` runs this after ``kustomize build`` and the Kubernetes schema
validation; the tests import it. What it checks, per rendered overlay:

- every environment variable given to the consumer is a setting of the service
  (``consumer.config.SETTINGS``) or a ``KAFKA_*`` librdkafka property, and the whole
  environment loads (``consumer.config.load``) and is accepted by librdkafka;
- no secret sits in a ConfigMap; the token file is a Secret mounted as a directory (no
  ``subPath``, which would stop rotation); the quota state file is on a writable volume;
- probes on ``/livez`` and ``/readyz``, at the port the service listens on, which the
  Service and the ServiceMonitor use too; the grace period is above the shutdown timeout;
- the pod runs as non-root with a read-only root filesystem and no service links;
- the CRDs (KEDA ScaledObject and TriggerAuthentication, ServiceMonitor) structurally:
  apiVersion, kind, required fields, and what they point at exists;
- KEDA scales on the consumer group the pods use, on the same brokers, with the pods' SASL
  and TLS settings, up to exactly the partition count, and the single-update quota times
  that maximum stays within Target's 1,000,000 a day;
- the NetworkPolicy lets through DNS, the Kafka, Target and Schema Registry ports, and
  Prometheus to the metrics port;
- every ``profile_sync_*`` metric name mentioned exists in ``consumer/metrics.py``, and
  every container's command line parses with the real ``profile-sync`` CLI.

And for ``deploy/compose/docker-compose.yml``: the YAML parses, the required services are
there, every file it mounts or reads exists, the consumer's settings load, the shared alert
rules and dashboard are mounted from ``deploy/prometheus`` and ``deploy/grafana``.

Usage::

    python deploy/validate_manifests.py k8s NAME RENDERED.yaml
    python deploy/validate_manifests.py compose deploy/compose/docker-compose.yml
    python deploy/validate_manifests.py docs docs/deploy.md

Each prints one line per problem and exits 1 if there is any.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from consumer import config  # noqa: E402

# Target's single-update quota per tenant per rolling 24 hours.
TENANT_SINGLE_QUOTA = config.TARGET_SINGLE_QUOTA
# The shutdown needs this much less than the pod's grace period: SIGKILL comes at the end
# of the grace period, and the process still has to exit after its own timeout.
GRACE_MARGIN_SECONDS = 5
# Memory model of one replica, from bench/bench_hotpath.py (docs/deploy.md, "Sizing"):
# a buffered profile row takes ~8.2x its encoded size in Python objects (1,158 B for a
# 142 B row), a carry-forward profile ~1.6 KB; the interpreter, libraries and librdkafka's
# threads ~100 MB. The pod's memory limit must hold the worst case the settings allow.
BASELINE_MEMORY_BYTES = 100_000_000
BUFFER_MEMORY_FACTOR = 8.2
CARRY_FORWARD_BYTES_PER_PROFILE = 1_600
LIBRDKAFKA_QUEUE_KBYTES_DEFAULT = 65_536
PARTITIONS_ANNOTATION = "target-profile-sync/topic-partitions"
CONSUMER_CONTAINER = "profile-sync"
SECRET_KAFKA_KEYS = frozenset(
    {
        "sasl.password",
        "sasl.username",
        "ssl.key.password",
        "ssl.keystore.password",
        "ssl.key.pem",
        "sasl.oauthbearer.client.secret",
        "basic.auth.user.info",
    }
)
# librdkafka mechanism -> KEDA kafka scaler `sasl` value.
KEDA_SASL = {
    "PLAIN": "plaintext",
    "SCRAM-SHA-256": "scram_sha256",
    "SCRAM-SHA-512": "scram_sha512",
    "OAUTHBEARER": "oauthbearer",
    "GSSAPI": "gssapi",
}
METRIC_RE = re.compile(r"\bprofile_sync_[a-z0-9_]+")
# Environment names that look like ours but are not settings: the YAML file's name.
EXTRA_ENV = frozenset({config.ENV_PREFIX + "CONFIG"})


class Problems:
    """Collects problems with a prefix naming where they were found."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.warnings: list[str] = []

    def add(self, where: str, what: str) -> None:
        self.items.append(f"{where}: {what}")

    def warn(self, where: str, what: str) -> None:
        self.warnings.append(f"{where}: {what}")

    def __bool__(self) -> bool:
        return bool(self.items)


# ---------------------------------------------------------------- what the code defines


def known_env(name: str) -> bool:
    """True if ``name`` is a setting of the service or a KAFKA_* librdkafka property."""
    if name in EXTRA_ENV or name in {s.env for s in config.SETTINGS}:
        return True
    if name.startswith(config.KAFKA_PREFIX) and len(name) > len(config.KAFKA_PREFIX):
        return config.kafka_property(name) is not None
    return False


def exported_metric_names() -> set[str]:
    """Every sample name the service can export (counters with _total, histogram series)."""
    from prometheus_client import CollectorRegistry

    from consumer.metrics import Metrics

    registry = CollectorRegistry()
    Metrics(registry)
    names: set[str] = set()
    for family in registry.collect():
        names.add(family.name)
        for sample in family.samples:
            names.add(sample.name)
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + s for s in ("_bucket", "_sum", "_count"))
        elif family.type == "info":
            names.add(family.name + "_info")
    return names


def check_metric_names(text: str, where: str, problems: Problems) -> None:
    known = exported_metric_names()
    for name in sorted(set(METRIC_RE.findall(text))):
        if name not in known:
            problems.add(where, f"metric {name} is not exported by consumer/metrics.py")


def check_cli_args(args: list[str], where: str, problems: Problems) -> None:
    """The container's arguments must parse with the real ``profile-sync`` parser."""
    from consumer import cli

    if not args:
        problems.add(where, "no command: the image's default is `run`; say so explicitly")
        return
    chosen = args[0]
    if chosen not in cli.COMMANDS:
        problems.add(where, f"unknown profile-sync command {chosen!r}")
        return
    try:
        parser = cli.build_parser(chosen)
    except ImportError as exc:
        # The subcommand's module is not in this tree (yet): its options cannot be checked.
        problems.warn(where, f"cannot check `{chosen}` options: {exc}")
        return
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            parser.parse_args(args)
        except SystemExit as exc:
            if exc.code:
                msg = err.getvalue().strip().splitlines()
                problems.add(where, f"`profile-sync {shlex.join(args)}` does not parse: {msg[-1:]}")


def load_settings(env: Mapping[str, str], where: str, problems: Problems) -> Any:
    """``config.load`` on ``env`` with the files it names made to exist; None on failure."""
    from consumer.errors import ConfigError

    with tempfile.TemporaryDirectory() as tmp:
        # Unknown names are reported by the caller; leave them out so the rest is checked.
        env = {k: v for k, v in env.items() if known_env(k)}
        # The token file and the writer schema are mounted at run time; their paths are
        # checked against the mounts separately.
        for key in ("TARGET_TOKEN_FILE", "WRITER_SCHEMA"):
            name = config.ENV_PREFIX + key
            if env.get(name):
                stand_in = Path(tmp) / key.lower()
                stand_in.write_text("stand-in\n" if key == "TARGET_TOKEN_FILE" else "{}")
                env[name] = str(stand_in)
        try:
            settings = config.load(env)
        except ConfigError as exc:
            for key, why in sorted(exc.problems.items()):
                problems.add(where, f"{key}: {why}")
            return None
    check_librdkafka(settings, where, problems)
    return settings


def check_librdkafka(settings: Any, where: str, problems: Problems) -> None:
    """librdkafka accepts the KAFKA_* properties (a client without brokers: no sockets)."""
    from confluent_kafka import Consumer, KafkaException

    props = settings.consumer_config()
    props.pop("bootstrap.servers", None)
    # Secrets come from Kubernetes Secrets at run time; stand-ins make SASL configs complete.
    if props.get("security.protocol", "").upper().startswith("SASL"):
        props.setdefault("sasl.username", "stand-in")
        props.setdefault("sasl.password", "stand-in")
    props["log_level"] = "3"  # errors only: no configuration warnings on stderr
    try:
        Consumer(props).close()
    except KafkaException as exc:
        problems.add(where, f"librdkafka rejects the KAFKA_* settings: {exc.args[0].str()}")


# ---------------------------------------------------------------- Kubernetes


def load_docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]


def _name(doc: Mapping[str, Any]) -> str:
    return str(doc.get("metadata", {}).get("name", "?"))


def _find(docs: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def _selects(selector: Mapping[str, Any] | None, labels: Mapping[str, Any]) -> bool:
    match = (selector or {}).get("matchLabels") or {}
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def _get(doc: Any, *path: str | int) -> Any:
    for key in path:
        if isinstance(doc, dict) and isinstance(key, str):
            doc = doc.get(key)
        elif isinstance(doc, list) and isinstance(key, int) and -len(doc) <= key < len(doc):
            doc = doc[key]
        else:
            return None
    return doc


def _require(doc: Mapping[str, Any], where: str, problems: Problems, *paths: str) -> None:
    for path in paths:
        if _get(doc, *path.split(".")) in (None, "", [], {}):
            problems.add(where, f"{path} is required")


def check_crds(docs: list[dict[str, Any]], where: str, problems: Problems) -> None:
    """Structural checks of the custom resources kubernetes-validate has no schema for."""
    deployments = {_name(d) for d in _find(docs, "Deployment")}
    auths = {_name(d) for d in _find(docs, "TriggerAuthentication")}
    for so in _find(docs, "ScaledObject"):
        at = f"{where}: ScaledObject {_name(so)}"
        if so.get("apiVersion") != "keda.sh/v1alpha1":
            problems.add(at, f"apiVersion must be keda.sh/v1alpha1, not {so.get('apiVersion')}")
        _require(so, at, problems, "metadata.name", "spec.scaleTargetRef.name", "spec.triggers")
        target = _get(so, "spec", "scaleTargetRef", "name")
        if target and target not in deployments:
            problems.add(at, f"scaleTargetRef names {target!r}, which is not a Deployment here")
        kind = _get(so, "spec", "scaleTargetRef", "kind") or "Deployment"
        if kind != "Deployment":
            problems.add(at, f"scaleTargetRef.kind must be Deployment, not {kind}")
        lo = _get(so, "spec", "minReplicaCount")
        hi = _get(so, "spec", "maxReplicaCount")
        if not isinstance(hi, int) or isinstance(hi, bool) or hi < 1:
            problems.add(at, "spec.maxReplicaCount must be a whole number >= 1")
        # KEDA's kafka scaler without `topic` finds the topics through the group's commits;
        # at zero replicas nothing commits, and it would never scale up again.
        if not isinstance(lo, int) or isinstance(lo, bool) or lo < 1:
            problems.add(at, "spec.minReplicaCount must be a whole number >= 1")
        elif isinstance(hi, int) and lo > hi:
            problems.add(at, "spec.minReplicaCount is above spec.maxReplicaCount")
        triggers = _get(so, "spec", "triggers")
        for i, trig in enumerate(triggers if isinstance(triggers, list) else []):
            tat = f"{at} trigger {i}"
            if not isinstance(trig, dict) or not trig.get("type"):
                problems.add(tat, "type is required")
                continue
            meta = trig.get("metadata") or {}
            if not isinstance(meta, dict):
                problems.add(tat, "metadata must be a mapping")
                continue
            for key, value in meta.items():
                if not isinstance(value, str):
                    problems.add(tat, f"metadata.{key} must be a string (quote it)")
            if trig["type"] == "kafka":
                for key in ("bootstrapServers", "consumerGroup", "lagThreshold"):
                    if not meta.get(key):
                        problems.add(tat, f"metadata.{key} is required")
                if meta.get("lagThreshold") and not str(meta["lagThreshold"]).isdigit():
                    problems.add(tat, "metadata.lagThreshold must be a whole number")
            ref = _get(trig, "authenticationRef", "name")
            if ref and ref not in auths:
                problems.add(tat, f"authenticationRef names {ref!r}, not a TriggerAuthentication")
    for ta in _find(docs, "TriggerAuthentication"):
        at = f"{where}: TriggerAuthentication {_name(ta)}"
        if ta.get("apiVersion") != "keda.sh/v1alpha1":
            problems.add(at, "apiVersion must be keda.sh/v1alpha1")
        refs = _get(ta, "spec", "secretTargetRef")
        if not isinstance(refs, list) or not refs:
            problems.add(at, "spec.secretTargetRef must list the parameters")
            continue
        for ref in refs:
            if not isinstance(ref, dict) or not all(
                ref.get(k) for k in ("parameter", "name", "key")
            ):
                problems.add(at, "each secretTargetRef needs parameter, name and key")
    services = _find(docs, "Service")
    for sm in _find(docs, "ServiceMonitor"):
        at = f"{where}: ServiceMonitor {_name(sm)}"
        if sm.get("apiVersion") != "monitoring.coreos.com/v1":
            problems.add(at, "apiVersion must be monitoring.coreos.com/v1")
        _require(sm, at, problems, "spec.selector.matchLabels", "spec.endpoints")
        chosen = [
            s
            for s in services
            if _selects(_get(sm, "spec", "selector"), s["metadata"].get("labels") or {})
        ]
        if not chosen:
            problems.add(at, "its selector matches no Service")
        port_names = {p.get("name") for s in chosen for p in _get(s, "spec", "ports") or []}
        for ep in _get(sm, "spec", "endpoints") or []:
            if ep.get("port") not in port_names:
                problems.add(at, f"endpoint port {ep.get('port')!r} is not a port of the Service")
            if ep.get("path", "/metrics") != "/metrics":
                problems.add(at, f"endpoint path {ep.get('path')!r}: the service serves /metrics")


def _consumer(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    for dep in _find(docs, "Deployment"):
        for c in _get(dep, "spec", "template", "spec", "containers") or []:
            if c.get("name") == CONSUMER_CONTAINER:
                return dep, c
    return None


def container_env(
    container: Mapping[str, Any],
    docs: list[dict[str, Any]],
    where: str,
    problems: Problems,
) -> tuple[dict[str, str], set[str]]:
    """The container's environment as the pod would see it, and the names fed by Secrets."""
    configmaps = {_name(d): d for d in _find(docs, "ConfigMap")}
    env: dict[str, str] = {}
    from_secrets: set[str] = set()
    for src in container.get("envFrom") or []:
        if "configMapRef" in src:
            name = src["configMapRef"].get("name")
            cm = configmaps.get(name)
            if cm is None:
                problems.add(where, f"envFrom ConfigMap {name!r} is not part of the overlay")
                continue
            for key, value in (cm.get("data") or {}).items():
                env[key] = str(value)
        else:
            problems.add(where, "envFrom other than a ConfigMap cannot be checked; use env")
    for item in container.get("env") or []:
        name = item.get("name", "")
        if "value" in item:
            env[name] = str(item["value"])
        elif _get(item, "valueFrom", "secretKeyRef"):
            from_secrets.add(name)
            # An optional Secret may be absent: the pod must work without it.
            if not item["valueFrom"]["secretKeyRef"].get("optional"):
                env[name] = "stand-in-from-secret"
        elif _get(item, "valueFrom", "configMapKeyRef"):
            ref = item["valueFrom"]["configMapKeyRef"]
            cm = configmaps.get(ref.get("name"))
            value = _get(cm, "data", ref.get("key", "")) if cm else None
            if value is None and not ref.get("optional"):
                problems.add(where, f"env {name}: ConfigMap key {ref} not found")
            if value is not None:
                env[name] = str(value)
        else:
            env[name] = "stand-in"
    return env, from_secrets


def _port_number(container: Mapping[str, Any], port: Any) -> int | None:
    if isinstance(port, int):
        return port
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    return None


def _mount_for(container: Mapping[str, Any], path: str) -> dict[str, Any] | None:
    best: dict[str, Any] | None = None
    for m in container.get("volumeMounts") or []:
        mount = str(m.get("mountPath", "")).rstrip("/")
        inside = path == mount or path.startswith(mount + "/")
        if inside and (best is None or len(mount) > len(str(best["mountPath"]).rstrip("/"))):
            best = m
    return best


def _port_allowed(policy: Mapping[str, Any], direction: str, port: int) -> bool:
    for rule in _get(policy, "spec", direction) or []:
        ports = rule.get("ports")
        if not ports:
            return True
        for p in ports:
            if p.get("protocol", "TCP") != "TCP" or not isinstance(p.get("port"), int):
                continue
            if p["port"] <= port <= int(p.get("endPort", p["port"])):
                return True
    return False


def memory_estimate(settings: Any) -> int:
    """Worst-case memory of one replica under ``settings``, in bytes."""
    queue_kb = settings.consumer_config().get(
        "queued.max.messages.kbytes", LIBRDKAFKA_QUEUE_KBYTES_DEFAULT
    )
    carry = settings.carry_forward_max_profiles if settings.carry_forward_enabled else 0
    return int(
        BASELINE_MEMORY_BYTES
        + settings.buffer_max_bytes * BUFFER_MEMORY_FACTOR
        + carry * CARRY_FORWARD_BYTES_PER_PROFILE
        + settings.status_retain_max_bytes
        + (settings.max_in_flight_batches + 1) * settings.batch_max_bytes
        + int(queue_kb) * 1024
    )


_QUANTITY = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def _quantity(value: Any) -> int | None:
    """A Kubernetes memory quantity in bytes (None if absent or not understood)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|k|M|G)?", str(value or "").strip())
    if not match:
        return None
    return int(float(match.group(1)) * _QUANTITY[match.group(2) or ""])


def _url_port(url: str) -> int | None:
    from urllib.parse import urlsplit

    if not url:
        return None
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def check_overlay(docs: list[dict[str, Any]], name: str) -> Problems:
    """Every check of one rendered overlay."""
    problems = Problems()
    where = f"overlay {name}"
    for kind in (
        "ConfigMap",
        "Deployment",
        "Service",
        "ServiceMonitor",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ScaledObject",
    ):
        if not _find(docs, kind):
            problems.add(where, f"no {kind}")
    check_crds(docs, where, problems)
    check_metric_names(yaml.safe_dump_all(docs), where, problems)
    found = _consumer(docs)
    if found is None:
        problems.add(where, f"no Deployment with a container named {CONSUMER_CONTAINER!r}")
        return problems
    dep, container = found
    dat = f"{where}: Deployment {_name(dep)}"
    pod = dep["spec"]["template"]["spec"]
    pod_labels = _get(dep, "spec", "template", "metadata", "labels") or {}

    for d in _find(docs, "Deployment"):
        for c in _get(d, "spec", "template", "spec", "containers") or []:
            check_cli_args(
                list(c.get("command") or []) + list(c.get("args") or []),
                f"{where}: Deployment {_name(d)} container {c.get('name')}",
                problems,
            )

    # -- environment
    env, from_secrets = container_env(container, docs, dat, problems)
    for key in sorted(set(env) | from_secrets):
        if not known_env(key):
            problems.add(dat, f"env {key} is not a setting of the service (consumer/config.py)")
    secret_settings = {s.env for s in config.SETTINGS if s.secret}
    for cm in _find(docs, "ConfigMap"):
        for key in cm.get("data") or {}:
            kafka_key = config.kafka_property(key) if key.startswith(config.KAFKA_PREFIX) else None
            if key in secret_settings or kafka_key in SECRET_KAFKA_KEYS:
                problems.add(f"{where}: ConfigMap {_name(cm)}", f"{key} is a secret: use a Secret")
    settings = load_settings(env, dat, problems)
    if settings is None:
        return problems

    # -- files
    token_file = settings.target_token_file and env.get("PROFILE_SYNC_TARGET_TOKEN_FILE", "")
    volumes = {v.get("name"): v for v in pod.get("volumes") or []}
    if token_file:
        mount = _mount_for(container, token_file)
        volume = volumes.get(mount.get("name")) if mount else None
        if mount is None or volume is None or "secret" not in volume:
            problems.add(
                dat, f"PROFILE_SYNC_TARGET_TOKEN_FILE {token_file} is not on a Secret volume"
            )
        elif mount.get("subPath") or mount.get("subPathExpr"):
            problems.add(dat, "the token Secret is mounted with subPath: it would never rotate")
    elif "PROFILE_SYNC_TARGET_TOKEN" not in from_secrets:
        problems.add(dat, "no Target token: set PROFILE_SYNC_TARGET_TOKEN_FILE to a Secret file")
    state_file = env.get("PROFILE_SYNC_SINGLE_QUOTA_STATE_FILE", "")
    if settings.single_enabled and state_file:
        mount = _mount_for(container, state_file)
        if mount is None or mount.get("readOnly"):
            problems.add(dat, f"the quota state file {state_file} is not on a writable volume")

    # -- port, probes, shutdown
    port = settings.http_port
    if settings.http_host in ("127.0.0.1", "localhost", "::1"):
        problems.add(dat, "PROFILE_SYNC_HTTP_HOST is loopback: probes and scrapes cannot reach it")
    container_ports = {int(p["containerPort"]) for p in container.get("ports") or []}
    if port not in container_ports:
        problems.add(dat, f"the service listens on {port}, not a containerPort")
    for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
        get = _get(container, probe, "httpGet")
        if not get:
            problems.add(dat, f"{probe} must be an httpGet on {path}")
            continue
        if str(get.get("path", "")).split("?")[0] != path:
            problems.add(dat, f"{probe} path {get.get('path')!r}, the service serves {path}")
        if _port_number(container, get.get("port")) != port:
            problems.add(dat, f"{probe} port {get.get('port')!r} is not the service's {port}")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if grace < settings.shutdown_timeout_seconds + GRACE_MARGIN_SECONDS:
        problems.add(
            dat,
            f"terminationGracePeriodSeconds {grace} must exceed "
            f"PROFILE_SYNC_SHUTDOWN_TIMEOUT_SECONDS {settings.shutdown_timeout_seconds:g} "
            f"by {GRACE_MARGIN_SECONDS}s",
        )
    limit = _quantity(_get(container, "resources", "limits", "memory"))
    need = memory_estimate(settings)
    if limit is not None and limit < need:
        problems.add(
            dat,
            f"memory limit {limit / 2**20:,.0f}Mi is below the {need / 2**20:,.0f}Mi the "
            "settings allow (buffer, carry-forward, retained batches, fetch queue); "
            "raise it or lower those settings (docs/deploy.md, Sizing)",
        )
    if "replicas" in dep["spec"] and _find(docs, "ScaledObject"):
        problems.add(dat, "spec.replicas fights the autoscaler: leave it out")

    # -- security
    psc = pod.get("securityContext") or {}
    csc = container.get("securityContext") or {}
    if not (psc.get("runAsNonRoot") or csc.get("runAsNonRoot")):
        problems.add(dat, "runAsNonRoot is not set")
    if not csc.get("readOnlyRootFilesystem"):
        problems.add(dat, "readOnlyRootFilesystem is not set")
    if csc.get("allowPrivilegeEscalation") is not False:
        problems.add(dat, "allowPrivilegeEscalation must be false")
    if "ALL" not in (_get(csc, "capabilities", "drop") or []):
        problems.add(dat, "capabilities must drop ALL")
    if pod.get("enableServiceLinks") is not False:
        problems.add(dat, "enableServiceLinks must be false (injected PROFILE_SYNC_* names)")
    resources = container.get("resources") or {}
    for part in ("requests", "limits"):
        for res in ("cpu", "memory"):
            if not _get(resources, part, res):
                problems.add(dat, f"resources.{part}.{res} is not set")

    # -- Service, PDB
    svcs = [
        s
        for s in _find(docs, "Service")
        if _selects({"matchLabels": _get(s, "spec", "selector")}, pod_labels)
    ]
    if not svcs:
        problems.add(where, "no Service selects the consumer pods")
    for s in svcs:
        for p in _get(s, "spec", "ports") or []:
            if _port_number(container, p.get("targetPort", p.get("port"))) != port:
                problems.add(f"{where}: Service {_name(s)}", f"targetPort is not {port}")
    for pdb in _find(docs, "PodDisruptionBudget"):
        if not _selects(_get(pdb, "spec", "selector"), pod_labels):
            problems.add(f"{where}: PodDisruptionBudget {_name(pdb)}", "does not select the pods")

    # -- alerts and dashboard filter on job="profile-sync"
    alerts = REPO / "deploy" / "prometheus" / "alerts.yml"
    jobs = set(re.findall(r'job="([^"]+)"', alerts.read_text())) if alerts.is_file() else set()
    for sm in _find(docs, "ServiceMonitor"):
        for ep in _get(sm, "spec", "endpoints") or []:
            relabeled = {
                r.get("replacement")
                for r in ep.get("relabelings") or []
                if r.get("targetLabel") == "job"
            }
            for job in jobs - relabeled:
                problems.add(
                    f"{where}: ServiceMonitor {_name(sm)}",
                    f"the alert rules expect job={job!r}: relabel job to it",
                )

    check_keda(docs, settings, env, where, problems)
    check_network_policy(docs, settings, pod_labels, port, where, problems)
    return problems


def check_keda(
    docs: list[dict[str, Any]],
    settings: Any,
    env: Mapping[str, str],
    where: str,
    problems: Problems,
) -> None:
    consumer_config = settings.consumer_config()
    for so in _find(docs, "ScaledObject"):
        at = f"{where}: ScaledObject {_name(so)}"
        hi = _get(so, "spec", "maxReplicaCount")
        annotation = _get(so, "metadata", "annotations", PARTITIONS_ANNOTATION)
        if not annotation:
            problems.add(at, f"annotation {PARTITIONS_ANNOTATION} (topic=partitions,...) missing")
        else:
            try:
                counts = {
                    t.strip(): int(n) for t, n in (p.split("=") for p in annotation.split(","))
                }
            except ValueError:
                problems.add(at, f"annotation {PARTITIONS_ANNOTATION}: write topic=N,topic=N")
                counts = {}
            if counts and set(counts) != set(settings.topics):
                problems.add(
                    at,
                    f"partition counts are for {sorted(counts)}, the pods consume "
                    f"{sorted(settings.topics)}",
                )
            if counts and hi != sum(counts.values()):
                problems.add(
                    at,
                    f"maxReplicaCount {hi} must equal the partition count {sum(counts.values())}"
                    " (replicas beyond it sit idle)",
                )
        if settings.single_enabled and isinstance(hi, int):
            total = settings.single_quota_per_day * hi
            if total > TENANT_SINGLE_QUOTA:
                problems.add(
                    at,
                    f"PROFILE_SYNC_SINGLE_QUOTA_PER_DAY {settings.single_quota_per_day:,} x "
                    f"{hi} replicas = {total:,} exceeds Target's {TENANT_SINGLE_QUOTA:,} a day",
                )
        for i, trig in enumerate(_get(so, "spec", "triggers") or []):
            if not isinstance(trig, dict) or trig.get("type") != "kafka":
                continue
            tat = f"{at} trigger {i}"
            meta = trig.get("metadata") or {}
            if meta.get("bootstrapServers") != consumer_config.get("bootstrap.servers"):
                problems.add(tat, "bootstrapServers differs from KAFKA_BOOTSTRAP_SERVERS")
            if meta.get("consumerGroup") != consumer_config.get("group.id"):
                problems.add(
                    tat,
                    f"consumerGroup {meta.get('consumerGroup')!r} is not the pods' group.id "
                    f"{consumer_config.get('group.id')!r}",
                )
            topic = meta.get("topic")
            if topic and not set(topic.split(",")) <= set(settings.topics):
                problems.add(tat, f"topic {topic!r} is not consumed by the pods")
            protocol = consumer_config.get("security.protocol", "PLAINTEXT").upper()
            mechanism = str(
                consumer_config.get(
                    "sasl.mechanisms", consumer_config.get("sasl.mechanism", "GSSAPI")
                )
            ).upper()
            want_tls = "enable" if protocol in ("SSL", "SASL_SSL") else "disable"
            if meta.get("tls", "disable") != want_tls:
                problems.add(tat, f"tls must be {want_tls!r} for security.protocol {protocol}")
            want_sasl = KEDA_SASL.get(mechanism, "?") if protocol.startswith("SASL") else "none"
            if meta.get("sasl", "none") != want_sasl:
                problems.add(tat, f"sasl must be {want_sasl!r} for {protocol} {mechanism}")
            if want_sasl not in ("none", "oauthbearer") and not _get(
                trig, "authenticationRef", "name"
            ):
                problems.add(tat, "SASL needs an authenticationRef with username and password")


def check_network_policy(
    docs: list[dict[str, Any]],
    settings: Any,
    pod_labels: Mapping[str, Any],
    port: int,
    where: str,
    problems: Problems,
) -> None:
    policies = [
        p
        for p in _find(docs, "NetworkPolicy")
        if _selects(_get(p, "spec", "podSelector"), pod_labels)
    ]
    if not policies:
        problems.add(where, "no NetworkPolicy selects the consumer pods")
        return
    for pol in policies:
        at = f"{where}: NetworkPolicy {_name(pol)}"
        types = set(_get(pol, "spec", "policyTypes") or [])
        if types != {"Ingress", "Egress"}:
            problems.add(at, "policyTypes must be Ingress and Egress (deny all else)")
        # Ingress: named ports resolve against the container, numbers as they are.
        ingress_ok = False
        for rule in _get(pol, "spec", "ingress") or []:
            for p in rule.get("ports") or []:
                if p.get("port") in (port, "http"):
                    ingress_ok = True
        if not ingress_ok:
            problems.add(at, f"Prometheus cannot reach the metrics port {port}")
        needed: dict[str, int | None] = {"DNS": 53}
        for server in str(settings.consumer_config().get("bootstrap.servers", "")).split(","):
            if ":" in server:
                needed[f"Kafka {server}"] = int(server.rsplit(":", 1)[1])
        needed["Target"] = _url_port(settings.target_url)
        needed["Schema Registry"] = _url_port(settings.schema_registry_url)
        for what, p in needed.items():
            if p is not None and not _port_allowed(pol, "egress", p):
                problems.add(at, f"egress to {what} (port {p}) is not allowed")


# ---------------------------------------------------------------- compose


REQUIRED_SERVICES = ("kafka", "emulator", "profile-sync", "prometheus", "grafana")


def _compose_env(
    service: Mapping[str, Any], base: Path, where: str, problems: Problems
) -> dict[str, str]:
    env: dict[str, str] = {}
    files = service.get("env_file") or []
    for f in [files] if isinstance(files, str) else files:
        path = base / (f if isinstance(f, str) else f.get("path", ""))
        if not path.is_file():
            problems.add(where, f"env_file {path} does not exist")
            continue
        for line in path.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, value = line.split("=", 1)
                env[key.strip()] = value
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    env.update({str(k): str(v) for k, v in raw.items()})
    return env


def check_compose(path: Path, doc: Any = None) -> Problems:
    """Check the compose file at ``path`` (or ``doc``, as if it were that file)."""
    problems = Problems()
    where = str(path.relative_to(REPO) if path.is_relative_to(REPO) else path)
    if doc is None:
        try:
            doc = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            problems.add(where, f"does not parse: {exc}")
            return problems
    base = path.parent
    services = doc.get("services") if isinstance(doc, dict) else None
    if not isinstance(services, dict):
        problems.add(where, "no services")
        return problems
    for name in REQUIRED_SERVICES:
        if name not in services:
            problems.add(where, f"service {name!r} is missing")
    declared_volumes = set((doc.get("volumes") or {}).keys())
    declared_secrets = doc.get("secrets") or {}
    for sname, secret in declared_secrets.items():
        if "file" in secret and not (base / secret["file"]).is_file():
            problems.add(where, f"secret {sname}: file {secret['file']} does not exist")
    mounted: dict[str, list[tuple[Path, str]]] = {}
    for name, svc in services.items():
        at = f"{where}: service {name}"
        if not isinstance(svc, dict):
            problems.add(at, "must be a mapping")
            continue
        if not svc.get("image") and not svc.get("build"):
            problems.add(at, "needs an image or a build")
        build = svc.get("build")
        if build:
            context = base / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = context / (
                "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            )
            if not dockerfile.is_file():
                problems.add(at, f"build: {dockerfile} does not exist")
        for dep in svc.get("depends_on") or []:
            if dep not in services:
                problems.add(at, f"depends_on {dep!r}, which is not a service")
        for s in svc.get("secrets") or []:
            sname = s if isinstance(s, str) else s.get("source")
            if sname not in declared_secrets:
                problems.add(at, f"secret {sname!r} is not declared")
        for vol in svc.get("volumes") or []:
            source, _, rest = (
                vol if isinstance(vol, str) else f"{vol.get('source')}:{vol.get('target')}"
            ).partition(":")
            target = rest.split(":")[0]
            if source.startswith((".", "/")):
                host = (base / source).resolve()
                if not host.exists():
                    problems.add(at, f"mounts {source}, which does not exist")
                mounted.setdefault(name, []).append((host, target))
            elif source not in declared_volumes:
                problems.add(at, f"volume {source!r} is not declared")
        image = str(svc.get("image", ""))
        if "build" in svc and image.startswith("target-profile-sync"):
            command = svc.get("command") or ["run"]
            args = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
            check_cli_args(args, at, problems)

    consumer = services.get("profile-sync")
    if isinstance(consumer, dict):
        at = f"{where}: service profile-sync"
        env = _compose_env(consumer, base, at, problems)
        for key in sorted(env):
            if not known_env(key):
                problems.add(at, f"env {key} is not a setting of the service (consumer/config.py)")
        settings = load_settings(env, at, problems)
        if settings is not None:
            from urllib.parse import urlsplit

            host = urlsplit(settings.target_url).hostname
            if host not in services:
                problems.add(at, f"PROFILE_SYNC_TARGET_URL host {host!r} is not a service")
            for server in settings.consumer_config().get("bootstrap.servers", "").split(","):
                if server.rsplit(":", 1)[0] not in services:
                    problems.add(at, f"bootstrap server {server!r} is not a service")
            token = env.get("PROFILE_SYNC_TARGET_TOKEN_FILE", "")
            secret_targets = {
                f"/run/secrets/{s if isinstance(s, str) else s.get('target', s.get('source'))}"
                for s in consumer.get("secrets") or []
            }
            if token and token not in secret_targets:
                problems.add(at, f"PROFILE_SYNC_TARGET_TOKEN_FILE {token} is not a mounted secret")
            if settings.shutdown_timeout_seconds >= _seconds(
                consumer.get("stop_grace_period", "10s")
            ):
                problems.add(
                    at, "stop_grace_period must exceed PROFILE_SYNC_SHUTDOWN_TIMEOUT_SECONDS"
                )
            ports = [str(p) for p in consumer.get("ports") or []]
            if ports and not any(p.split(":")[-1] == str(settings.http_port) for p in ports):
                problems.add(
                    at, f"no published port maps to PROFILE_SYNC_HTTP_PORT {settings.http_port}"
                )

    shared = REPO / "deploy"
    prom_mounts = dict(mounted.get("prometheus", []))
    alerts = (shared / "prometheus" / "alerts.yml").resolve()
    if alerts.is_file() and alerts not in prom_mounts:
        problems.add(where, "prometheus must mount the shared ../prometheus/alerts.yml")
    for host, target in mounted.get("prometheus", []):
        if host.name == "prometheus.yml" and host.is_file():
            check_compose_prometheus(host, set(prom_mounts.values()), target, where, problems)
    dashboards = sorted((shared / "grafana").glob("*.json"))
    graf_hosts = {h for h, _ in mounted.get("grafana", [])}
    for dash in dashboards:
        if dash.resolve() not in graf_hosts and dash.parent.resolve() not in graf_hosts:
            problems.add(where, f"grafana does not mount the shared dashboard {dash.name}")
    kafka_image = str(_get(services, "kafka", "image") or "")
    pom = REPO / "deploy" / "local" / "pom.xml"
    if pom.is_file() and kafka_image:
        match = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom.read_text())
        if match and not kafka_image.endswith(":" + match.group(1)):
            problems.add(
                where,
                f"kafka image {kafka_image} is not the Kafka {match.group(1)} the tests use",
            )
    return problems


def check_compose_prometheus(
    path: Path, mounted_targets: set[str], _target: str, where: str, problems: Problems
) -> None:
    at = f"{where}: {path.name}"
    doc = yaml.safe_load(path.read_text()) or {}
    for rule_file in doc.get("rule_files") or []:
        if rule_file not in mounted_targets:
            problems.add(at, f"rule file {rule_file} is not mounted into the container")
    jobs = {c.get("job_name") for c in doc.get("scrape_configs") or []}
    alerts = REPO / "deploy" / "prometheus" / "alerts.yml"
    if alerts.is_file():
        for job in set(re.findall(r'job="([^"]+)"', alerts.read_text())) - jobs:
            problems.add(at, f"the alert rules expect a scrape job named {job!r}")


def _seconds(value: Any) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", str(value).strip())
    if not match:
        return 0.0
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[match.group(2)]
    return float(match.group(1)) * scale


# ---------------------------------------------------------------- main


def _report(problems: Problems) -> int:
    for line in problems.warnings:
        print(f"warning: {line}", file=sys.stderr)
    for line in problems.items:
        print(line, file=sys.stderr)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    k8s = sub.add_parser("k8s", help="check one rendered overlay")
    k8s.add_argument("name")
    k8s.add_argument("rendered", type=Path)
    compose = sub.add_parser("compose", help="check a compose file")
    compose.add_argument("path", type=Path)
    docs = sub.add_parser("docs", help="check the metric names a document mentions")
    docs.add_argument("path", type=Path)
    args = parser.parse_args(argv)
    if args.what == "k8s":
        return _report(check_overlay(load_docs(args.rendered.read_text()), args.name))
    if args.what == "compose":
        return _report(check_compose(args.path.resolve()))
    problems = Problems()
    check_metric_names(args.path.read_text(), str(args.path), problems)
    return _report(problems)


if __name__ == "__main__":
    raise SystemExit(main())
