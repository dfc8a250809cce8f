"""The tenant-wide rules over real HTTP: 50 bulk-API calls a minute, status retention, row loss.

The consumer-facing fixture switches the rate limit off by default (see
tests/fixtures/emulator.py), so every test here that needs it passes it explicitly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from emulator.config import EmulatorConfig
from tests.fixtures.emulator import RunningEmulator
from tests.integration.test_emulator_cli import Process, start
from tests.unit.emulator.harness import Target, batch

pytestmark = pytest.mark.integration

TP = "batch=thirdPartyId"


def test_the_51st_bulk_api_call_in_a_minute_gets_503(
    emulator_server: Callable[..., RunningEmulator],
) -> None:
    emulator = emulator_server(bulk_rate_limit=50)
    with httpx.Client(base_url=emulator.url, timeout=10) as http:
        target = Target(http)
        up = target.upload(batch(f"{TP},a", "p1,x"))
        codes = [http.get(up.status_url).status_code for _ in range(50)]
        assert codes == [200] * 49 + [503]
        refused = http.post(target.bulk_url(), content=batch(f"{TP},a", "p2,y"))
        assert refused.status_code == 503 and "<success>false</success>" in refused.text
        assert target.single(mbox3rdPartyId="p1", **{"profile.b": "1"}).status_code == 200
        assert target.fetch("p1").status_code == 200
    rate = emulator.control.stats()["bulk_rate"]
    assert (rate["limit"], rate["calls_counted"], rate["refused_503"]) == (50, 50, 2)
    assert rate["peak_calls_in_window"] == 52
    assert emulator.control.state() == {("thirdPartyId", "p1"): {"a": "x", "b": "1"}}


def test_the_consumer_fixture_keeps_the_emulators_limit_unless_told(
    emulator_server: Callable[..., RunningEmulator],
) -> None:
    assert EmulatorConfig().bulk_rate_limit == 50
    limited, unlimited = emulator_server(), emulator_server(bulk_rate_limit=0)
    for emulator, expected in ((limited, [200] * 49 + [503] * 11), (unlimited, [200] * 60)):
        with httpx.Client(base_url=emulator.url, timeout=10) as http:
            up = Target(http).upload(batch(f"{TP},a", "p1,x"))
            assert [http.get(up.status_url).status_code for _ in range(60)] == expected
    assert limited.control.stats()["bulk_rate"]["limit"] == 50
    rate = unlimited.control.stats()["bulk_rate"]
    assert (rate["limit"], rate["refused_503"], rate["peak_calls_in_window"]) == (0, 0, 61)


def test_evicted_statuses_answer_404_while_their_batches_still_apply(
    emulator_server: Callable[..., RunningEmulator],
) -> None:
    emulator = emulator_server(status_retention_count=2)
    with httpx.Client(base_url=emulator.url, timeout=10) as http:
        target = Target(http)
        ups = [target.upload(batch(f"{TP},a", f"p{i},x")) for i in range(3)]
        gone = http.get(ups[0].status_url)
        assert gone.status_code == 404 and "<success>false</success>" in gone.text
        assert [target.status(up)["status"] for up in ups[1:]] == ["complete", "complete"]
    assert len(emulator.control.state()) == 3


def test_lost_rows_over_http_are_listed_for_repair(
    emulator_server: Callable[..., RunningEmulator],
) -> None:
    emulator = emulator_server(bulk_loss_rate=0.05, bulk_loss_seed=3)
    with httpx.Client(base_url=emulator.url, timeout=10) as http:
        target = Target(http)
        up = target.upload(batch(f"{TP},a", *(f"p{i},x" for i in range(200))))
        assert target.status(up)["successfulUpdates"] == "200"
        lost = http.get("/_emulator/lost").json()["lost"]
    assert len(lost) == 10 and {x["batchId"] for x in lost} == {up.batch_id}
    state = emulator.control.state()
    assert len(state) == 190
    assert not {("thirdPartyId", x["id"]) for x in lost} & set(state)


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for p in started:
        p.stop()


def test_cli_options_reach_the_running_emulator(processes: list[Process]) -> None:
    _, url = start(
        processes,
        "--port",
        "0",
        "--bulk-rate-limit",
        "2",
        "--decoding",
        "B",
        "--long-id",
        "truncate",
        "--status-retention-count",
        "4",
        "--status-retention-seconds",
        "600",
        "--bulk-loss-rate",
        "0.001",
        "--bulk-loss-seed",
        "9",
    )
    config = httpx.get(f"{url}/_emulator/config", timeout=10).json()
    assert {k: config[k] for k in ("bulk_rate_limit", "decoding", "long_id")} == {
        "bulk_rate_limit": 2,
        "decoding": "B",
        "long_id": "truncate",
    }
    assert (config["status_retention_count"], config["status_retention_seconds"]) == (4, 600.0)
    assert (config["bulk_loss_rate"], config["bulk_loss_seed"]) == (0.001, 9)
    with httpx.Client(base_url=url, timeout=10) as http:
        target = Target(http)
        up = target.upload(batch(f"{TP},city,tier,store", "p1,Paris%2C%20FR,gold"))
        assert http.get(up.status_url).status_code == 200
        assert http.get(up.status_url).status_code == 503
        # Decoding B: the encoded comma shifted the columns.
        assert target.attrs("p1") == {"city": "Paris", "tier": " FR", "store": "gold"}
