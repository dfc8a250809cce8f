"""The dashboard and the alert rules against a real Prometheus scraping the service.

Every PromQL expression we ship (dashboard panels, dashboard variables, alert rules) is sent
to a real Prometheus that scrapes a running service every second. The test fails if
Prometheus rejects an expression, if one names a profile_sync_* metric the service does not
export, if a panel shows nothing after real traffic, or if a rule evaluates with an error.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest

from tests.fixtures.prometheus import (
    Prometheus,
    alert_queries,
    alert_rules,
    dashboard,
    dashboard_queries,
    metric_names_in,
    prometheus_server,
    substitute,
    wait_for,
)
from tests.integration.conftest import Stack
from tests.integration.events import event, random_events

__all__ = ["prometheus_server"]  # the fixture, imported so pytest finds it here

pytestmark = pytest.mark.integration

JOB = "profile-sync"


def _has_data(result: dict[str, object]) -> bool:
    return bool(result.get("result"))


class Traffic:
    """Keeps events flowing, at most one burst a second: rates need samples that differ.

    Each burst: ordinary events for both id types, one URGENT event (single-update path)
    and one undecodable record (poison, dead-lettered).
    """

    def __init__(self, stack: Stack, produce_raw: Callable[..., object]) -> None:
        self._stack = stack
        self._produce_raw = produce_raw
        self._bursts = 0
        self._last = 0.0

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self._last < 1.0:
            return
        self._last = now
        n = self._bursts = self._bursts + 1
        start = 1_700_000_000_000 + n * 1_000
        events = random_events(30, 15, seed=n, start_ms=start, pcid_share=0.3)
        events.append(event(f"urgent-{n}", {"tier": "gold"}, start + 999, priority="URGENT"))
        self._stack.produce(events)
        self._produce_raw(self._stack.topics[0], [(b"poison", b"\x00 not avro")])


def test_dashboard_and_alerts_against_real_prometheus(
    prometheus_server: Callable[..., Prometheus],
    stack: Callable[..., Stack],
    produce_raw: Callable[..., object],
) -> None:
    s = stack(partitions=2, topics=1)
    # One retried and then rejected bulk upload, and one retried single update: the
    # retry, rejection and dead-letter series exist, and ProfileSyncBatchRejected must fire.
    s.emulator.control.inject({"api": "bulk", "status": 503, "count": 1})
    s.emulator.control.inject({"api": "bulk", "status": 400, "count": 1})
    s.emulator.control.inject({"api": "single", "status": 503, "count": 1})
    # librdkafka reports lag every second instead of every 15 s.
    service = s.start(KAFKA_STATISTICS_INTERVAL_MS="1000")
    target = f"127.0.0.1:{service.http_port}"
    more_traffic = Traffic(s, produce_raw)
    try:
        wait_for(
            lambda: service.alive() and service.metric("profile_sync_partitions_assigned") >= 1,
            60,
            "the service to be assigned its partitions",
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}; service log tail:\n{service.log_tail()}") from None
    more_traffic()
    prom = prometheus_server([target], job=JOB)
    wait_for(prom.targets_up, 60, f"Prometheus to scrape {target} successfully")

    instance = target.replace(".", "\\\\.")  # Grafana escapes regex variables like this
    queries = [(q, substitute(q.expr, JOB, instance)) for q in dashboard_queries()]
    wait_for(lambda: _has_data(prom.query("profile_sync_build_info")), 30, "a first scrape stored")

    # Every expression is valid PromQL that Prometheus evaluates without an error.
    errors = []
    for query, expr in queries:
        try:
            prom.query(expr)
        except AssertionError as exc:
            errors.append(f"{query.where}: {exc}")
    for query in alert_queries():
        try:
            prom.query(query.expr)
        except AssertionError as exc:
            errors.append(f"{query.where}: {exc}")
    assert not errors, "\n".join(errors)

    # Rates need two scrapes that differ: keep traffic going until every panel has data.
    panels = {p["title"] for p in dashboard()["panels"] if p["type"] != "row" and p.get("targets")}

    empty = set(panels)

    def every_panel_has_data() -> bool:
        more_traffic()
        empty.clear()
        empty.update(panels - {q.panel for q, expr in queries if _has_data(prom.query(expr))})
        return not empty

    try:
        wait_for(every_panel_has_data, 90, "every panel to show data", interval=0.5)
    except AssertionError:
        raise AssertionError(
            f"panels still empty after traffic: {sorted(empty)}; "
            f"service log tail:\n{service.log_tail()}"
        ) from None

    # The variables resolve to this job and instance.
    assert JOB in prom.label_values("job", "profile_sync_build_info")
    assert target in prom.label_values("instance", f'profile_sync_build_info{{job="{JOB}"}}')

    # Every name the dashboard and the rules read is one the service exports.
    referenced = set().union(
        *(metric_names_in(q.expr) for q in [*dashboard_queries(), *alert_queries()])
    )
    missing = referenced - prom.metric_names()
    assert not missing, f"referenced but not exported by the service: {sorted(missing)}"

    # Prometheus loaded every rule and evaluates it without an error.
    names = {rule["alert"] for rule in alert_rules()}

    def rules_evaluated() -> list[dict[str, object]]:
        rules = [r for r in prom.rules() if r.get("name") in names]
        if len(rules) == len(names) and all(
            r.get("lastEvaluation", "").startswith("2") for r in rules
        ):
            return rules
        return []

    rules = wait_for(rules_evaluated, 30, "every alert rule to be evaluated")
    broken = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
    assert not broken, broken

    # On real data, the one alert this run provokes fires, and nothing else does.
    def firing() -> set[str]:
        return {
            a["labels"]["alertname"] for a in prom.api("alerts")["alerts"] if a["state"] == "firing"
        }

    wait_for(lambda: "ProfileSyncBatchRejected" in firing(), 30, "ProfileSyncBatchRejected")
    assert firing() == {"ProfileSyncBatchRejected"}

    service.signal(signal.SIGTERM)
    assert service.wait(60) == 0, service.log_tail()
