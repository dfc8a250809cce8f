"""The consumer's pods: files, port, probes, shutdown, memory, security, Service, PDB."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from consumer.target.api import SINGLE_POST_MAX_BYTES
from deploy.checks import Problems
from deploy.checks.yamldoc import find, get, name_of, selects

CONSUMER_CONTAINER = "profile-sync"
# The shutdown needs this much less than the pod's grace period: SIGKILL comes at the end
# of the grace period, and the process still has to exit after its own timeout.
GRACE_MARGIN_SECONDS = 5
# Memory model of one replica (docs/deploy.md, "Sizing"): each term is a byte bound of the
# settings times what the process holds per byte of it, measured. The pod's memory limit
# must hold the worst case the settings allow.
# The interpreter, libraries and librdkafka's threads.
BASELINE_MEMORY_BYTES = 100_000_000
# A buffered profile row takes ~4.3x its encoded size of resident memory in the running
# service (bench/bench_memory.py: 455-517 B for a 108 B row, median 464-467, the ledger's
# runs in arrays; main 494-505 B in the same runs, 551-674 B in busier runs of session
# 4). 6.5 leaves room for runs that busy (~5.9x), as 7.0 did over 551-674 B.
BUFFER_MEMORY_FACTOR = 6.5
# Carry-forward (and the owner's memory) counts close to what Python holds: held/counted
# at most 1.11 over the shapes of bench/bench_carry_memory.py; 1.25 leaves room for the
# allocator's fragmentation.
CARRY_FORWARD_MEMORY_FACTOR = 1.25
# librdkafka's defaults: the consumer's fetch queue, and each producer's queue as
# consumer/config/kafka.py sets it (the DLQ producer; the repartition producer).
LIBRDKAFKA_QUEUE_KBYTES_DEFAULT = 65_536
PRODUCER_QUEUE_KBYTES_DEFAULT = 32_768
# Urgent events waiting for their single call: the queue counts each event's encoded
# parameters plus a fixed cost per event and attribute against
# PROFILE_SYNC_SINGLE_QUEUE_MAX_BYTES; Python held at most 1.00x what it counted over the
# shapes of bench/bench_urgent_memory.py (0.61-1.00); 1.25 leaves room for fragmentation.
URGENT_QUEUE_MEMORY_FACTOR = 1.25
# Each single-update worker also holds the event it is sending and its encoded request,
# taken off the queue's count: at most twice Target's 60 KB of parameters.
URGENT_IN_FLIGHT_BYTES = 2 * SINGLE_POST_MAX_BYTES


def consumer_container(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    for dep in find(docs, "Deployment"):
        for c in get(dep, "spec", "template", "spec", "containers") or []:
            if c.get("name") == CONSUMER_CONTAINER:
                return dep, c
    return None


def port_number(container: Mapping[str, Any], port: Any) -> int | None:
    if isinstance(port, int):
        return port
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    return None


def mount_for(container: Mapping[str, Any], path: str) -> dict[str, Any] | None:
    best: dict[str, Any] | None = None
    for m in container.get("volumeMounts") or []:
        mount = str(m.get("mountPath", "")).rstrip("/")
        inside = path == mount or path.startswith(mount + "/")
        if inside and (best is None or len(mount) > len(str(best["mountPath"]).rstrip("/"))):
            best = m
    return best


def memory_estimate(settings: Any) -> int:
    """Worst-case memory of one replica under ``settings``, in bytes."""
    return int(sum(memory_terms(settings).values()))


def memory_terms(settings: Any) -> dict[str, float]:
    """``memory_estimate``'s terms, by what they hold (docs/deploy.md, "Sizing")."""
    queue_kb = int(
        settings.consumer_config().get(
            "queued.max.messages.kbytes", LIBRDKAFKA_QUEUE_KBYTES_DEFAULT
        )
    )
    producer_kb = int(
        settings.producer_config().get("queue.buffering.max.kbytes", PRODUCER_QUEUE_KBYTES_DEFAULT)
    )
    repartition = settings.repartition != "never"
    # The repartition mode keeps the owner's memory whatever CARRY_FORWARD_ENABLED says.
    carry = settings.carry_forward_enabled or repartition
    return {
        "baseline": BASELINE_MEMORY_BYTES,
        "buffer": settings.buffer_max_bytes * BUFFER_MEMORY_FACTOR,
        "carry_forward": (
            settings.carry_forward_max_bytes * CARRY_FORWARD_MEMORY_FACTOR if carry else 0
        ),
        "retained_batches": settings.status_retain_max_bytes,
        "batches_sent": (settings.max_in_flight_batches + 1) * settings.batch_max_bytes,
        # The changelog restorer has a fetch queue of its own while it reads.
        "fetch_queues": queue_kb * 1024 * (2 if repartition else 1),
        "producer_queues": producer_kb * 1024 * (2 if repartition else 1),
        "urgent_queue": (
            settings.single_queue_max_bytes * URGENT_QUEUE_MEMORY_FACTOR
            + settings.single_concurrency * URGENT_IN_FLIGHT_BYTES
            if settings.single_enabled
            else 0
        ),
    }


