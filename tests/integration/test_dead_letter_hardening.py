"""Dead letters never crash the service nor block it silently (issue 17, items 1, 2, 11).

Against the real broker: a ~1 MB event (what a default producer can write) is
``profile_too_large`` and its dead letter cannot fit the DLQ producer's message size; an
event dated centuries ahead is ``invalid_occurred_at``; a DLQ topic that does not exist
refuses every write.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry

from consumer.clock import SystemClock
from consumer.core.model import DeadLetter, TopicPartition
from consumer.health import Health
from consumer.kafka.dlq import DeadLetterQueue
from consumer.metrics import Metrics
from tests.integration.conftest import Stack
from tests.integration.events import event
from tests.integration.service import wait_for

T0 = 1_700_000_000_000


def _headers(msg: Any) -> dict[str, str]:
    return {k.removeprefix("profile-sync."): v.decode() for k, v in msg.headers() or []}


def test_a_one_megabyte_event_is_dead_lettered_truncated_and_committed(
    stack: Callable[..., Stack],
) -> None:
    s = stack(partitions=1, topics=1)
    huge = event("crm-huge", {"note": "x" * 999_780}, T0)
    after = event("crm-after", {"loyaltyTier": "gold"}, T0 + 1)
    positions = s.produce([huge, after])

    s.run_to_idle()  # exit code 0 asserted: no crash loop

    [letter] = s.dead_letters(1)
    h = _headers(letter)
    assert h["reason"] == "profile_too_large"
    assert h["truncated"] == "true"
    assert h["source.topic"] == s.topics[0]
    assert int(h["source.offset"]) == positions[0][1]
    original = letter.value()
    assert original is not None and 0 < len(original) < 1_000_000
    # The headers identify the original exactly: its size and hash match the source record.
    source = next(m for m in s._consume(s.topics[0], 2) if m.offset() == positions[0][1])
    assert int(h["original.size"]) == len(source.value())
    assert h["original.sha256"] == hashlib.sha256(source.value()).hexdigest()
    assert source.value().startswith(original)
    assert s.all_committed()
    s.wait_for_state({("thirdPartyId", "crm-after"): {"loyaltyTier": "gold"}})


def test_an_event_from_the_future_is_dead_lettered_and_does_not_freeze_the_attribute(
    stack: Callable[..., Stack],
) -> None:
    s = stack(partitions=1, topics=1)
    now_ms = int(time.time() * 1000)
    year_3000 = 32_503_680_000_000
    s.produce(
        [
            event("crm-1", {"loyaltyTier": "forged"}, year_3000),
            event("crm-1", {"loyaltyTier": "gold"}, now_ms),
        ]
    )
    s.run_to_idle(PROFILE_SYNC_MAX_FUTURE_SKEW_SECONDS="3600")

    [letter] = s.dead_letters(1)
    assert _headers(letter)["reason"] == "invalid_occurred_at"
    s.wait_for_state({("thirdPartyId", "crm-1"): {"loyaltyTier": "gold"}})
    assert s.all_committed()


def test_a_refused_dead_letter_backs_off_turns_readiness_false_and_flush_keeps_its_timeout(
    kafka_bootstrap: str,
) -> None:
    settled: list[int] = []
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    clock = SystemClock()
    health = Health(clock, 60, metrics)
    health.beat()
    dlq = DeadLetterQueue(
        {
            "bootstrap.servers": kafka_bootstrap,
            # The broker does not auto-create topics: every write fails, quickly.
            "message.timeout.ms": "500",
        },
        f"missing-{uuid.uuid4().hex[:8]}",
        settled.append,
        metrics,
        clock,
        on_blocked=lambda reason: health.set_condition("dead_letters", reason),
        blocked_after=3.0,
    )
    letter = DeadLetter(b"k", b"v", "undecodable", "decode", "X", "bad", TopicPartition("t", 0), 7)
    dlq.send(letter, 1)

    def failures() -> float:
        return registry.get_sample_value("profile_sync_dead_letter_failures_total") or 0.0

    started = time.monotonic()
    wait_for(lambda: (dlq.poll(), dlq.blocked)[1], 30, "the DLQ to report itself blocked")
    assert time.monotonic() - started >= 3.0
    assert not health.ready()[0]
    assert "dead_letters" in health.ready()[1]
    assert registry.get_sample_value("profile_sync_dead_letter_blocked") == 1.0
    # Backoff, not once a second: over the blocked window only a few attempts were made.
    assert 1 <= failures() <= 4
    assert settled == [] and dlq.pending == 1

    began = time.monotonic()
    left = dlq.flush(1.0)
    assert left == 1
    assert time.monotonic() - began < 1.5
