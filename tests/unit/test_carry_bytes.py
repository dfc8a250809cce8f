"""Carry-forward is bounded in bytes (issue 17, item 7): 6,000 profiles with 60 KB values
used to keep ~190 KB each (1.4 GB resident) because the bound counted profiles only.

In-process: the accounting stays within PROFILE_SYNC_CARRY_FORWARD_MAX_BYTES, complete
profiles are evicted (counted) to stay there, a profile whose batch is pending is never
forgotten, nothing older wins for a profile still remembered, and the memory Python
really holds (tracemalloc) is within the factor deploy/checks/pod.py sizes pods with.
"""

from __future__ import annotations

import gc
import tracemalloc

from consumer.core.batcher import STALE, Batcher, BatchLimits
from consumer.core.carry import CarryForward
from consumer.core.model import BatchFile, IdType, TopicPartition
from deploy.checks.pod import CARRY_FORWARD_MEMORY_FACTOR
from tests.utils import make_update, parse_batch

T3P = IdType.THIRD_PARTY_ID
POS = TopicPartition("pos", 0)
CRM = TopicPartition("crm", 0)
MAX_BYTES = 64_000_000
PROFILES = 6_000
T0 = 1_700_000_000_000


def _value(p: int) -> str:
    return f"{p:06d}".ljust(60_000, "v")  # 60 KB, distinct per profile


def _pid(p: int) -> str:
    return f"crm-{p:06d}"


def test_six_thousand_profiles_of_60_kb_stay_within_the_byte_bound() -> None:
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    carry = CarryForward(50_000, MAX_BYTES)
    batcher = Batcher(BatchLimits(500_000, 16_000_000, 3600), carry)
    pending: list[BatchFile] = []

    def take() -> None:
        ready = batcher.take_ready()
        if not ready:
            return
        pending.extend(ready)
        while len(pending) > 2:  # two batches stay pending, the older ones complete
            carry.release(pending.pop(0).batch_id)
        # Every profile of a pending batch is still remembered, and carried.
        for batch in pending:
            for pid, _ in parse_batch(batch.body)[1]:
                assert carry.seed(T3P, pid) is not None
        if not carry.over_bound:
            assert carry.memory_bytes <= MAX_BYTES

    for p in range(PROFILES):
        batcher.add(make_update(_pid(p), {"note": _value(p)}, occurred_at=T0, tp=POS), 0.0)
        take()
    batcher.cut_all("test")
    take()
    for batch in pending:
        carry.release(batch.batch_id)
    pending.clear()
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()

    assert not carry.over_bound and carry.memory_bytes <= MAX_BYTES
    assert carry.evictions > 0 and len(carry) + carry.evictions == PROFILES
    assert held <= MAX_BYTES * CARRY_FORWARD_MEMORY_FACTOR, f"{held:,} B held"
    # The most recently sent profiles are the ones remembered; an older value from another
    # partition does not win against them.
    kept = [p for p in range(PROFILES) if carry.guard(T3P, _pid(p)) is not None]
    assert kept == list(range(PROFILES - len(kept), PROFILES))
    for p in kept[-50:]:
        older = make_update(_pid(p), {"note": "stale"}, occurred_at=T0 - 1, tp=CRM)
        assert batcher.add(older, 0.0) is STALE


def test_a_pending_row_larger_than_the_bound_waits_for_its_batch() -> None:
    carry = CarryForward(50_000, 1_000_000)
    batcher = Batcher(BatchLimits(500_000, 16_000_000, 3600), carry)
    for p in range(30):  # 1.8 MB of pending rows: over the bound, nothing evictable
        batcher.add(make_update(_pid(p), {"note": _value(p)}, occurred_at=T0, tp=POS), 0.0)
    batcher.cut_all("test")
    [batch] = batcher.take_ready()
    assert carry.over_bound and carry.evictions == 0 and carry.pending_profiles == 30
    # A later row of one of them still carries its pending attribute.
    batcher.add(make_update(_pid(3), {"tier": "gold"}, occurred_at=T0 + 1, tp=POS), 0.0)
    batcher.cut_all("test")
    [later] = batcher.take_ready()
    assert dict(parse_batch(later.body)[1])[_pid(3)] == {"note": _value(3), "tier": "gold"}
    carry.release(batch.batch_id)
    assert not carry.over_bound and carry.memory_bytes <= 1_000_000 and carry.evictions > 0
