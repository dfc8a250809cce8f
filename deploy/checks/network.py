"""The NetworkPolicy lets through DNS, Kafka, Target, the Schema Registry and Prometheus."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from deploy.checks import Problems
from deploy.checks.yamldoc import find, get, name_of, selects


def port_allowed(policy: Mapping[str, Any], direction: str, port: int) -> bool:
    for rule in get(policy, "spec", direction) or []:
        ports = rule.get("ports")
        if not ports:
            return True
        for p in ports:
            if p.get("protocol", "TCP") != "TCP" or not isinstance(p.get("port"), int):
                continue
            if p["port"] <= port <= int(p.get("endPort", p["port"])):
                return True
    return False


def url_port(url: str) -> int | None:
    from urllib.parse import urlsplit

    if not url:
        return None
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def check_network_policy(
    docs: list[dict[str, Any]],
    settings: Any,
    pod_labels: Mapping[str, Any],
    port: int,
    where: str,
    problems: Problems,
) -> None:
    policies = [
        p for p in find(docs, "NetworkPolicy") if selects(get(p, "spec", "podSelector"), pod_labels)
    ]
    if not policies:
        problems.add(where, "no NetworkPolicy selects the consumer pods")
        return
    for pol in policies:
        at = f"{where}: NetworkPolicy {name_of(pol)}"
        types = set(get(pol, "spec", "policyTypes") or [])
        if types != {"Ingress", "Egress"}:
            problems.add(at, "policyTypes must be Ingress and Egress (deny all else)")
        # Ingress: named ports resolve against the container, numbers as they are.
        ingress_ok = False
        for rule in get(pol, "spec", "ingress") or []:
            for p in rule.get("ports") or []:
                if p.get("port") in (port, "http"):
                    ingress_ok = True
        if not ingress_ok:
            problems.add(at, f"Prometheus cannot reach the metrics port {port}")
        needed: dict[str, int | None] = {"DNS": 53}
        for server in str(settings.consumer_config().get("bootstrap.servers", "")).split(","):
            if ":" in server:
                needed[f"Kafka {server}"] = int(server.rsplit(":", 1)[1])
        needed["Target"] = url_port(settings.target_url)
        needed["Schema Registry"] = url_port(settings.schema_registry_url)
        for what, p in needed.items():
            if p is not None and not port_allowed(pol, "egress", p):
                problems.add(at, f"egress to {what} (port {p}) is not allowed")
