"""The collection policy: what outlives a turn is not traced again, and no cycle leaks."""

from __future__ import annotations

import gc
import sys
import weakref
from collections.abc import Iterator

import pytest

from consumer.interpreter import FULL_COLLECT_SECONDS, Collector


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
