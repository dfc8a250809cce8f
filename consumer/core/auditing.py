"""Read-back audit, the loop's side: schedule, read, judge, repair, dead-letter.

``Outcomes`` calls ``on_complete`` when a batch's status is ``complete``; the loop calls
``turn`` once per turn. Reads run on the reader's own thread (consumer/target/fetch.py),
so a turn only hands over due rows and judges the reads that came back. The decisions are
in consumer/core/audit.py; this module looks up what is newer (the carry-forward's last
batch for a profile, the batcher's open row) and acts:

- a lost attribute re-enters the batcher as an update of its own source, stamped with the
  time of the value it restores, so the batcher's newest-value rule (guarantee 2 in
  docs/guarantees.md) lets any newer event win over it, before or after;
- after ``max_repairs`` repairs, what is still lost goes to the DLQ (reason
  ``audit_lost``).

Runs on the loop's thread.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Protocol

from consumer.clock import Clock
from consumer.core import audit
from consumer.core.audit import AuditQueue, AuditRow, Judgement, Kind, Step, Verdict
from consumer.core.batcher import Batcher, Refused
from consumer.core.buffer import stamp_time
from consumer.core.carry import CarryForward, Sent
from consumer.core.model import (
    BatchFile,
    DeadLetter,
    IdType,
    Priority,
    ProfileUpdate,
    TopicPartition,
)
from consumer.core.settling import Settling
from consumer.metrics import Metrics
from consumer.target.wire import encode_cell

log = logging.getLogger("profile_sync.audit")

# Repairs enter the batcher as events of this pseudo-partition. It is never consumed or
# committed; being a source of its own, a repair loses to any event not older than the
# value it restores, from whatever partition.
REPAIR_SOURCE = TopicPartition("profile-sync.repair", 0)
# Rows of completed batches scanned for the sample per loop turn (~2 ms): a 20,000-row
# batch scanned at once held the loop ~25 ms, and urgent events fetched meanwhile waited.
SCAN_ROWS_PER_TURN = 2_000


class Read(Protocol):
    """One read back: the row, Target's JSON (None: no such profile), why it failed."""

    @property
    def row(self) -> AuditRow: ...

    @property
    def profile(self) -> dict[str, Any] | None: ...

    @property
    def error(self) -> str: ...


class Reader(Protocol):
    """Fetches profiles off the loop's thread (``consumer.target.fetch.ProfileReader``)."""

    def capacity(self) -> int: ...

    def submit(self, row: AuditRow) -> None: ...

    def next_result(self) -> Read | None: ...

    def close(self) -> None: ...


