"""The single-update budget, the urgent path's decisions, Target's responses, backoff."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from consumer.backoff import Backoff
from consumer.core.model import IdType, Priority, ProfileUpdate, TopicPartition
from consumer.core.uploads import CutBatches
from consumer.errors import PermanentError, RetryableError
from consumer.metrics import Metrics
from consumer.target.api import (
    check_status,
    parse_batch_status,
    parse_bulk_response,
    parse_retry_after,
    single_query,
)
from consumer.target.quota import BUCKET_SECONDS, WINDOW_SECONDS, RollingBudget
from consumer.target.urgent import SingleUpdater
from tests.utils import FakeClock

DAY = WINDOW_SECONDS


def test_the_budget_is_a_rolling_24_hours() -> None:
    budget = RollingBudget(3)
    t0 = 1_700_000_000.0
    assert [budget.try_spend(t0 + i) for i in range(4)] == [True, True, True, False]
    assert budget.remaining(t0 + DAY - BUCKET_SECONDS) == 0
    # A day (and the minute bucket) later, the first spend has left the window.
    assert budget.remaining(t0 + DAY + BUCKET_SECONDS) == 3
    assert budget.try_spend(t0 + DAY + BUCKET_SECONDS)


def test_the_budget_survives_a_restart() -> None:
    t0 = 1_700_000_000.0
    budget = RollingBudget(10)
    for i in range(7):
        assert budget.try_spend(t0 + i * 600)
    restored = RollingBudget.from_state(10, budget.to_state(), now=t0 + 3600)
    assert restored.remaining(t0 + 3600) == 3
    assert [restored.try_spend(t0 + 3600) for _ in range(4)] == [True, True, True, False]
    # Spend from more than a day ago does not count any more.
    assert (
        RollingBudget.from_state(10, budget.to_state(), now=t0 + 2 * DAY).remaining(t0 + 2 * DAY)
        == 10
    )


def test_an_unreadable_state_file_counts_as_nothing_spent() -> None:
    assert RollingBudget.from_state(5, "not json", now=0.0).remaining(0.0) == 5


def _update(pid: str = "crm-1", **attrs: str) -> ProfileUpdate:
    return ProfileUpdate(
        IdType.THIRD_PARTY_ID,
        pid,
        attrs or {"tier": "gold"},
        Priority.URGENT,
        1_000,
        TopicPartition("t", 0),
        0,
    )


class _Calls:
    def __init__(self, failures: list[Exception] | None = None) -> None:
        self.calls: list[tuple[IdType, str, dict[str, str]]] = []
        self.failures = list(failures or [])
        self.done = threading.Event()

    def __call__(self, id_type: IdType, pid: str, attrs: dict[str, str]) -> None:
        self.calls.append((id_type, pid, attrs))
        if self.failures:
            raise self.failures.pop(0)
        self.done.set()


def _updater(call: _Calls, limit: int = 100, attempts: int = 3) -> SingleUpdater:
    return SingleUpdater(
        call,
        RollingBudget(limit),
        concurrency=1,
        queue_max=10,
        queue_max_bytes=1_000_000,
        max_attempts=attempts,
        backoff=Backoff(0.001, 0.002),
        metrics=None,
        superseded=CutBatches(),
    )


def test_offer_skips_what_the_single_api_cannot_take() -> None:
    updater = _updater(_Calls(), limit=1)
    try:
        assert updater.offer(_update("crm+1"), 1, 0.0) == "skipped_invalid_id"
        assert updater.offer(_update("a/b"), 1, 0.0) == "skipped_invalid_id"
        assert updater.offer(_update(note="x" * 70_000), 1, 0.0) == "skipped_too_large"
        assert updater.offer(_update(), 1, 0.0) == "queued"
        assert updater.offer(_update(), 1, 0.0) == "skipped_quota"
    finally:
        updater.close()


def test_retryable_failures_are_retried_within_the_attempt_budget() -> None:
    call = _Calls([RetryableError("503", 503), RetryableError("503", 503)])
    updater = _updater(call, attempts=3)
    try:
        assert updater.offer(_update(), 1, 0.0) == "queued"
        assert call.done.wait(5)
        assert len(call.calls) == 3
    finally:
        updater.close()


def test_permanent_failures_are_not_retried() -> None:
    call = _Calls([PermanentError("400", 400)])
    updater = _updater(call)
    try:
        updater.offer(_update("crm-1"), 1, 0.0)
        # One worker: the second update is called only once the first is done with.
        updater.offer(_update("crm-2"), 1, 0.0)
        assert call.done.wait(5)
        assert [pid for _, pid, _ in call.calls] == ["crm-1", "crm-2"]
    finally:
        updater.close()


def test_single_query_is_percent_encoded() -> None:
    query = single_query(IdType.PC_ID, "abc.12_0", {"city": "São Paulo & co", "n": "1+1"})
    assert query == "mboxPC=abc.12_0&profile.city=S%C3%A3o%20Paulo%20%26%20co&profile.n=1%2B1"


def test_bulk_responses() -> None:
    ok = parse_bulk_response(
        200,
        "<response><success>true</success><batchStatus>http://h/s?batchId=1</batchStatus>"
        "<message>Batch submitted for processing</message></response>",
    )
    assert ok.batch_status_url == "http://h/s?batchId=1"
    with pytest.raises(PermanentError, match="bad header"):
        parse_bulk_response(
            200, "<response><success>false</success><message>bad header</message></response>"
        )
    with pytest.raises(RetryableError):
        parse_bulk_response(503, "down")
    with pytest.raises(RetryableError):
        check_status(429, "slow down", retry_after=3.0)
    with pytest.raises(PermanentError):
        check_status(404, "no such client", retry_after=None)


def test_batch_status_with_details() -> None:
    status = parse_batch_status(
        200,
        "<response><batchId>b-1</batchId><status>complete</status><batchSize>3</batchSize>"
        "<consumedCount>3</consumedCount><successfulUpdates>2</successfulUpdates>"
        "<profilesNotFound>1</profilesNotFound><failedUpdates>0</failedUpdates></response>",
    )
    assert (status.status, status.successful, status.not_found, status.failed) == (
        "complete",
        2,
        1,
        0,
    )


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past


def test_backoff_is_capped_jittered_and_honours_retry_after() -> None:
    backoff = Backoff(initial=0.5, maximum=8.0)
    rng = random.Random(1)
    delays = [backoff.delay(attempt, None, rng) for attempt in range(1, 40)]
    assert all(0 <= d <= 8.0 for d in delays)
    assert max(delays[:1]) <= 0.5  # first retry within the initial delay
    assert len(set(delays)) > 30  # jittered, not in step
    assert all(backoff.delay(a, 12.0, rng) >= 12.0 for a in range(1, 10))


class _Gated(_Calls):
    """A single call that waits for ``gate`` (the worker stays busy meanwhile)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Semaphore(0)

    def __call__(self, id_type: IdType, pid: str, attrs: dict[str, str]) -> None:
        self.entered.release()
        assert self.gate.wait(5)
        super().__call__(id_type, pid, attrs)


