"""The Kafka edges of the repartition mode against the real broker: internal topics are
created and checked, a profile's repartition and changelog records share a partition
number, and a new owner restores what the previous one wrote."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from consumer.core.batcher import STALE, Batcher, BatchLimits
from consumer.core.model import IdType, TopicPartition
from consumer.core.owner_memory import LoggedCarry
from consumer.errors import ConfigError
from consumer.kafka import internal_topics
from consumer.kafka.changelog import ChangelogRestorer
from consumer.kafka.internal_topics import InternalTopics
from consumer.kafka.repartition import RepartitionProducer
from tests.integration.service import wait_for
from tests.utils import make_update

LIMITS = BatchLimits(max_rows=1000, max_bytes=1_000_000, linger_seconds=1.0)


@pytest.fixture
def internal(kafka_admin: AdminClient) -> Iterator[InternalTopics]:
    group = f"owner-test-{uuid.uuid4().hex[:8]}"
    rep, log = internal_topics.names(group, "", "")
    topics = InternalTopics(rep, log, partitions=4, retention_ms=3_600_000)
    yield topics
    for fut in kafka_admin.delete_topics([rep, log], operation_timeout=10).values():
        with contextlib.suppress(KafkaException, TimeoutError):
            fut.result(timeout=15)


def test_internal_topics_are_created_then_checked(
    kafka_bootstrap: str, internal: InternalTopics
) -> None:
    conf = {"bootstrap.servers": kafka_bootstrap}
    created = internal_topics.ensure(conf, internal)
    assert sorted(created) == sorted(
        [
            f"{internal.repartition}: created, 4 partitions",
            f"{internal.changelog}: created, 4 partitions",
        ]
    )
    assert internal_topics.ensure(conf, internal) == [
        f"{internal.repartition}: exists, 4 partitions",
        f"{internal.changelog}: exists, 4 partitions",
    ]
    other = InternalTopics(internal.repartition, internal.changelog, 6, internal.retention_ms)
    with pytest.raises(ConfigError) as caught:
        internal_topics.ensure(conf, other)
    assert "has 4 partitions" in str(caught.value)


def test_a_missing_topic_is_an_error_when_the_service_may_not_create_it(
    kafka_bootstrap: str, internal: InternalTopics
) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        internal_topics.ensure({"bootstrap.servers": kafka_bootstrap}, internal, create=False)


def test_a_new_owner_restores_the_memory_of_its_partitions_only(
    kafka_bootstrap: str, internal: InternalTopics
) -> None:
    conf = {"bootstrap.servers": kafka_bootstrap}
    internal_topics.ensure(conf, internal)
    producer = RepartitionProducer(conf, internal.repartition, internal.changelog)
    first = Batcher(LIMITS, LoggedCarry(10_000, producer.log))
    crm = TopicPartition("crm", 0)
    profiles = [f"cust-{i}" for i in range(200)]
    for i, pid in enumerate(profiles):
        first.add(make_update(pid, {"tier": "gold"}, occurred_at=10_000 + i, tp=crm), 0.0)
        producer.forward(f"thirdPartyId:{pid}".encode(), b"x", unit=-(i + 1))
    first.cut_all("linger")
    first.take_ready()  # the cut finished: its changelog records written
    mark = producer.changelog_mark()
    assert mark == len(profiles)
    wait_for(lambda: producer.poll() or producer.changelog_done(mark), 30, "changelog acks")
    producer.flush(10)

    # Both topics put each profile in the partition of the same number.
    from confluent_kafka import Consumer

    where: dict[str, dict[bytes, int]] = {}
    for topic in (internal.repartition, internal.changelog):
        c = Consumer({**conf, "group.id": f"check-{uuid.uuid4().hex[:6]}",
                      "auto.offset.reset": "earliest"})  # fmt: skip
        c.subscribe([topic])
        seen: dict[bytes, int] = {}
        wait_for(lambda c=c, seen=seen: _drain(c, seen) >= len(profiles), 30, f"{topic} records")
        c.close()
        where[topic] = seen
    assert where[internal.repartition] == where[internal.changelog]
    assert len(set(where[internal.changelog].values())) > 1

    owned = {0, 2}
    second_carry = LoggedCarry(10_000, lambda k, v: None)
    restorer = ChangelogRestorer({**conf, "group.id": "unused"}, internal.changelog, 60)
    read = restorer.restore(owned, second_carry.restore, beat=lambda: None)
    mine = [p for p in profiles if where[internal.changelog][f"thirdPartyId:{p}".encode()] in owned]
    assert read == len(mine) == second_carry.restored_profiles
    second = Batcher(LIMITS, second_carry)
    pos = TopicPartition("pos", 3)
    for pid in mine:
        assert (
            second.add(make_update(pid, {"tier": "bronze"}, occurred_at=5_000, tp=pos), 0.0)
            is STALE
        )
    others = [p for p in profiles if p not in mine]
    assert isinstance(
        second.add(make_update(others[0], {"tier": "b"}, occurred_at=5_000, tp=pos), 0.0), int
    )
    assert second_carry.guard(IdType.THIRD_PARTY_ID, others[0]) is None


def _drain(consumer, seen: dict[bytes, int]) -> int:  # type: ignore[no-untyped-def]
    for m in consumer.consume(500, 0.5):
        if m.error() is None and m.key() is not None:
            seen[m.key()] = m.partition()
    return len(seen)
