"""The Kafka source against the real broker: what the loop gets from one ``consume`` call.

An URGENT event is only as fast as the call that hands it to the loop, so a lone record
must come back as soon as it is fetched, not when the call's timeout runs out (librdkafka's
batch consume waits for a full batch or the timeout). Nothing may be lost or reordered by
taking the first record apart from the rest.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from consumer.config.kafka import consumer_properties
from consumer.core.seams import Record
from consumer.kafka.source import KafkaSource

pytestmark = pytest.mark.integration

# Far longer than any fetch takes: a call that waits it out has not returned on arrival.
LONG_TIMEOUT = 60.0


def _source(bootstrap: str, topic: str) -> KafkaSource:
    conf = consumer_properties(
        {"bootstrap.servers": bootstrap, "group.id": f"source-{uuid.uuid4().hex[:8]}"}
    )
    return KafkaSource(conf, (topic,), None)


def _assigned(source: KafkaSource) -> None:
    deadline = time.monotonic() + 30
    while not source.assigned:
        assert time.monotonic() < deadline, "no partition assigned within 30 s"
        source.consume(100, 0.2)


def test_a_lone_record_is_handed_over_on_arrival_not_at_the_timeout(
    kafka_bootstrap: str, make_topic: Callable[..., str], produce_raw: Callable[..., Any]
) -> None:
    topic = make_topic(1)
    source = _source(kafka_bootstrap, topic)
    try:
        _assigned(source)
        produce_raw(topic, [(b"crm-1", b"urgent")])
        started = time.monotonic()
        records = source.consume(5000, LONG_TIMEOUT)
        waited = time.monotonic() - started
    finally:
        source.close()
    assert [(r.key, r.value) for r in records] == [(b"crm-1", b"urgent")]
    assert waited < LONG_TIMEOUT / 2, f"consume held a ready record for {waited:.1f} s"


def test_a_backlog_comes_back_whole_and_in_order_in_bounded_batches(
    kafka_bootstrap: str, make_topic: Callable[..., str], produce_raw: Callable[..., Any]
) -> None:
    topic = make_topic(1)
    sent = [(f"p-{i}".encode(), f"v-{i}".encode()) for i in range(3000)]
    produce_raw(topic, sent)
    source = _source(kafka_bootstrap, topic)
    got: list[Record] = []
    try:
        deadline = time.monotonic() + 60
        while len(got) < len(sent) and time.monotonic() < deadline:
            batch = source.consume(700, 1.0)
            assert len(batch) <= 700
            got.extend(batch)
    finally:
        source.close()
    assert [(r.key, r.value) for r in got] == sent
    assert [r.offset for r in got] == list(range(len(sent)))
