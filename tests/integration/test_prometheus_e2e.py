"""The dashboard and the alert rules against a real Prometheus scraping the service.

Every PromQL expression we ship (dashboard panels, dashboard variables, alert rules) is sent
to a real Prometheus that scrapes a running service every second. The test fails if
Prometheus rejects an expression, if one names a profile_sync_* metric the service does not
export, if a panel shows nothing after real traffic, or if a rule evaluates with an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from prometheus_client import CollectorRegistry

from consumer.clock import SystemClock
from consumer.health import Health, HealthServer
from consumer.metrics import Metrics
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

__all__ = ["prometheus_server"]  # the fixture, imported so pytest finds it here

pytestmark = pytest.mark.integration

JOB = "profile-sync"


def _standin_traffic(m: Metrics) -> None:
    """One value for every label combination the dashboard and alerts read."""
    m.events_consumed.labels("pos.profile-changes", "pos").inc(1000)
    m.events_routed.labels("bulk").inc(990)
    m.events_routed.labels("single").inc(10)
    m.events_skipped.inc(3)
    m.poison_events.labels("decode", "undecodable").inc(2)
    m.dead_letters.labels("decode", "undecodable").inc(2)
    m.buffer_rows.labels("thirdPartyId").set(120)
    m.buffer_bytes.set(64_000)
    m.oldest_pending_age.set(2.5)
    m.batches_flushed.labels("thirdPartyId", "linger").inc(4)
    m.batch_rows.labels("thirdPartyId").observe(800)
    m.batch_bytes.labels("thirdPartyId").observe(90_000)
    m.batch_events.labels("thirdPartyId").inc(990)
    m.batches.labels("thirdPartyId", "accepted").inc(4)
    m.end_to_end_delay.observe(12)
    m.target_requests.labels("bulk", "2xx").inc(4)
    m.target_requests.labels("bulk", "5xx").inc(1)
    m.target_latency.labels("bulk").observe(0.4)
    m.target_retries.labels("bulk").inc()
    m.partitions_assigned.set(3)
    m.consumer_lag.labels("pos.profile-changes", "0").set(12)
    m.rebalances.labels("assign").inc()
    m.single_updates.labels("sent").inc(10)
    m.single_budget_remaining.set(199_990)
    m.single_budget_total.set(200_000)
    m.urgent_delay.observe(0.08)
    m.batch_status.labels("complete").inc(4)
    m.batch_updates.labels("successful").inc(800)
    m.loop_last_turn.set(SystemClock().time())
    m.ready.set(1)


@pytest.fixture
def service_target() -> Iterator[tuple[str, Callable[[], None]]]:
    """A stand-in service: the real Metrics registry behind the real HealthServer.

    Yields the scrape address and a function that adds more traffic (rates need two
    different samples).
    """
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    health = Health(SystemClock(), 60, metrics)
    server = HealthServer("127.0.0.1", 0, health, registry)
    server.start()
    health.beat()
    _standin_traffic(metrics)
    try:
        yield f"127.0.0.1:{server.port}", lambda: _standin_traffic(metrics)
    finally:
        server.stop()


def _has_data(result: dict[str, object]) -> bool:
    return bool(result.get("result"))


def test_dashboard_and_alerts_against_real_prometheus(
    prometheus_server: Callable[..., Prometheus],
    service_target: tuple[str, Callable[[], None]],
) -> None:
    target, more_traffic = service_target
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
        wait_for(every_panel_has_data, 60, "every panel to show data")
    except AssertionError:
        raise AssertionError(f"panels still empty after traffic: {sorted(empty)}") from None

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