def _wide(pid: str) -> ProfileUpdate:
    # ~40 KB of parameters: under the 60 KB cap, two of them pass a 100 KB bound, three not.
    return _update(pid, **{f"a{i}": f"{pid}-{i}".ljust(1_000, "v") for i in range(40)})


def _bounded(
    call: _Calls, metrics: Metrics | None = None, clock: FakeClock | None = None
) -> SingleUpdater:
    return SingleUpdater(
        call,
        RollingBudget(100),
        concurrency=1,
        queue_max=10,
        queue_max_bytes=100_000,
        max_attempts=1,
        backoff=Backoff(0.001, 0.002),
        metrics=metrics,
        superseded=CutBatches(),
        clock=clock,
    )


class _OpensOnClose(FakeClock):
    """``close`` reads the clock once it has told the workers to stop: open the gate then."""

    def __init__(self, gate: threading.Event) -> None:
        super().__init__()
        self.gate = gate

    def monotonic(self) -> float:
        self.gate.set()
        return super().monotonic()


def _wait(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def test_wide_urgent_events_past_the_byte_bound_keep_the_bulk_path() -> None:
    call = _Gated()
    updater = _bounded(call)
    try:
        assert updater.offer(_wide("crm-0"), 1, 0.0) == "queued"
        assert call.entered.acquire(timeout=5)  # the worker took it and is busy
        # Far under the count bound of 10, but a third 40 KB event is past 100 KB.
        outcomes = [updater.offer(_wide(f"crm-{i}"), 1, 0.0) for i in (1, 2, 3)]
        assert outcomes == ["queued", "queued", "skipped_queue_full"]
        # A small one still fits beside the two wide ones.
        assert updater.offer(_update("crm-4"), 1, 0.0) == "queued"
        # The bytes come back as the worker takes the events: a wide one fits again.
        call.gate.set()
        _wait(lambda: len(call.calls) == 4, "the four queued events sent")
        assert updater.queued_bytes == 0
        assert updater.offer(_wide("crm-5"), 1, 0.0) == "queued"
        _wait(lambda: len(call.calls) == 5, "the later wide event sent")
        assert [pid for _, pid, _ in call.calls] == ["crm-0", "crm-1", "crm-2", "crm-4", "crm-5"]
    finally:
        call.gate.set()
        updater.close()


def test_shutdown_drains_the_queue_and_gives_its_bytes_back() -> None:
    registry = CollectorRegistry()
    call = _Gated()
    updater = _bounded(call, Metrics(registry), _OpensOnClose(call.gate))
    assert updater.offer(_wide("crm-0"), 1, 0.0) == "queued"
    assert call.entered.acquire(timeout=5)
    assert updater.offer(_wide("crm-1"), 1, 0.0) == "queued"
    assert updater.offer(_update("crm-2"), 1, 0.0) == "queued"
    # The call in flight finishes after the stop: nothing still waiting is sent.
    updater.close()

    def count(outcome: str) -> float:
        value = registry.get_sample_value("profile_sync_single_updates_total", {"outcome": outcome})
        return value or 0.0

    assert [pid for _, pid, _ in call.calls] == ["crm-0"]
    assert (count("sent"), count("skipped_shutdown")) == (1, 2)
    assert updater.queued_bytes == 0
