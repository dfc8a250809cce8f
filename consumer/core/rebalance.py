"""Handing partitions over: revoke, lost and shutdown (guarantees 9 and 10 in
docs/guarantees.md).

``settle`` flushes the batcher and waits for what is pending to settle. It runs inside
rebalance callbacks (that is, inside the consumer's own consume() or close()) and at
shutdown, so it never calls the consumer: it waits on upload results and serves
dead-letter confirmations itself.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from consumer.core.handover import hand_over
from consumer.core.ledger import UnitKind, unit_kind
from consumer.core.model import TopicPartition
from consumer.core.ownership import OwnedSource

if TYPE_CHECKING:
    from consumer.core.loop import Loop

log = logging.getLogger("profile_sync.pipeline")

# Left of the shutdown budget for the consumer's close (commit, leave the group).
_CLOSE_SECONDS = 1.0
# How long one wait for an upload result lasts while settling (revoke, shutdown); DLQ
# delivery reports are served between waits.
SETTLE_WAIT_SECONDS = 0.02


def _names(tps: set[TopicPartition]) -> list[str]:
    return sorted(f"{t}[{p}]" for t, p in tps)


def _batches(units: set[int]) -> list[int]:
    return sorted(u for u in units if unit_kind(u) is UnitKind.BATCH)


def settle(loop: Loop, deadline: float, tps: set[TopicPartition] | None = None) -> bool:
    """Flush and wait (until ``deadline``, monotonic) for ``tps`` (None: all) to settle.

    Units that can never settle (a rejected batch when the service is stopping for it)
    are not waited for. Returns True when nothing of ``tps`` is pending. May raise
    ``FatalError`` from the outcomes.
    """
    loop.cut(loop.clock.monotonic(), "revoke" if tps is not None else "shutdown")
    settling = loop.settling
    while True:
        loop.uploads.submit(force=True)  # resubmissions included
        loop.drain_results()
        settling.poll()
        settling.store(loop.source)
        if not settling.waiting_for(tps):
            return True
        if loop.clock.monotonic() >= deadline:
            return False
        result = loop.uploads.next_result(SETTLE_WAIT_SECONDS)
        if result is not None:
            loop.outcomes.on_bulk_result(result)


def _drop(loop: Loop, tps: set[TopicPartition], leftover: set[int]) -> None:
    """Cancel ``leftover``; partitions kept that share a cancelled batch are rewound."""
    retained = loop.source.assigned - tps
    shared = {tp for tp in retained if loop.settling.pending({tp}) & leftover}
    loop.outcomes.cancel(leftover)
    if shared:
        loop.source.request_rewind(shared)
        loop.settling.forget(shared)


def on_assign(loop: Loop, tps: set[TopicPartition]) -> None:
    loop.assignment_changed_at = loop.clock.monotonic()
    if loop.metrics is not None:
        loop.metrics.rebalances.labels("assign").inc()
    log.info("partitions assigned", extra={"fields": {"partitions": _names(tps)}})
    if loop.paused:
        loop.source.pause(tps)


def on_revoke(loop: Loop, tps: set[TopicPartition]) -> None:
    loop.assignment_changed_at = loop.clock.monotonic()
    if loop.audit is not None:
        loop.audit.forget()  # another consumer may now write these profiles
    if loop.metrics is not None:
        loop.metrics.rebalances.labels("revoke").inc()
    timeout = loop.settings.revoke_timeout_seconds
    if loop.stopping:
        # Shutdown already flushed and waited; what is left of its budget bounds this.
        left = loop.stop_requested_at
        remaining = 1.0
        if left is not None:
            budget_end = left + loop.settings.shutdown_timeout_seconds
            remaining = budget_end - _CLOSE_SECONDS - loop.clock.monotonic()
        timeout = max(0.0, min(timeout, 1.0, remaining))
    settled = settle(loop, loop.clock.monotonic() + timeout, tps)
    loop.source.commit_sync()
    leftover = loop.settling.pending(tps)
    if not settled and leftover:
        # Rows that could not settle in time are dropped uncommitted: the new owner
        # re-reads them. Batches that also hold retained partitions' rows are
        # cancelled too, so those partitions are rewound to their committed offsets.
        _drop(loop, tps, leftover)
        log.warning(
            "revoked partitions did not settle in time; left for the new owner",
            extra={"fields": {"batches": _batches(leftover)}},
        )
    loop.settling.forget(tps)
    loop.settling.completion.forget(tps)
    log.info(
        "partitions revoked",
        extra={"fields": {"partitions": _names(tps), "settled": settled}},
    )


def on_lost(loop: Loop, tps: set[TopicPartition]) -> None:
    if loop.audit is not None:
        loop.audit.forget()
    if loop.metrics is not None:
        loop.metrics.rebalances.labels("lost").inc()
    _drop(loop, tps, loop.settling.pending(tps))
    loop.settling.forget(tps)
    loop.settling.completion.forget(tps)
    log.warning(
        "partitions lost (session timed out); uncommitted work dropped",
        extra={"fields": {"partitions": _names(tps)}},
    )


def shutdown(loop: Loop) -> bool:
    """Stop fetching, flush, settle, commit, close. True when everything settled."""
    loop.stopping = True
    budget = loop.settings.shutdown_timeout_seconds
    # The budget counts from the signal, not from the end of the turn it interrupted.
    deadline = (loop.stop_requested_at or loop.clock.monotonic()) + budget
    loop.stop_requested_at = deadline - budget
    loop.source.begin_stop()
    if isinstance(loop.source, OwnedSource):
        # Repartition mode: first consume what this process forwarded to itself
        # (consumer/core/handover.py), within half the budget.
        hand_over(loop, loop.source, deadline - budget / 2)
    loop.source.pause_all()
    # Reserve part of the budget for committing, closing the workers and leaving the group.
    settled = settle(loop, deadline - min(3.0, budget / 3))
    loop.source.commit_sync()
    if not settled:
        leftover = loop.settling.pending()
        loop.outcomes.cancel(leftover)
        log.warning(
            "shutdown: some batches did not settle in time; they will be re-read",
            extra={"fields": {"batches": _batches(leftover)}},
        )
    # Worker threads are daemons: their closes join briefly, never for a call on the wire.
    loop.uploads.close()
    if loop.single is not None:
        loop.single.close(min(0.5, max(0.0, deadline - loop.clock.monotonic())))
    if loop.tracker is not None:
        loop.tracker.close()
    loop.settling.flush(max(0.1, deadline - _CLOSE_SECONDS - loop.clock.monotonic()))
    loop.source.close()
    return settled
