"""Probe semantics: pure state and a fake clock (HTTP: tests/integration/test_health_server.py)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from consumer.health import Health
from consumer.metrics import Metrics
from tests.utils import FakeClock


def test_live_during_start_up_until_the_timeout() -> None:
    clock = FakeClock()
    health = Health(clock, liveness_timeout=60)
    assert health.live()[0]
    clock.advance(59)
    assert health.live()[0]
    clock.advance(2)
    ok, detail = health.live()
    assert not ok
    assert "not turned since start-up" in detail


def test_live_while_the_loop_turns_dead_when_it_stops_turning() -> None:
    clock = FakeClock()
    health = Health(clock, liveness_timeout=30)
    for _ in range(10):  # an hour-long Target outage: paused, but the loop keeps turning
        clock.advance(20)
        health.beat()
        assert health.live() == (True, "ok")
    clock.advance(31)
    ok, detail = health.live()
    assert not ok
    assert "last turned 31s ago" in detail and "limit 30s" in detail


def test_not_ready_until_the_loop_turned() -> None:
    health = Health(FakeClock(), liveness_timeout=60)
    ok, detail = health.ready()
    assert not ok and "starting" in detail
    health.beat()
    assert health.ready()[0]


def test_ready_without_partitions_by_default_strict_mode_needs_them() -> None:
    health = Health(FakeClock(), liveness_timeout=60)
    health.beat()
    health.set_assigned(0)
    assert health.ready() == (True, "ok: 0 partitions assigned")
    ok, detail = health.ready(require_assignment=True)
    assert not ok and detail == "no partitions assigned"
    health.set_assigned(3)
    assert health.ready(require_assignment=True) == (True, "ok: 3 partitions assigned")


def test_fatal_is_permanently_not_ready() -> None:
    health = Health(FakeClock(), liveness_timeout=60)
    health.beat()
    health.set_assigned(2)
    health.set_fatal("batch rejected and PROFILE_SYNC_ON_REJECTED=stop")
    health.beat()
    health.set_assigned(4)
    ok, detail = health.ready()
    assert not ok
    assert detail == "fatal: batch rejected and PROFILE_SYNC_ON_REJECTED=stop"


def test_stopping_is_not_ready_but_stays_live() -> None:
    clock = FakeClock()
    health = Health(clock, liveness_timeout=10)
    health.beat()
    health.set_assigned(1)
    health.set_stopping()
    assert health.ready() == (False, "shutting down")
    clock.advance(120)  # the final flush waits for Target: no restart in the middle of it
    assert health.live()[0]


def test_ready_gauge_follows_readiness() -> None:
    registry = CollectorRegistry()
    health = Health(FakeClock(), liveness_timeout=60, metrics=Metrics(registry))

    def ready() -> float | None:
        return registry.get_sample_value("profile_sync_ready")

    assert ready() == 0
    health.beat()
    assert ready() == 1
    health.set_stopping()
    assert ready() == 0


def test_ready_gauge_zero_after_fatal() -> None:
    registry = CollectorRegistry()
    health = Health(FakeClock(), liveness_timeout=60, metrics=Metrics(registry))
    health.beat()
    health.set_fatal("kafka client entered a fatal state")
    assert registry.get_sample_value("profile_sync_ready") == 0


def test_not_ready_while_the_owners_memory_is_restored() -> None:
    health = Health(FakeClock(), liveness_timeout=60)
    health.beat()
    restoring = [True]
    health.restoring = lambda: restoring[0]
    ok, detail = health.ready()
    assert not ok and "restoring" in detail
    assert health.live()[0]  # restoring is work, not a hang
    restoring[0] = False
    assert health.ready()[0]
