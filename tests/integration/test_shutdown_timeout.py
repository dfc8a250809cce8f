"""Shutdown keeps its promise (issue 17, item 12; guarantee 10 in docs/guarantees.md):
SIGTERM to exit within PROFILE_SYNC_SHUTDOWN_TIMEOUT_SECONDS plus a stated margin of
1.5 s (interpreter teardown, process reaping), whatever is in flight."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Callable

import pytest

from tests.integration.conftest import Stack
from tests.integration.events import event
from tests.integration.service import wait_for

TIMEOUT = 4.0
MARGIN = 1.5


@pytest.mark.parametrize("in_flight", ["upload_on_the_wire", "dead_letter_refused"])
def test_sigterm_exits_within_the_shutdown_timeout(
    stack: Callable[..., Stack], produce_raw: Callable[..., object], in_flight: str
) -> None:
    s = stack(partitions=1, topics=1)
    overrides = {"PROFILE_SYNC_SHUTDOWN_TIMEOUT_SECONDS": str(TIMEOUT)}
    if in_flight == "upload_on_the_wire":
        # Target holds the upload for longer than the whole shutdown budget.
        s.emulator.control.inject({"api": "bulk", "latency": 25, "count": 5})
        s.produce([event(f"crm-{i}", {"tier": "gold"}, 1_000 + i) for i in range(10)])
    else:
        # A poison record whose dead letter the broker refuses (the topic does not exist).
        overrides["PROFILE_SYNC_DLQ_TOPIC"] = f"missing-{uuid.uuid4().hex[:8]}"
        produce_raw(s.topics[0], [(b"k", b"\x00not avro")])
    service = s.start(**overrides)

    def busy() -> bool:
        if in_flight == "upload_on_the_wire":
            return s.emulator.control.stats()["bulk_requests"] >= 1
        return service.metric("profile_sync_poison_events_total") >= 1

    wait_for(busy, 60, f"the service to be busy ({in_flight})")
    signalled = time.monotonic()
    service.signal(signal.SIGTERM)
    service.wait(TIMEOUT + 10)
    took = time.monotonic() - signalled
    assert took <= TIMEOUT + MARGIN, f"exited {took:.1f}s after SIGTERM; log:\n{service.log_tail()}"
