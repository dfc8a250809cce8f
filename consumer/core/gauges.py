"""The loop's gauges, set once per turn from the state of its owners."""

from __future__ import annotations

from typing import TYPE_CHECKING

from consumer.metrics import Metrics

if TYPE_CHECKING:
    from consumer.core.loop import Loop


def set_gauges(loop: Loop, m: Metrics, now: float) -> None:
    batcher = loop.batcher
    for id_type, rows in batcher.buffered_rows_by_type().items():
        m.buffer_rows.labels(id_type.value).set(rows)
    m.buffer_bytes.set(batcher.buffered_bytes)
    started = batcher.oldest_started_at()
    m.oldest_pending_age.set(0 if started is None else now - started)
    m.batches_in_flight.set(loop.uploads.busy)
    assigned = len(loop.source.assigned)
    m.partitions_paused.set(assigned if loop.paused else 0)
    m.partitions_assigned.set(assigned)
    if loop.carry is not None:
        m.carry_forward_profiles.set(loop.carry.pending_profiles)
        m.carry_forward_bytes.set(loop.carry.memory_bytes)
        evicted = loop.carry.take_evictions()
        if evicted:
            m.carry_forward_evictions.inc(evicted)
    if loop.single is not None:
        m.single_budget_remaining.set(loop.single.budget.remaining(loop.clock.time()))
        m.single_budget_total.set(loop.single.budget.limit)
    if loop.tracker is not None:
        m.batches_tracked.set(loop.tracker.tracked)
    if loop.budget is not None:
        m.call_budget_share.set(loop.budget.share(now))
        m.group_members.set(loop.budget.members)
    m.loop_last_turn.set(loop.clock.time())