class Auditing:
    def __init__(
        self,
        queue: AuditQueue,
        reader: Reader,
        *,
        batcher: Batcher,
        carry: CarryForward | None,
        settling: Settling,
        max_repairs: int,
        v1_ids: frozenset[IdType],
        metrics: Metrics | None,
        clock: Clock,
    ) -> None:
        """``v1_ids``: id types whose batches go to the v1 API, which never creates a
        profile: a profile Target does not have is then not a loss."""
        self.queue = queue
        self.reader = reader
        self.batcher = batcher
        self.carry = carry
        self.settling = settling
        self.max_repairs = max_repairs
        self.v1_ids = v1_ids
        self.clock = clock
        self.reading = 0  # rows handed to the reader, not back yet
        self._discard = 0  # reads still out when the audit was cleared: ignore them
        self.metrics = metrics

    def on_complete(self, batch: BatchFile | None, batch_id: int) -> None:
        """Batch ``batch_id`` is complete (``batch``: its bytes, None if not retained)."""
        if batch is None:
            self.queue.batch_gone(batch_id)
            return
        self.queue.defer(batch, self.clock.monotonic())  # scanned a few rows a turn
        if self.metrics is not None:  # now, not at the end of the turn: a scrape that sees
            # the batch complete sees its rows waiting too
            self.metrics.audit_pending.set(self.queue.pending + self.reading)

    def on_batch_gone(self, batch_id: int) -> None:
        """Batch ``batch_id`` will never complete (rejected, cancelled, dead-lettered)."""
        self.queue.batch_gone(batch_id)

    def forget(self) -> None:
        """Partitions were revoked or lost: drop what waits, ignore the reads still out."""
        dropped = self.queue.clear()
        self._discard = self.reading
        if dropped and self.metrics is not None:
            self.metrics.audit_rows_dropped.labels("rebalance").inc(dropped)

    def turn(self, now: float) -> None:
        """Scan completed batches for their sample, hand due rows to the reader, judge the
        reads that came back."""
        self.queue.scan(SCAN_ROWS_PER_TURN)
        room = self.reader.capacity()
        if room:
            for row in self.queue.take_due(now, room):
                self.reader.submit(row)
                self.reading += 1
        while (read := self.reader.next_result()) is not None:
            self.reading -= 1
            if self._discard:
                self._discard -= 1
                continue
            self._on_read(read, now)
        m = self.metrics
        if m is not None:
            m.audit_pending.set(self.queue.pending + self.reading)
            skipped, self.queue.skipped = self.queue.skipped, 0
            if skipped:
                m.audit_rows_dropped.labels("memory").inc(skipped)

    def close(self) -> None:
        self.reader.close()

    # -- one read back

    def _on_read(self, read: Read, now: float) -> None:
        row = read.row
        m = self.metrics
        if read.error:
            retry = self.queue.read_failed(row, now)
            if m is not None:
                m.audit_reads.labels("error").inc()
                if not retry:
                    m.audit_rows_dropped.labels("unreadable").inc()
            if not retry:
                log.warning(
                    "audit read failed, row not audited",
                    extra={"fields": {"batch_id": row.batch_id, "error": read.error}},
                )
                if row.kind is Kind.REPAIR:
                    self.queue.repair_ended(row.key)
            return
        held = audit.held_values(read.profile)
        if held is None and row.id_type in self.v1_ids:
            if m is not None:
                m.audit_reads.labels("not_found").inc()
            if row.kind is Kind.REPAIR:
                self.queue.repair_ended(row.key)
            return
        judgement = audit.judge(row, held, self._newer(row))
        step = audit.next_step(row, judgement, self.max_repairs)
        if m is not None:
            m.audit_reads.labels("not_found" if held is None else "found").inc()
            m.audit_rows.labels(row.kind, "lost" if judgement.lost else "matching").inc()
            for verdict, n in (
                (Verdict.MATCHING, len(judgement.matching)),
                (Verdict.SUPERSEDED, len(judgement.superseded)),
                (Verdict.LOST, len(judgement.lost)),
            ):
                if n:
                    m.audit_attributes.labels(row.kind, verdict).inc(n)
        if step is Step.DONE:
            if row.kind is Kind.REPAIR:
                self.queue.repair_ended(row.key)
                if m is not None:
                    m.audit_repairs.labels("succeeded").inc()
            return
        log.warning(
            "audit found attributes lost by Target",
            extra={
                "fields": {
                    "batch_id": row.batch_id,
                    "id_type": row.id_type.value,
                    "attributes": sorted(judgement.lost),
                    "repairs": row.repairs,
                    "next": step.value,
                }
            },
        )
        if step is Step.REPAIR:
            self._repair(row, judgement, now)
        else:
            self._dead_letter(row, judgement)

    def _newer(self, row: AuditRow) -> Callable[[str], bool]:
        """Is a newer write of an attribute of ``row``'s profile in flight or buffered?

        Yes when the open buffer holds the attribute; when a later batch not yet complete
        holds it; or when a batch completed since sent it with another value.
        """
        id_enc = encode_cell(row.profile_id)
        buffered = self.batcher.buffered_names(row.id_type, id_enc)
        carry = self.carry
        in_flight: set[str] = set()
        applied: dict[str, Sent] = {}
        if carry is not None:
            if carry.last_batch(row.id_type, id_enc) != row.batch_id:
                seed = carry.seed(row.id_type, id_enc)
                if seed is not None:
                    names, pending = seed
                    in_flight = {names[ord(c)] for c in pending.cols}
            applied = carry.guard(row.id_type, id_enc) or {}
        sent = row.sent

        def newer(name: str) -> bool:
            name_enc = encode_cell(name)
            if name_enc in buffered or name_enc in in_flight:
                return True
            cell = applied.get(name_enc)
            return cell is not None and cell[0] != encode_cell(sent[name])

        return newer

    def _repair(self, row: AuditRow, judgement: Judgement, now: float) -> None:
        # One update per original timestamp, so each value re-enters exactly as new as it was.
        guard = self.carry.guard(row.id_type, encode_cell(row.profile_id)) if self.carry else None
        by_stamp: dict[int, dict[str, str]] = defaultdict(dict)
        for name, value in judgement.lost.items():
            cell = guard.get(encode_cell(name)) if guard else None
            by_stamp[stamp_time(cell[1]) if cell is not None else row.occurred_at][name] = value
        batch_ids: set[int] = set()
        for stamp, attrs in sorted(by_stamp.items()):
            update = ProfileUpdate(
                row.id_type, row.profile_id, attrs, Priority.NORMAL, stamp, REPAIR_SOURCE, 0,
                source="REPAIR",
            )  # fmt: skip
            batch_id = self.batcher.add(update, now)
            if batch_id is Refused.TOO_LARGE:
                self._dead_letter(row, Judgement(lost=attrs))
            elif batch_id is not Refused.STALE:  # stale: a newer value was sent meanwhile
                assert isinstance(batch_id, int)
                batch_ids.add(batch_id)
        if not batch_ids:
            self.queue.repair_ended(row.key)
            return
        self.queue.repair_sent(row.key, batch_ids)
        if self.metrics is not None:
            self.metrics.audit_repairs.labels("sent").inc()

    def _dead_letter(self, row: AuditRow, judgement: Judgement) -> None:
        self.queue.repair_ended(row.key)
        if self.metrics is not None:
            self.metrics.audit_repairs.labels("dead_lettered").inc()
        value = json.dumps(
            {"id_type": row.id_type.value, "id": row.profile_id, "attributes": judgement.lost},
            ensure_ascii=False,
        ).encode("utf-8")
        letter = DeadLetter(
            key=row.profile_id.encode("utf-8"),
            value=value,
            reason="audit_lost",
            stage="audit",
            error_class="AuditLost",
            message=f"Target did not keep these attributes after {row.repairs} repairs",
            extra_headers=(("batch.id", str(row.batch_id)),),
        )
        self.settling.dead_letter_rows([letter])
