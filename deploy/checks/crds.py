"""The custom resources kubernetes-validate has no schema for, checked structurally."""

from __future__ import annotations

from typing import Any

from deploy.checks import Problems
from deploy.checks.yamldoc import find, get, name_of, require, selects


def check_crds(docs: list[dict[str, Any]], where: str, problems: Problems) -> None:
    """Structural checks of the custom resources kubernetes-validate has no schema for."""
    deployments = {name_of(d) for d in find(docs, "Deployment")}
    auths = {name_of(d) for d in find(docs, "TriggerAuthentication")}
    for so in find(docs, "ScaledObject"):
        at = f"{where}: ScaledObject {name_of(so)}"
        if so.get("apiVersion") != "keda.sh/v1alpha1":
            problems.add(at, f"apiVersion must be keda.sh/v1alpha1, not {so.get('apiVersion')}")
        require(so, at, problems, "metadata.name", "spec.scaleTargetRef.name", "spec.triggers")
        target = get(so, "spec", "scaleTargetRef", "name")
        if target and target not in deployments:
            problems.add(at, f"scaleTargetRef names {target!r}, which is not a Deployment here")
        kind = get(so, "spec", "scaleTargetRef", "kind") or "Deployment"
        if kind != "Deployment":
            problems.add(at, f"scaleTargetRef.kind must be Deployment, not {kind}")
        lo = get(so, "spec", "minReplicaCount")
        hi = get(so, "spec", "maxReplicaCount")
        if not isinstance(hi, int) or isinstance(hi, bool) or hi < 1:
            problems.add(at, "spec.maxReplicaCount must be a whole number >= 1")
        # KEDA's kafka scaler without `topic` finds the topics through the group's commits;
        # at zero replicas nothing commits, and it would never scale up again.
        if not isinstance(lo, int) or isinstance(lo, bool) or lo < 1:
            problems.add(at, "spec.minReplicaCount must be a whole number >= 1")
        elif isinstance(hi, int) and lo > hi:
            problems.add(at, "spec.minReplicaCount is above spec.maxReplicaCount")
        triggers = get(so, "spec", "triggers")
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
            ref = get(trig, "authenticationRef", "name")
            if ref and ref not in auths:
                problems.add(tat, f"authenticationRef names {ref!r}, not a TriggerAuthentication")
    for ta in find(docs, "TriggerAuthentication"):
        at = f"{where}: TriggerAuthentication {name_of(ta)}"
        if ta.get("apiVersion") != "keda.sh/v1alpha1":
            problems.add(at, "apiVersion must be keda.sh/v1alpha1")
        refs = get(ta, "spec", "secretTargetRef")
        if not isinstance(refs, list) or not refs:
            problems.add(at, "spec.secretTargetRef must list the parameters")
            continue
        for ref in refs:
            if not isinstance(ref, dict) or not all(
                ref.get(k) for k in ("parameter", "name", "key")
            ):
                problems.add(at, "each secretTargetRef needs parameter, name and key")
    services = find(docs, "Service")
    for sm in find(docs, "ServiceMonitor"):
        at = f"{where}: ServiceMonitor {name_of(sm)}"
        if sm.get("apiVersion") != "monitoring.coreos.com/v1":
            problems.add(at, "apiVersion must be monitoring.coreos.com/v1")
        require(sm, at, problems, "spec.selector.matchLabels", "spec.endpoints")
        chosen = [
            s
            for s in services
            if selects(get(sm, "spec", "selector"), s["metadata"].get("labels") or {})
        ]
        if not chosen:
            problems.add(at, "its selector matches no Service")
        port_names = {p.get("name") for s in chosen for p in get(s, "spec", "ports") or []}
        for ep in get(sm, "spec", "endpoints") or []:
            if ep.get("port") not in port_names:
                problems.add(at, f"endpoint port {ep.get('port')!r} is not a port of the Service")
            if ep.get("path", "/metrics") != "/metrics":
                problems.add(at, f"endpoint path {ep.get('path')!r}: the service serves /metrics")
