"""Metric names mentioned in manifests, alerts and docs exist in consumer/metrics.py."""

from __future__ import annotations

import re

from deploy.checks import Problems

METRIC_RE = re.compile(r"\bprofile_sync_[a-z0-9_]+")


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
