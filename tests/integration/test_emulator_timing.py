"""Asynchronous application over real HTTP, with real (short) delays and the ticker thread."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from tests.fixtures.emulator import RunningEmulator
from tests.unit.emulator.harness import Target, batch

pytestmark = pytest.mark.integration

TP = "batch=thirdPartyId"


def test_batch_is_incomplete_until_the_delay_passes(
    emulator_server: Callable[..., RunningEmulator],
) -> None:
    emulator = emulator_server(bulk_apply_delay=0.5)
    with httpx.Client(base_url=emulator.url, timeout=10) as http:
        target = Target(http)
        accepted = time.monotonic()
        up = target.upload(batch(f"{TP},a", "p1,x"))
        first = target.status(up)
        if time.monotonic() - accepted < 0.5:  # a very slow machine may already be past it
            assert first["status"] == "incomplete" and first["consumedCount"] == "0"
            assert target.attrs("p1") is None
        done = emulator.control.wait_until(
            lambda: target.status(up)["status"] == "complete", timeout=10
        )
        assert done and time.monotonic() - accepted >= 0.5
        assert target.attrs("p1") == {"a": "x"}


def test_the_background_ticker_applies_without_any_request(
    emulator_server: Callable[..., RunningEmulator],
) -> None:
    emulator = emulator_server(bulk_apply_delay=0.2, single_apply_delay=0.1, tick_seconds=0.02)
    with httpx.Client(base_url=emulator.url, timeout=10) as http:
        target = Target(http)
        target.upload(batch(f"{TP},a", "p1,x"))
        target.single(mbox3rdPartyId="p1", **{"profile.b": "1"})
    store = emulator.app.store
    # Read the store directly, without advancing it: only the ticker can empty the queue.
    emulator.control.wait_until(lambda: store.pending() == (0, 0), timeout=10)
    assert store.counts["batches_complete"] == 1


def test_slow_bulk_lands_after_a_faster_single_update_and_wins(
    emulator_server: Callable[..., RunningEmulator],
) -> None:
    emulator = emulator_server(bulk_apply_delay=1.0, single_apply_delay=0.0)
    with httpx.Client(base_url=emulator.url, timeout=10) as http:
        target = Target(http)
        target.upload(batch(f"{TP},tier", "crm-1,bronze"))
        emulator.control.wait_until(lambda: target.attrs("crm-1"), timeout=10)
        up = target.upload(batch(f"{TP},tier", "crm-1,silver"))
        assert target.single(mbox3rdPartyId="crm-1", **{"profile.tier": "gold"}).status_code == 200
        if target.status(up)["status"] == "incomplete":
            assert target.attrs("crm-1") == {"tier": "gold"}
        # A status poll is a bulk-API call (50 a minute per tenant): poll like a client.
        emulator.control.wait_until(
            lambda: target.status(up)["status"] == "complete", 10, interval=0.2
        )
        assert target.attrs("crm-1") == {"tier": "silver"}
    detail = emulator.control.profiles(details=True)["thirdPartyId"]["crm-1"]["tier"]
    assert detail["source"] == f"batch:{up.batch_id}"


def test_replace_pending_over_http(emulator_server: Callable[..., RunningEmulator]) -> None:
    # The test polls the status in a tight loop: the bulk-API call limit is not its subject.
    emulator = emulator_server(
        bulk_apply_delay=1.0, override_mode="replace-pending", bulk_rate_limit=0
    )
    with httpx.Client(base_url=emulator.url, timeout=10) as http:
        target = Target(http)
        first = target.upload(batch(f"{TP},a,b", "p1,a1,b1"))
        second = target.upload(batch(f"{TP},b", "p1,b2"))
        first_pending = target.status(first)["status"] == "incomplete"
        emulator.control.wait_until(
            lambda: target.status(second)["status"] == "complete", timeout=10
        )
        if first_pending:  # accepted within the second: the strict reading applies
            assert target.attrs("p1") == {"b": "b2"}
            assert emulator.control.batch(first.batch_id)["discardedRows"] == 1
