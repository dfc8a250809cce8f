"""The one HTTP port over real HTTP on 127.0.0.1: what a kubelet and a Prometheus get."""

from __future__ import annotations

import gzip
import signal
import socket
from collections.abc import Callable, Iterator

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from consumer.errors import ConfigError
from consumer.health import Health, HealthServer
from consumer.metrics import Metrics
from tests.integration.conftest import Stack
from tests.integration.service import Service, wait_for
from tests.utils import FakeClock

pytestmark = pytest.mark.integration


@pytest.fixture
def setup() -> Iterator[tuple[FakeClock, Health, Metrics, str]]:
    clock = FakeClock()
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    health = Health(clock, liveness_timeout=30, metrics=metrics)
    server = HealthServer("127.0.0.1", 0, health, registry)
    server.start()
    try:
        yield clock, health, metrics, f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


def test_probes_follow_the_loop(setup: tuple[FakeClock, Health, Metrics, str]) -> None:
    clock, health, _, url = setup
    r = httpx.get(f"{url}/readyz")
    assert (r.status_code, r.text) == (503, "starting: the consume loop has not turned yet\n")
    assert httpx.get(f"{url}/livez").status_code == 200

    health.beat()
    health.set_assigned(2)
    r = httpx.get(f"{url}/readyz")
    assert (r.status_code, r.text) == (200, "ok: 2 partitions assigned\n")

    clock.now += 31
    r = httpx.get(f"{url}/livez")
    assert r.status_code == 503
    assert "last turned 31s ago" in r.text

    health.beat()
    assert httpx.get(f"{url}/livez").status_code == 200
    health.set_fatal("kafka client entered a fatal state")
    r = httpx.get(f"{url}/readyz")
    assert (r.status_code, r.text) == (503, "fatal: kafka client entered a fatal state\n")


def test_strict_readiness_by_query(setup: tuple[FakeClock, Health, Metrics, str]) -> None:
    _, health, _, url = setup
    health.beat()
    health.set_assigned(0)
    assert httpx.get(f"{url}/readyz").status_code == 200
    r = httpx.get(f"{url}/readyz?assigned=1")
    assert (r.status_code, r.text) == (503, "no partitions assigned\n")
    health.set_assigned(1)
    assert httpx.get(f"{url}/readyz?assigned=1").status_code == 200


def test_metrics_text_format(setup: tuple[FakeClock, Health, Metrics, str]) -> None:
    _, _, metrics, url = setup
    metrics.events_consumed.labels("pos.profile-changes", "pos").inc(42)
    r = httpx.get(f"{url}/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }
    key = (
        "profile_sync_events_consumed_total",
        (("source", "pos"), ("topic", "pos.profile-changes")),
    )
    assert samples[key] == 42


def test_metrics_openmetrics_and_gzip_when_asked(
    setup: tuple[FakeClock, Health, Metrics, str],
) -> None:
    _, _, _, url = setup
    # Prometheus's own scrape headers.
    headers = {
        "Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        "Accept-Encoding": "gzip",
    }
    with httpx.stream("GET", f"{url}/metrics", headers=headers) as r:
        body = gzip.decompress(b"".join(r.iter_raw()))
        assert r.headers["content-type"].startswith("application/openmetrics-text")
        assert r.headers["content-encoding"] == "gzip"
    assert body.rstrip().endswith(b"# EOF")
    raw = httpx.get(f"{url}/metrics", headers={**headers, "Accept-Encoding": "identity"})
    assert "content-encoding" not in raw.headers
    assert raw.content.startswith(b"# HELP")


def test_metrics_name_filter(setup: tuple[FakeClock, Health, Metrics, str]) -> None:
    _, _, _, url = setup
    r = httpx.get(f"{url}/metrics", params={"name[]": "profile_sync_ready"})
    names = {f.name for f in text_string_to_metric_families(r.text)}
    assert names == {"profile_sync_ready"}


def test_metrics_disabled_is_404_and_probes_still_work() -> None:
    clock = FakeClock()
    health = Health(clock, liveness_timeout=30)
    server = HealthServer("127.0.0.1", 0, health, None)
    server.start()
    try:
        url = f"http://127.0.0.1:{server.port}"
        assert httpx.get(f"{url}/metrics").status_code == 404
        assert httpx.get(f"{url}/livez").status_code == 200
        assert httpx.get(f"{url}/other").status_code == 404
        assert httpx.head(f"{url}/livez").status_code == 200
    finally:
        server.stop()


def test_stop_releases_the_port() -> None:
    server = HealthServer("127.0.0.1", 0, Health(FakeClock(), 30), None)
    server.start()
    port = server.port
    assert port != 0
    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/livez", timeout=2)
    again = HealthServer("127.0.0.1", port, Health(FakeClock(), 30), None)
    again.start()
    try:
        assert again.port == port
    finally:
        again.stop()


def test_port_in_use_is_a_configuration_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = HealthServer("127.0.0.1", port, Health(FakeClock(), 30), None)
        with pytest.raises(ConfigError, match="PROFILE_SYNC_HTTP_PORT"):
            server.start()


# ---------------------------------------------------------------- the real service


def _wait_ready(service: Service) -> None:
    def ready() -> bool:
        if not service.alive():
            raise AssertionError(f"service exited; log tail:\n{service.log_tail()}")
        try:
            return httpx.get(f"{service.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, 60, "/readyz to answer 200")


def test_running_service_is_live_and_ready_then_exits_cleanly(stack: Callable[..., Stack]) -> None:
    s = stack(partitions=1, topics=1)
    service = s.start()
    _wait_ready(service)
    live = httpx.get(f"{service.url}/livez", timeout=2)
    assert (live.status_code, live.text) == (200, "ok\n")
    assert httpx.get(f"{service.url}/metrics", timeout=2).status_code == 200
    service.signal(signal.SIGTERM)
    assert service.wait(60) == 0, service.log_tail()


def test_ready_gauge_agrees_with_readyz(stack: Callable[..., Stack]) -> None:
    s = stack(partitions=1, topics=1)
    service = s.start()
    try:
        _wait_ready(service)
        assert service.metric("profile_sync_ready") == 1
    finally:
        service.signal(signal.SIGTERM)
        service.wait(60)
