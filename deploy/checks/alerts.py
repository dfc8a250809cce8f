"""Alert rules, scrape job and dashboards agree wherever they are wired together.

The alert rules and the dashboard filter on ``job="profile-sync"``: the ServiceMonitor
must relabel the job to it, the compose Prometheus must scrape under it and mount the
shared rules, and the compose Grafana must mount the shared dashboards.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from deploy.checks import REPO, Problems
from deploy.checks.yamldoc import find, get, name_of

ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
DASHBOARDS = REPO / "deploy" / "grafana"


def alert_jobs() -> set[str]:
    """The scrape jobs the alert rules select on."""
    return set(re.findall(r'job="([^"]+)"', ALERTS.read_text())) if ALERTS.is_file() else set()


def check_monitor_job(docs: list[dict[str, Any]], where: str, problems: Problems) -> None:
    jobs = alert_jobs()
    for sm in find(docs, "ServiceMonitor"):
        for ep in get(sm, "spec", "endpoints") or []:
            relabeled = {
                r.get("replacement")
                for r in ep.get("relabelings") or []
                if r.get("targetLabel") == "job"
            }
            for job in jobs - relabeled:
                problems.add(
                    f"{where}: ServiceMonitor {name_of(sm)}",
                    f"the alert rules expect job={job!r}: relabel job to it",
                )


def check_compose_monitoring(
    mounted: dict[str, list[tuple[Path, str]]], where: str, problems: Problems
) -> None:
    """The compose Prometheus and Grafana use the shared rules and dashboards."""
    prom_mounts = dict(mounted.get("prometheus", []))
    alerts = ALERTS.resolve()
    if alerts.is_file() and alerts not in prom_mounts:
        problems.add(where, "prometheus must mount the shared ../prometheus/alerts.yml")
    for host, target in mounted.get("prometheus", []):
        if host.name == "prometheus.yml" and host.is_file():
            check_compose_prometheus(host, set(prom_mounts.values()), target, where, problems)
    dashboards = sorted(DASHBOARDS.glob("*.json"))
    graf_hosts = {h for h, _ in mounted.get("grafana", [])}
    for dash in dashboards:
        if dash.resolve() not in graf_hosts and dash.parent.resolve() not in graf_hosts:
            problems.add(where, f"grafana does not mount the shared dashboard {dash.name}")


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
