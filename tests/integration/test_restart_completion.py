"""What a stopped process knew about batches accepted but not complete is not lost
(issue 17, items 3 and 4; guarantee 13 in docs/guarantees.md).

Under the emulator's ``replace-pending`` mode a later batch for a profile replaces what an
earlier, still pending batch would have written. A restart between the two used to lose
the earlier batch's attributes (carry-forward lived only in memory), and a stuck batch
accepted before a restart was never resubmitted nor dead-lettered.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest

from tests.integration.conftest import Stack
from tests.integration.events import event
from tests.integration.service import wait_for

PROFILES = 40


def _wave(name: str, start_ms: int) -> list[dict[str, object]]:
    # Each wave writes its own attribute, so a replaced pending batch shows as a gap.
    return [event(f"crm-{i}", {name: f"{name}-{i}"}, start_ms + i) for i in range(PROFILES)]


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_a_restart_before_completion_loses_no_attribute(
    stack: Callable[..., Stack], how: str
) -> None:
    s = stack(partitions=1, topics=1, bulk_apply_delay=12.0, override_mode="replace-pending")
    s.produce(_wave("first", 1_000))
    service = s.start()
    wait_for(s.all_committed, 60, "the first wave accepted and committed")
    assert s.emulator.control.stats()["batches"]["complete"] == 0  # still pending in Target
    if how == "SIGKILL":
        service.kill()
    else:
        service.signal(signal.SIGTERM)
        assert service.wait(30) == 0
    s.produce(_wave("second", 2_000))
    again = s.start()
    s.wait_for_state(s.expected(), timeout=60)
    wait_for(s.all_committed, 30, "everything committed")
    again.signal(signal.SIGTERM)
    assert again.wait(30) == 0


def test_a_stuck_batch_accepted_before_a_restart_is_still_delivered(
    stack: Callable[..., Stack],
) -> None:
    s = stack(partitions=1, topics=1)
    s.emulator.control.inject({"api": "bulk", "stuck": True, "count": 1})
    s.produce(_wave("tier", 1_000))
    # The first process would only learn the batch is stuck at its first poll, 60 s away.
    service = s.start(
        PROFILE_SYNC_STATUS_POLL_INITIAL_SECONDS="60", PROFILE_SYNC_STATUS_POLL_MAX_SECONDS="60"
    )
    wait_for(s.all_committed, 60, "the batch accepted and committed")
    assert s.emulator.control.stats()["batches"]["stuck"] == 1
    service.signal(signal.SIGTERM)
    assert service.wait(30) == 0
    assert s.target_state() == {}  # nothing of it was applied
    again = s.start()
    s.wait_for_state(s.expected(), timeout=60)
    again.signal(signal.SIGTERM)
    assert again.wait(30) == 0
