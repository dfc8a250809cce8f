"""Worker threads survive the unexpected, or make the process not live (issue 17, item 6).

In-process: the bulk sender and the status tracker run their real threads; Target's side
is a callable (or httpx's MockTransport, which raises what httpx really raises)."""

from __future__ import annotations

import gzip
import json
import logging
import time
from collections.abc import Callable

import httpx
import pytest
from prometheus_client import CollectorRegistry

from consumer.backoff import Backoff
from consumer.config import load
from consumer.core.model import BatchFile, IdType
from consumer.errors import RetryableError
from consumer.health import Health
from consumer.metrics import Metrics
from consumer.target.api import BatchStatus, BulkAccepted
from consumer.target.bulk import BulkOutcome, BulkSender
from consumer.target.client import TargetClient
from consumer.target.status import FinalStatus, StatusTracker
from consumer.workers import Crashes
from tests.utils import FakeClock

BATCH = BatchFile(7, IdType.THIRD_PARTY_ID, b"batch=x", 1, 1, "linger", 0, 0)
OK = (
    "<response><success>true</success><batchStatus>http://t/s?batchId=7</batchStatus>"
    "<message>Batch submitted for processing</message></response>"
)


def _wait(predicate: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_a_broken_gzip_body_is_a_retry_not_a_dead_thread() -> None:
    calls = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:  # a proxy answers with a body that is not gzip at all
            return httpx.Response(
                200, headers={"Content-Encoding": "gzip"}, content=b"\x1f\x8bnot gzip"
            )
        return httpx.Response(
            200, content=gzip.compress(OK.encode()), headers={"Content-Encoding": "gzip"}
        )

    settings = load(
        {
            "PROFILE_SYNC_TARGET_URL": "http://target.test",
            "PROFILE_SYNC_TARGET_CLIENT": "acme",
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
        }
    )
    client = TargetClient(settings, None, transport=httpx.MockTransport(answer))
    with pytest.raises(RetryableError, match="DecodingError"):
        client.post_batch(BATCH)
    sender = BulkSender(client.post_batch, Backoff(0.001, 0.01), None)
    try:
        sender.submit(BATCH)
        result = sender.next_result(timeout=10)
        assert result is not None and result.outcome is BulkOutcome.ACCEPTED
    finally:
        sender.close()
        client.close()


def test_an_unexpected_exception_in_an_upload_is_logged_counted_and_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    attempts = []

    def post(batch: BatchFile) -> BulkAccepted:
        attempts.append(batch)
        if len(attempts) == 1:
            "é".encode("ascii")  # what a non-ASCII header value raised inside httpx
        return BulkAccepted("http://t/s?batchId=7", "ok")

    sender = BulkSender(post, Backoff(0.001, 0.01), metrics, crashes=Crashes(metrics))
    try:
        with caplog.at_level(logging.ERROR, logger="profile_sync.workers"):
            sender.submit(BATCH)
            result = sender.next_result(timeout=10)
        assert result is not None and result.outcome is BulkOutcome.ACCEPTED
        assert len(attempts) == 2
        assert (
            registry.get_sample_value("profile_sync_worker_errors_total", {"worker": "bulk"}) == 1
        )
        [record] = [r for r in caplog.records if r.name == "profile_sync.workers"]
        assert record.exc_info is not None
        assert "UnicodeEncodeError" in json.dumps(record.__dict__["fields"])
    finally:
        sender.close()


def test_the_status_tracker_survives_an_unexpected_exception() -> None:
    clock = FakeClock()
    polls = []

    def get_status(url: str) -> BatchStatus:
        polls.append(url)
        if len(polls) == 1:
            raise ValueError("a parser bug")
        return BatchStatus("b-7", "complete", 1)

    crashes = Crashes()
    tracker = StatusTracker(
        get_status,
        poll_initial=0.0,
        poll_max=0.0,
        max_age=3600,
        retain_max_bytes=1000,
        clock=clock,
        crashes=crashes,
    )
    try:
        tracker.track(BATCH, "http://t/s?batchId=7")
        _wait(lambda: len(polls) >= 2, "a second poll")
        _wait(lambda: tracker.outcomes.qsize() > 0, "the outcome")
        outcome = tracker.next_outcome()
        assert outcome is not None and outcome.outcome is FinalStatus.COMPLETE
        assert crashes.dead is None
    finally:
        tracker.close()


def test_a_worker_thread_that_dies_makes_the_process_not_live() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    health = Health(FakeClock(), 60, metrics)
    health.beat()
    crashes = Crashes(metrics)
    crashes.on_death(health.set_broken)

    def body() -> None:
        raise RuntimeError("the loop of a worker broke")

    thread = crashes.thread("status", body)
    thread.start()
    thread.join(5)
    ok, detail = health.live()
    assert not ok and "status" in detail and "RuntimeError" in detail
    assert registry.get_sample_value("profile_sync_worker_errors_total", {"worker": "status"}) == 1