_QUANTITY = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def quantity(value: Any) -> int | None:
    """A Kubernetes memory quantity in bytes (None if absent or not understood)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|k|M|G)?", str(value or "").strip())
    if not match:
        return None
    return int(float(match.group(1)) * _QUANTITY[match.group(2) or ""])


def check_files(
    settings: Any,
    env: Mapping[str, str],
    from_secrets: set[str],
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    dat: str,
    problems: Problems,
) -> None:
    """The token file is a rotating Secret, the quota state file on a writable volume."""
    token_file = settings.target_token_file and env.get("PROFILE_SYNC_TARGET_TOKEN_FILE", "")
    volumes = {v.get("name"): v for v in pod.get("volumes") or []}
    if token_file:
        mount = mount_for(container, token_file)
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
        mount = mount_for(container, state_file)
        if mount is None or mount.get("readOnly"):
            problems.add(dat, f"the quota state file {state_file} is not on a writable volume")


def check_runtime(
    docs: list[dict[str, Any]],
    settings: Any,
    dep: Mapping[str, Any],
    container: Mapping[str, Any],
    dat: str,
    problems: Problems,
) -> None:
    """Port, probes, shutdown grace, memory limit, and no fixed replica count."""
    pod = dep["spec"]["template"]["spec"]
    port = settings.http_port
    if settings.http_host in ("127.0.0.1", "localhost", "::1"):
        problems.add(dat, "PROFILE_SYNC_HTTP_HOST is loopback: probes and scrapes cannot reach it")
    container_ports = {int(p["containerPort"]) for p in container.get("ports") or []}
    if port not in container_ports:
        problems.add(dat, f"the service listens on {port}, not a containerPort")
    for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
        http_get = get(container, probe, "httpGet")
        if not http_get:
            problems.add(dat, f"{probe} must be an httpGet on {path}")
            continue
        if str(http_get.get("path", "")).split("?")[0] != path:
            problems.add(dat, f"{probe} path {http_get.get('path')!r}, the service serves {path}")
        if port_number(container, http_get.get("port")) != port:
            problems.add(dat, f"{probe} port {http_get.get('port')!r} is not the service's {port}")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if grace < settings.shutdown_timeout_seconds + GRACE_MARGIN_SECONDS:
        problems.add(
            dat,
            f"terminationGracePeriodSeconds {grace} must exceed "
            f"PROFILE_SYNC_SHUTDOWN_TIMEOUT_SECONDS {settings.shutdown_timeout_seconds:g} "
            f"by {GRACE_MARGIN_SECONDS}s",
        )
    limit = quantity(get(container, "resources", "limits", "memory"))
    need = memory_estimate(settings)
    if limit is not None and limit < need:
        problems.add(
            dat,
            f"memory limit {limit / 2**20:,.0f}Mi is below the {need / 2**20:,.0f}Mi the "
            "settings allow (buffer, carry-forward, retained batches, Kafka queues, "
            "urgent queue); "
            "raise it or lower those settings (docs/deploy.md, Sizing)",
        )
    if "replicas" in dep["spec"] and find(docs, "ScaledObject"):
        problems.add(dat, "spec.replicas fights the autoscaler: leave it out")


def check_security(
    pod: Mapping[str, Any], container: Mapping[str, Any], dat: str, problems: Problems
) -> None:
    psc = pod.get("securityContext") or {}
    csc = container.get("securityContext") or {}
    if not (psc.get("runAsNonRoot") or csc.get("runAsNonRoot")):
        problems.add(dat, "runAsNonRoot is not set")
    if not csc.get("readOnlyRootFilesystem"):
        problems.add(dat, "readOnlyRootFilesystem is not set")
    if csc.get("allowPrivilegeEscalation") is not False:
        problems.add(dat, "allowPrivilegeEscalation must be false")
    if "ALL" not in (get(csc, "capabilities", "drop") or []):
        problems.add(dat, "capabilities must drop ALL")
    if pod.get("enableServiceLinks") is not False:
        problems.add(dat, "enableServiceLinks must be false (injected PROFILE_SYNC_* names)")
    resources = container.get("resources") or {}
    for part in ("requests", "limits"):
        for res in ("cpu", "memory"):
            if not get(resources, part, res):
                problems.add(dat, f"resources.{part}.{res} is not set")


def check_service_and_pdb(
    docs: list[dict[str, Any]],
    container: Mapping[str, Any],
    pod_labels: Mapping[str, Any],
    port: int,
    where: str,
    problems: Problems,
) -> None:
    svcs = [
        s
        for s in find(docs, "Service")
        if selects({"matchLabels": get(s, "spec", "selector")}, pod_labels)
    ]
    if not svcs:
        problems.add(where, "no Service selects the consumer pods")
    for s in svcs:
        for p in get(s, "spec", "ports") or []:
            if port_number(container, p.get("targetPort", p.get("port"))) != port:
                problems.add(f"{where}: Service {name_of(s)}", f"targetPort is not {port}")
    for pdb in find(docs, "PodDisruptionBudget"):
        if not selects(get(pdb, "spec", "selector"), pod_labels):
            problems.add(f"{where}: PodDisruptionBudget {name_of(pdb)}", "does not select the pods")
