"""Injected faults and the bearer token over real HTTP."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.fixtures.emulator import RunningEmulator
from tests.unit.emulator.harness import Target, batch

pytestmark = pytest.mark.integration

TP = "batch=thirdPartyId"


def test_429_with_retry_after_then_503_then_success(emulator: RunningEmulator) -> None:
    emulator.control.inject(
        [
            {"api": "bulk", "status": 429, "retry_after": 2, "count": 1},
            {"api": "bulk", "status": 503, "count": 1},
        ]
    )
    with httpx.Client(base_url=emulator.url, timeout=10) as http:
        target = Target(http)
        url, body = target.bulk_url(), batch(f"{TP},a", "p1,x")
        throttled = http.post(url, content=body)
        assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "2")
        assert http.post(url, content=body).status_code == 503
        assert target.upload(body).success
    assert emulator.control.stats()["faults_injected"] == {
        "status_429": 1,
        "status_503": 1,
        "total": 2,
    }
    assert emulator.control.stats()["batches_accepted"] == 1


def test_dropped_connection_then_the_next_request_is_served(emulator: RunningEmulator) -> None:
    emulator.control.inject({"api": "single", "drop": True, "count": 1})
    with httpx.Client(base_url=emulator.url, timeout=10) as http:
        target = Target(http)
        target.upload(batch(f"{TP},a", "p1,x"))
        with pytest.raises(httpx.RemoteProtocolError):
            target.single(mbox3rdPartyId="p1", **{"profile.b": "1"})
        assert target.single(mbox3rdPartyId="p1", **{"profile.b": "2"}).status_code == 200
        assert target.attrs("p1") == {"a": "x", "b": "2"}
    log = emulator.control.requests(api="single")
    assert [(r["status"], r["fault"]) for r in log] == [(0, "drop"), (200, None)]


def test_latency_makes_a_client_time_out(emulator: RunningEmulator) -> None:
    emulator.control.inject({"api": "status", "latency": 2.0})
    with httpx.Client(base_url=emulator.url, timeout=0.3) as http:
        with pytest.raises(httpx.ReadTimeout):
            http.get("/m2/acme/profile/batchStatus?batchId=x")
        # The latency rule is spent: the next status call answers at once.
        assert http.get("/m2/acme/profile/batchStatus?batchId=x").status_code == 404


def test_stuck_batch_stays_stuck(emulator: RunningEmulator) -> None:
    emulator.control.inject({"api": "bulk", "stuck": True, "count": 1})
    with httpx.Client(base_url=emulator.url, timeout=10) as http:
        target = Target(http)
        stuck = target.upload(batch(f"{TP},a", "p1,x"))
        fine = target.upload(batch(f"{TP},a", "p2,y"))
        assert stuck.success
        emulator.control.wait_until(lambda: target.status(fine)["status"] == "complete", 10)
        assert target.status(stuck)["status"] == "stuck"
        assert target.attrs("p1") is None


def test_token_rotation_through_the_token_file(
    emulator_server: Callable[..., RunningEmulator], tmp_path: Path
) -> None:
    token_file = tmp_path / "target-token"
    token_file.write_text("token-one")
    emulator = emulator_server(token_file=str(token_file))
    with httpx.Client(base_url=emulator.url, timeout=10) as http:
        body = batch(f"{TP},a", "p1,x")
        assert http.post("/m2/acme/v2/profile/batchUpdate", content=body).status_code == 401
        assert Target(http, token="token-one").upload(body).success
        token_file.write_text("token-two-rotated")
        refused = http.post(
            "/m2/acme/v2/profile/batchUpdate",
            content=body,
            headers={"Authorization": "Bearer token-one"},
        )
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
        assert "token" not in refused.text.replace("authentication token", "")
        assert Target(http, token="token-two-rotated").attrs("p1") == {"a": "x"}
    assert emulator.control.stats()["rejections"] == {"unauthorized": 2}
