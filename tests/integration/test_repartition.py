"""The repartition mode end to end (docs/repartition.md): real broker, the emulator over
HTTP, the service as subprocesses. Target must end with the newest value of every
attribute whatever topics, keys and replicas the events went through."""

from __future__ import annotations

import contextlib
import random
import signal
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from tests.fixtures.kafka import encode_profile_change
from tests.integration.conftest import Stack
from tests.integration.events import event, random_events
from tests.integration.service import wait_for

REPARTITION = {"PROFILE_SYNC_REPARTITION": "auto", "PROFILE_SYNC_REPARTITION_PARTITIONS": "6"}


@pytest.fixture
def internal_cleanup(kafka_admin: AdminClient) -> Iterator[list[Stack]]:
    stacks: list[Stack] = []
    yield stacks
    names = [f"{s.group}.{kind}" for s in stacks for kind in ("repartition", "changelog")]
    if names:
        for fut in kafka_admin.delete_topics(names, operation_timeout=10).values():
            with contextlib.suppress(KafkaException, TimeoutError):
                fut.result(timeout=15)


def _interleave(events: list[dict[str, Any]], topics: list[str], seed: int) -> dict[str, list]:
    """Each event to a random topic: both topics carry the same attributes of the same
    profiles, their occurred_at interleaved."""
    rng = random.Random(seed)
    out: dict[str, list[dict[str, Any]]] = {t: [] for t in topics}
    for e in events:
        out[rng.choice(topics)].append(e)
    return out


def _produce(s: Stack, events: list[dict[str, Any]], seed: int) -> None:
    # The second topic's share is produced first: its older events reach the service
    # after newer ones of the same profiles from the first topic, on other replicas.
    for topic, part in reversed(list(_interleave(events, s.topics, seed).items())):
        s.produce(part, topic=topic)


def _repartition_committed(s: Stack) -> bool:
    topic = f"{s.group}.repartition"
    ends = s._end_offsets(topic)
    committed = s._committed(s.group, topic)
    return all(committed.get(p, -1) >= end for p, end in ends.items() if end > 0)


def test_three_replicas_two_topics_joins_leaves_and_a_kill_end_with_the_newest_values(
    stack: Callable[..., Stack], internal_cleanup: list[Stack]
) -> None:
    s = stack(partitions=3, topics=2)
    internal_cleanup.append(s)
    events = random_events(6000, 500, seed=12)
    _produce(s, events[:2000], seed=1)
    first = s.start(**REPARTITION)
    second = s.start(**REPARTITION)
    wait_for(
        lambda: sum(m.metric("profile_sync_batches_total") for m in (first, second)) >= 1,
        60,
        "batches accepted",
    )
    _produce(s, events[2000:4000], seed=2)
    third = s.start(**REPARTITION)
    wait_for(lambda: third.metric("profile_sync_partitions_assigned") >= 1, 60, "the third member")
    second.kill()  # SIGKILL: its partitions are lost after the session times out
    _produce(s, events[4000:], seed=3)
    third.signal(signal.SIGTERM)  # a member leaves
    assert third.wait(60) == 0
    wait_for(lambda: s.all_committed() and _repartition_committed(s), 90, "every offset committed")
    s.wait_for_state(s.expected(events), timeout=60)
    # The survivor took the dead member's repartition partitions over from the changelog.
    assert first.metric("profile_sync_changelog_restored_records_total") >= 1
    first.signal(signal.SIGTERM)
    assert first.wait(60) == 0


def test_an_older_event_after_a_new_owner_took_over_does_not_overwrite(
    stack: Callable[..., Stack], internal_cleanup: list[Stack]
) -> None:
    s = stack(partitions=2, topics=2)
    internal_cleanup.append(s)
    newer = event("cust-1", {"loyaltyTier": "gold", "city": "Lyon"}, 2_000_000)
    s.produce([newer], topic=s.topics[0])
    s.run_to_idle(**REPARTITION)
    s.wait_for_state({("thirdPartyId", "cust-1"): {"loyaltyTier": "gold", "city": "Lyon"}})

    # A new process: nothing in memory but what the changelog gives back.
    older = event("cust-1", {"loyaltyTier": "bronze", "note": "late"}, 1_000_000)
    s.produce([older], topic=s.topics[1])
    owner = s.start("--exit-when-idle", "2", **REPARTITION)
    wait_for(
        lambda: owner.metric("profile_sync_changelog_restored_records_total") >= 1,
        60,
        "the new owner to restore the changelog",
    )
    assert owner.wait(90) == 0, owner.log_tail()
    wait_for(lambda: s.all_committed() and _repartition_committed(s), 30, "offsets committed")
    # The late event's new attribute lands, its older tier does not.
    s.wait_for_state(
        {("thirdPartyId", "cust-1"): {"loyaltyTier": "gold", "city": "Lyon", "note": "late"}}
    )


def test_a_source_keyed_by_store_id_ends_with_the_newest_values(
    stack: Callable[..., Stack],
    internal_cleanup: list[Stack],
    produce_raw: Callable[..., Any],
) -> None:
    s = stack(partitions=3, topics=1)
    internal_cleanup.append(s)
    events = random_events(3000, 300, seed=13)
    rng = random.Random(5)
    # POS-like records keyed by store: one profile's events spread over every partition.
    by_partition: dict[int, list[tuple[bytes, bytes]]] = {0: [], 1: [], 2: []}
    for e in events:
        store = rng.randrange(40)
        by_partition[store % 3].append((f"store-{store:03d}".encode(), encode_profile_change(e)))
    overrides = {**REPARTITION, "PROFILE_SYNC_REPARTITION": "always"}
    first = s.start(**overrides)
    second = s.start(**overrides)
    for member in (first, second):
        wait_for(lambda m=member: m.metric("profile_sync_partitions_assigned") >= 1, 60, "members")
    produce_raw(s.topics[0], by_partition[0], partition=0)
    produce_raw(s.topics[0], by_partition[1], partition=1)
    wait_for(lambda: s.all_committed() and _repartition_committed(s), 90, "two partitions done")
    # The third partition lags behind: its events, older than values already sent for
    # the same profiles, arrive last.
    produce_raw(s.topics[0], by_partition[2], partition=2)
    wait_for(lambda: s.all_committed() and _repartition_committed(s), 90, "every offset committed")
    s.wait_for_state(s.expected(events), timeout=60)
    for member in (first, second):
        member.signal(signal.SIGTERM)
    for member in (first, second):
        assert member.wait(60) == 0


def test_updates_forwarded_before_a_shutdown_are_delivered_by_the_next_run(
    stack: Callable[..., Stack], internal_cleanup: list[Stack]
) -> None:
    s = stack(partitions=2, topics=2)
    internal_cleanup.append(s)
    events = random_events(1500, 300, seed=9)
    _produce(s, events, seed=4)
    # A linger far beyond the test: only the shutdown cuts batches.
    first = s.start(**REPARTITION, PROFILE_SYNC_BATCH_LINGER_SECONDS="600")
    wait_for(
        lambda: first.metric("profile_sync_events_forwarded_total") >= 1,
        60,
        "updates forwarded to the repartition topic",
    )
    first.signal(signal.SIGTERM)
    assert first.wait(30) == 0
    # Whatever the first run forwarded but did not read back waits in the repartition
    # topic, uncommitted: the next run delivers it.
    s.run_to_idle(**REPARTITION)
    wait_for(lambda: s.all_committed() and _repartition_committed(s), 60, "every offset committed")
    s.wait_for_state(s.expected(events))
