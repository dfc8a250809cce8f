"""The collection policy: what outlives a turn is not traced again, and no cycle leaks."""

from __future__ import annotations

import gc
import sys
import weakref
from collections.abc import Iterator

import httpx
import pytest

from consumer.config import load
from consumer.interpreter import FULL_COLLECT_SECONDS, Collector
from consumer.target.client import TargetClient


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def collector() -> Iterator[Collector]:
    thresholds, switch = gc.get_threshold(), sys.getswitchinterval()
    c = Collector(now=0.0)
    c.start()
    yield c
    gc.unfreeze()
    gc.set_threshold(*thresholds)
    sys.setswitchinterval(switch)


def test_what_a_turn_leaves_is_frozen(collector: Collector) -> None:
    kept = [Node() for _ in range(1000)]
    before = gc.get_freeze_count()
    assert collector.after_turn(1.0) is False
    assert gc.get_freeze_count() >= before + len(kept)
    assert gc.get_count()[0] < 100  # nothing left for the young collections to trace


def test_a_cycle_left_by_a_turn_is_collected_when_the_full_collection_is_due(
    collector: Collector,
) -> None:
    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    del a, b
    collector.after_turn(1.0)  # frozen with the rest: not collected yet
    gc.collect()
    assert gone() is not None
    assert collector.after_turn(FULL_COLLECT_SECONDS + 1.0) is True
    assert gone() is None


def test_frozen_data_is_still_freed_by_reference_counting(collector: Collector) -> None:
    node = Node()
    gone = weakref.ref(node)
    collector.after_turn(1.0)
    del node
    assert gone() is None


def test_a_target_call_leaves_no_reference_cycle() -> None:
    """What the policy relies on: the service's steady traffic makes no cyclic garbage
    (httpx's response and its stream referred to each other: ~40 objects a request)."""
    settings = load(
        {
            "PROFILE_SYNC_TARGET_URL": "http://target.test",
            "PROFILE_SYNC_TARGET_CLIENT": "acme",
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
        }
    )
    client = TargetClient(
        settings, None, transport=httpx.MockTransport(lambda r: httpx.Response(200, text="{}"))
    )
    try:
        client.raw_status("warm-up")
        gc.collect()
        gc.disable()
        try:
            for n in range(20):
                assert client.raw_status(f"batch-{n}")[0] == 200
            assert gc.collect() == 0
        finally:
            gc.enable()
    finally:
        client.close()
