"""The call budget's group size comes from Kafka's consumer-group description (real broker)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

from confluent_kafka import Consumer

from consumer.kafka.members import GroupMembers
from tests.integration.service import wait_for


def _member(bootstrap: str, group: str, topic: str) -> Consumer:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "session.timeout.ms": "6000",
            "partition.assignment.strategy": "cooperative-sticky",
        }
    )
    consumer.subscribe([topic])
    return consumer


def test_members_are_counted_as_they_join_and_leave(
    kafka_bootstrap: str, make_topic: Callable[..., str]
) -> None:
    topic = make_topic(partitions=4)
    group = f"members-{uuid.uuid4().hex[:8]}"
    seen: list[int] = []
    lock = threading.Lock()

    def on_count(n: int) -> None:
        with lock:
            seen.append(n)

    def last() -> int | None:
        with lock:
            return seen[-1] if seen else None

    members = GroupMembers({"bootstrap.servers": kafka_bootstrap}, group, on_count, interval=0.5)
    members.start()
    consumers: list[Consumer] = []
    stop = threading.Event()

    def poll_all() -> None:  # members must keep polling to stay in the group
        while not stop.is_set():
            with lock:
                for c in consumers:
                    c.poll(0.02)

    poller = threading.Thread(target=poll_all, daemon=True)
    try:
        # Before its own join, a replica counts itself on top of the members listed.
        wait_for(lambda: last() == 1, 20, "an empty group counted as one")
        with lock:
            consumers.extend(_member(kafka_bootstrap, group, topic) for _ in range(3))
        poller.start()
        wait_for(lambda: last() == 4, 60, "three members and this replica about to join")
        members.refresh(joined=True)  # this replica's assignment came: it is listed now
        wait_for(lambda: last() == 3, 60, "three members")
        with lock:
            consumers.pop().close()
        members.refresh()
        wait_for(lambda: last() == 2, 60, "two members after one left")
    finally:
        stop.set()
        if poller.is_alive():
            poller.join(timeout=5)
        for c in consumers:
            c.close()
        members.close()
