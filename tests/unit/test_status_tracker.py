"""A batch whose status never answers is "unknown", never a reason to upload it again.

Target keeps few statuses and the call budget may starve polls: past the maximum age, a
batch whose last poll got no answer ends ``UNKNOWN`` (released, not resent); one that Target
still reports ``incomplete`` ends ``TIMEOUT`` (resubmitted like a stuck one).
"""

from __future__ import annotations

import time

import pytest

from consumer.core.model import BatchFile, IdType
from consumer.errors import RetryableError
from consumer.target.api import BatchStatus
from consumer.target.status import FinalStatus, StatusTracker
from tests.utils import FakeClock

BATCH = BatchFile(7, IdType.THIRD_PARTY_ID, b"batch=x", 1, 1, "linger", 0, 0)
MAX_AGE = 100.0


def _outcome(tracker: StatusTracker, clock: FakeClock, polls: list[str]) -> FinalStatus:
    tracker.track(BATCH, "http://t/s?batchId=7")
    deadline = time.monotonic() + 10
    while not polls:
        assert time.monotonic() < deadline, "no poll"
        time.sleep(0.01)
    clock.advance(MAX_AGE + 1)
    while (outcome := tracker.next_outcome()) is None:
        assert time.monotonic() < deadline, "no outcome"
        time.sleep(0.01)
    return outcome.outcome


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("never", FinalStatus.UNKNOWN),
        ("incomplete", FinalStatus.TIMEOUT),
    ],
)
def test_past_the_maximum_age_no_answer_is_unknown_and_incomplete_is_a_timeout(
    answer: str, expected: FinalStatus
) -> None:
    clock = FakeClock()
    polls: list[str] = []

    def get_status(url: str) -> BatchStatus:
        polls.append(url)
        if answer == "never":
            raise RetryableError("status poll failed: 502")
        return BatchStatus("b-7", "incomplete", 1)

    tracker = StatusTracker(
        get_status,
        poll_initial=0.0,
        poll_max=0.0,
        max_age=MAX_AGE,
        retain_max_bytes=1000,
        clock=clock,
    )
    try:
        assert _outcome(tracker, clock, polls) is expected
    finally:
        tracker.close()
