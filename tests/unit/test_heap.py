"""Freed heap goes back to the system once a burst is over, never in the middle of one."""

from __future__ import annotations

import itertools
import sys

import pytest

from consumer.heap import QUIET_SECONDS, IdleTrim


class Trims:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, pad: int) -> int:
        self.calls += 1
        return 1


def test_a_busy_stream_never_waits_for_a_trim() -> None:
    trims = Trims()
    heap = IdleTrim(5.0, trims)
    for t in range(100):
        assert not heap.after_turn(5000, float(t))
    assert trims.calls == 0


def test_the_first_idle_turn_after_a_burst_trims_once() -> None:
    trims = Trims()
    heap = IdleTrim(5.0, trims)
    heap.after_turn(50_000, 0.0)
    assert heap.after_turn(0, 0.1)
    for t in range(1, 100):  # idle from then on: nothing new to give back
        assert not heap.after_turn(0, float(t))
    assert trims.calls == 1


def test_a_trickle_never_waits_for_a_trim() -> None:
    trims = Trims()
    heap = IdleTrim(5.0, trims)
    now = 0.0
    while now < 60.0:  # 50 urgent events/s, every other turn idle
        heap.after_turn(1, now)
        heap.after_turn(0, now + 0.01)
        now += 0.02
    assert trims.calls == 0


def test_trims_under_a_busy_stream_are_at_least_the_interval_apart() -> None:
    trims = Trims()
    heap = IdleTrim(5.0, trims)
    times = []
    now = 0.0
    while now < 20.0:  # 5,000 records a turn, every other turn idle
        heap.after_turn(5000, now)
        if heap.after_turn(0, now + 0.02):
            times.append(now + 0.02)
        now += 0.04
    assert len(times) >= 3
    assert all(b - a >= 5.0 for a, b in itertools.pairwise(times))


def test_what_a_burst_frees_after_its_trim_is_given_back_once_the_stream_is_quiet() -> None:
    # The loop caught up with the producers mid-burst (an idle turn), trimmed, then
    # consumed the rest of the burst: fewer than MIN_RECORDS records, freed after the trim.
    trims = Trims()
    heap = IdleTrim(5.0, trims)
    heap.after_turn(50_000, 0.0)
    assert heap.after_turn(0, 0.1)
    now = 0.2
    while now < 3.0:  # the rest: 7,000 records, 50 a turn, every other turn idle
        heap.after_turn(50, now)
        assert not heap.after_turn(0, now + 0.01)  # records keep coming: no trim
        now += 0.02
    times = [t / 10 for t in range(30, 300) if heap.after_turn(0, t / 10)]
    assert len(times) == 1  # once, and only when quiet and the interval has passed
    assert times[0] >= max(0.1 + 5.0, now - 0.02 + QUIET_SECONDS)
    assert trims.calls == 2


def test_a_trickle_after_a_burst_is_over_never_waits_for_a_trim() -> None:
    trims = Trims()
    heap = IdleTrim(5.0, trims)
    heap.after_turn(50_000, 0.0)
    assert heap.after_turn(0, 0.1)  # the burst ended before its trim
    for t in range(2, 20):
        heap.after_turn(0, float(t))
    now = 20.0
    while now < 80.0:  # then 50 urgent events/s, every other turn idle
        heap.after_turn(1, now)
        heap.after_turn(0, now + 0.01)
        now += 0.02
    for t in range(80, 200):
        heap.after_turn(0, float(t))
    assert trims.calls == 1


def test_an_interval_of_zero_turns_it_off() -> None:
    trims = Trims()
    heap = IdleTrim(0.0, trims)
    heap.after_turn(50_000, 0.0)
    assert not heap.after_turn(0, 100.0)
    assert trims.calls == 0


def _rss() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_freed_heap_is_given_back_by_default_on_glibc() -> None:
    heap = IdleTrim(5.0)  # the real malloc_trim, as the service uses it
    assert heap.enabled
    # 80 MB of C heap (bytes over 512 B come from malloc), every 64th block kept so that
    # the freed memory sits between live blocks, where only a trim returns it.
    blocks = [bytes(1000) + i.to_bytes(8, "little") for i in range(80_000)]
    kept = blocks[::64]
    del blocks
    before = _rss()
    heap.after_turn(80_000, 0.0)
    assert heap.after_turn(0, 1.0)
    assert before - _rss() > 40_000_000
    assert len(kept) == 1250
