"""What the emulated Target holds: profiles, accepted batches, pending single updates.

Pure: no I/O, no threads, no sleeping. Time comes from two injected callables, ``clock``
(seconds on a clock that never goes back; drives when things apply) and ``wall`` (epoch
seconds; only for the ``modifiedAt`` timestamps shown). Not thread-safe: the app holds
one lock around every call.

Timing. An accepted batch is due ``bulk_apply_delay`` seconds after acceptance, a single
update ``single_apply_delay`` seconds after. ``advance()`` applies everything due, in order
of due time, ties broken by acceptance order. Each applied write stamps every attribute it
sets with its due time (``appliedAt``), so the stored value of an attribute is always the
one of the LAST applied write, whichever API it came through.
"""

from __future__ import annotations

import heapq
import random
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import repeat
from typing import Any

from emulator.batchfile import ID_TYPES, BatchFile, iter_rows, row_ids
from emulator.config import QUOTA_WINDOW_SECONDS, EmulatorConfig
from emulator.quota import RollingQuota

# Outcomes of one write to one profile.
OK, NOT_FOUND, FAILED = 0, 1, 2
# Rows of a batch applied between two chances for the server to answer requests.
APPLY_STEP_ROWS = 1_000


def iso(epoch: float) -> str:
    """ISO-8601 with milliseconds and an explicit offset, as Target shows timestamps."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


@dataclass(frozen=True, slots=True)
class Write:
    """One applied update; shared by every attribute it set."""

    applied_at: float  # emulator clock: the moment the write was due
    modified: float  # epoch seconds of that moment
    source: str  # "batch:<batchId>" or "single:<n>"


class Profile:
    __slots__ = ("attrs", "size")

    def __init__(self) -> None:
        self.attrs: dict[str, tuple[str, Write]] = {}
        self.size = 0  # sum of UTF-8 len(name) + len(value) over stored attributes


@dataclass(slots=True, eq=False)
class BatchRecord:
    batch_id: str
    version: str  # v1 | v2
    id_type: str
    file: BatchFile | None  # None once the raw rows were dropped for the retention budget
    size: int  # bytes of the uploaded file
    row_count: int
    form: str  # raw | multipart
    accepted_at: float
    due: float
    status: str  # incomplete | complete | stuck
    consumed: int = 0
    successful: int = 0
    not_found: int = 0
    failed: int = 0
    discarded_rows: int = 0  # replace-pending: rows overridden by a later batch
    skipped_empty: bool = False
    ids: set[str] = field(default_factory=set)  # replace-pending bookkeeping only
    discarded_ids: set[str] = field(default_factory=set)
    ordinal: int = 0  # 1-based acceptance order since the last reset (status retention)
    lost: list[LostRow] = field(default_factory=list)  # rows silently lost (bulk_loss_rate)

    def summary(self) -> dict[str, Any]:
        return {
            "batchId": self.batch_id,
            "version": self.version,
            "idType": self.id_type,
            "status": self.status,
            "batchSize": self.row_count,
            "bytes": self.size,
            "form": self.form,
            "acceptedAt": self.accepted_at,
            "dueAt": self.due,
            "consumedCount": self.consumed,
            "successfulUpdates": self.successful,
            "profilesNotFound": self.not_found,
            "failedUpdates": self.failed,
            "discardedRows": self.discarded_rows,
            "skippedEmpty": self.skipped_empty,
            "rowsRetained": self.file is not None,
            "cutLines": self.file.cut_lines if self.file is not None else None,
            "lostRows": len(self.lost),
        }


@dataclass(frozen=True, slots=True)
class LostRow:
    """A row of a completed batch that Target reported as processed but never stored."""

    row: int
    profile_id: str
    attributes: dict[str, str]


@dataclass(slots=True)
class SingleUpdate:
    seq: int
    id_type: str
    profile_id: str
    attributes: dict[str, str]
    accepted_at: float
    due: float


class QuotaExceeded(Exception):
    pass


# Why a batch status is not answered (the reply is the same; the stats tell them apart).
UNKNOWN_BATCH, STATUS_EVICTED, STATUS_EXPIRED = "unknown_batch", "status_evicted", "status_expired"


class Store:
    def __init__(
        self, config: EmulatorConfig, clock: Callable[[], float], wall: Callable[[], float]
    ) -> None:
        self.config = config
        self._clock = clock
        self._wall = wall
        self._batch_counter = 0  # survives reset() so batch ids are never reused
        self.reset()

    def reset(self) -> None:
        self._profiles: dict[str, dict[str, Profile]] = {t: {} for t in ID_TYPES}
        self._batches: dict[str, BatchRecord] = {}
        self._accepted = 0  # batches accepted since the reset: the newest ordinal
        self._heap: list[tuple[float, int, BatchRecord | SingleUpdate]] = []
        # The batch being applied in steps (``advance`` with ``max_rows``), if any.
        self._applying: Iterator[int] | None = None
        # Rows of batches a read applies before it answers (None: everything due). The
        # server sets it: its ticker applies the rest, and no read holds the lock for a
        # whole large file.
        self.read_step_rows: int | None = None
        self._seq = 0
        self._single_seq = 0
        self._pending_index: dict[str, dict[str, BatchRecord]] = {t: {} for t in ID_TYPES}
        self._retained: OrderedDict[str, int] = OrderedDict()
        self._retained_bytes = 0
        self.quota = RollingQuota(self.config.single_quota, QUOTA_WINDOW_SECONDS)
        self.counts: dict[str, int] = {
            "batches_accepted": 0,
            "batches_incomplete": 0,
            "batches_complete": 0,
            "batches_stuck": 0,
            "batches_skipped_empty": 0,
            "rows_received": 0,
            "bytes_received": 0,
            "rows_successful": 0,
            "rows_not_found": 0,
            "rows_failed": 0,
            "rows_discarded": 0,
            "rows_lost": 0,
            "single_accepted": 0,
            "single_applied": 0,
            "single_not_found": 0,
            "single_failed": 0,
        }

    # -- bulk

    def accept_batch(
        self, version: str, file: BatchFile, size: int, form: str, stuck: bool
    ) -> BatchRecord:
        now = self._clock()
        self._batch_counter += 1
        batch_id = f"{self.config.client}-{int(self._wall() * 1000)}-{self._batch_counter}"
        record = BatchRecord(
            batch_id=batch_id,
            version=version,
            id_type=file.id_type,
            file=file,
            size=size,
            row_count=file.row_count,
            form=form,
            accepted_at=now,
            due=now + self.config.bulk_apply_delay,
            status="stuck" if stuck else "incomplete",
        )
        self._accepted += 1
        record.ordinal = self._accepted
        self._batches[batch_id] = record
        c = self.counts
        c["batches_accepted"] += 1
        c["rows_received"] += file.row_count
        c["bytes_received"] += size
        if stuck:
            c["batches_stuck"] += 1
            self._retain(record)
            return record
        c["batches_incomplete"] += 1
        if self.config.override_mode == "replace-pending" and version == "v2":
            self._override_pending(record, file, now)
        self._push(record.due, record)
        return record

    def _override_pending(self, record: BatchRecord, file: BatchFile, now: float) -> None:
        """replace-pending: this batch's rows for P replace an earlier pending batch's rows.

        "Pending" is decided by due time, not by whether the earlier batch was applied yet:
        a batch due at or before ``now`` counts as applied, so the outcome never depends on
        when the background thread ran.
        """
        index = self._pending_index[file.id_type]
        record.ids = set(row_ids(file))
        for pid in record.ids:
            earlier = index.get(pid)
            if earlier is not None and earlier.status == "incomplete" and earlier.due > now:
                earlier.discarded_ids.add(pid)
            index[pid] = record

    def batch(self, batch_id: str) -> BatchRecord | None:
        self.advance(self.read_step_rows)
        return self._batches.get(batch_id)

    def status_withheld(self, record: BatchRecord) -> str | None:
        """Why Target no longer answers this batch's status, or None while it does.

        Only the last ``status_retention_count`` batches accepted are answered, each for at
        most ``status_retention_seconds`` after it was accepted. The batch itself is still
        applied: only its status is forgotten.
        """
        keep = self.config.status_retention_count
        if keep and self._accepted - record.ordinal >= keep:
            return STATUS_EVICTED
        if self._clock() - record.accepted_at >= self.config.status_retention_seconds:
            return STATUS_EXPIRED
        return None

    def lost_rows(self) -> list[tuple[BatchRecord, LostRow]]:
        self.advance(self.read_step_rows)
        return [(record, lost) for record in self._batches.values() for lost in record.lost]

    def batches(self) -> list[BatchRecord]:
        self.advance(self.read_step_rows)
        return list(self._batches.values())

    # -- single updates

    def accept_single(self, id_type: str, profile_id: str, attributes: dict[str, str]) -> None:
        """Queue one single update; raise ``QuotaExceeded`` past the rolling quota."""
        now = self._clock()
        if not self.quota.try_take(now):
            raise QuotaExceeded
        self._single_seq += 1
        update = SingleUpdate(
            self._single_seq,
            id_type,
            profile_id,
            attributes,
            now,
            now + self.config.single_apply_delay,
        )
        self.counts["single_accepted"] += 1
        self._push(update.due, update)

    # -- applying

    def _push(self, due: float, item: BatchRecord | SingleUpdate) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, item))

    def pending(self) -> tuple[int, int]:
        """(batches, single updates) accepted but not yet applied."""
        batches = sum(1 for _, _, item in self._heap if isinstance(item, BatchRecord))
        return batches + (self._applying is not None), len(self._heap) - batches

    @property
    def applying(self) -> bool:
        """A batch is part applied (``advance`` with ``max_rows`` goes on with it)."""
        return self._applying is not None

    def advance(self, max_rows: int | None = None) -> int:
        """Apply everything that is due; return how many batches and updates were applied.

        ``max_rows``: return once about that many rows of batches were applied (the server
        releases its lock between calls, so requests are answered while a large file
        applies, as Target's other APIs do). The batch is resumed by the next call, its
        status still ``processing``; nothing due after it applies before it ends.
        """
        applied = 0
        if self._applying is not None:
            done, max_rows = self._resume(max_rows)
            if not done:
                return applied
            applied += 1
        heap = self._heap
        if not heap:
            return applied
        now = self._clock()
        if heap[0][0] > now:
            return applied
        wall_now = self._wall()
        while heap and heap[0][0] <= now:
            due, _, item = heapq.heappop(heap)
            write_epoch = wall_now - (now - due)
            if isinstance(item, BatchRecord):
                write = Write(due, write_epoch, f"batch:{item.batch_id}")
                self._applying = self._apply_batch(item, write)
                done, max_rows = self._resume(max_rows)
                if not done:
                    return applied
            else:
                self._apply_single(item, Write(due, write_epoch, f"single:{item.seq}"))
            applied += 1
        return applied

    def _resume(self, max_rows: int | None) -> tuple[bool, int | None]:
        """Go on applying the batch under way: (finished, rows of the budget left)."""
        assert self._applying is not None
        for rows in self._applying:
            if max_rows is not None:
                max_rows -= rows
                if max_rows <= 0:
                    return False, max_rows
        self._applying = None
        return True, max_rows

    def _apply_batch(self, record: BatchRecord, write: Write) -> Iterator[int]:
        """Apply ``record``'s rows, yielding the count of each ``APPLY_STEP_ROWS`` done."""
        file = record.file
        assert file is not None  # pending batches always keep their rows
        table = self._profiles[record.id_type]
        create = record.version == "v2"
        discarded = record.discarded_ids
        cap = self.config.max_profile_bytes
        successful = not_found = failed = dropped = 0
        any_value = False
        doomed = self._rows_to_lose(record)
        for row in iter_rows(file):
            if row.number % APPLY_STEP_ROWS == 0:
                yield APPLY_STEP_ROWS
            if row.error is not None:
                failed += 1
                continue
            if discarded and row.profile_id in discarded:
                # Overridden by a later batch before this one applied: Target reports the
                # row as processed, its values are silently lost.
                successful += 1
                dropped += 1
                continue
            if row.attributes:
                any_value = True
                if doomed and row.number in doomed:
                    # Adobe's documented loss: counted as it would have been, never stored.
                    outcome = _write(
                        table, row.profile_id, row.attributes, write, create, cap, dry=True
                    )
                    if outcome == OK:
                        record.lost.append(LostRow(row.number, row.profile_id, row.attributes))
                        successful += 1
                        continue
            outcome = _write(table, row.profile_id, row.attributes, write, create, cap)
            if outcome == OK:
                successful += 1
            elif outcome == NOT_FOUND:
                not_found += 1
            else:
                failed += 1
        if not any_value and failed == 0 and dropped == 0:
            # Only empty values: Target skips the batch entirely, looking nothing up.
            record.skipped_empty = True
            successful, not_found = record.row_count, 0
        record.consumed = record.row_count
        record.successful = successful
        record.not_found = not_found
        record.failed = failed
        record.discarded_rows = dropped
        record.status = "complete"
        c = self.counts
        c["batches_incomplete"] -= 1
        c["batches_complete"] += 1
        c["rows_successful"] += successful
        c["rows_not_found"] += not_found
        c["rows_failed"] += failed
        c["rows_discarded"] += dropped
        c["rows_lost"] += len(record.lost)
        if record.skipped_empty:
            c["batches_skipped_empty"] += 1
        if record.ids:
            index = self._pending_index[record.id_type]
            for pid in record.ids:
                if index.get(pid) is record:
                    del index[pid]
            record.ids = set()
        self._retain(record)

    def _rows_to_lose(self, record: BatchRecord) -> set[int]:
        """The row numbers this batch loses under ``bulk_loss_rate``; the same on every run.

        The share is exact in expectation: ``rate * rows`` rounded up or down at random, so
        a 0.1% loss still hits small batches now and then. The draw depends only on the seed
        and the batch's acceptance order, not on timing.
        """
        rate = self.config.bulk_loss_rate
        rows = record.row_count
        if rate <= 0.0 or rows == 0:
            return set()
        rng = random.Random(f"{self.config.bulk_loss_seed}/{record.ordinal}")
        count = min(rows, int(rate * rows + rng.random()))
        return set(rng.sample(range(1, rows + 1), count)) if count else set()

    def _apply_single(self, update: SingleUpdate, write: Write) -> None:
        table = self._profiles[update.id_type]
        outcome = _write(
            table,
            update.profile_id,
            update.attributes,
            write,
            False,  # the single-update API never creates a profile
            self.config.max_profile_bytes,
        )
        key = {OK: "single_applied", NOT_FOUND: "single_not_found", FAILED: "single_failed"}
        self.counts[key[outcome]] += 1

    def _retain(self, record: BatchRecord) -> None:
        """Keep an applied (or stuck) batch's rows within the retention byte budget."""
        self._retained[record.batch_id] = record.size
        self._retained_bytes += record.size
        budget = self.config.retain_batch_bytes
        while self._retained_bytes > budget and self._retained:
            batch_id, size = self._retained.popitem(last=False)
            self._retained_bytes -= size
            self._batches[batch_id].file = None

    # -- reading

    def profile(self, id_type: str, profile_id: str) -> Profile | None:
        self.advance(self.read_step_rows)
        return self._profiles[id_type].get(profile_id)

    def profile_count(self) -> int:
        return sum(len(t) for t in self._profiles.values())

    def dump(self, details: bool, prefix: str = "") -> dict[str, dict[str, Any]]:
        """Every profile (whose id starts with ``prefix``), as new objects."""
        self.advance(self.read_step_rows)
        out: dict[str, dict[str, Any]] = {}
        for id_type, every in self._profiles.items():
            table = (
                {pid: p for pid, p in every.items() if pid.startswith(prefix)} if prefix else every
            )
            if details:
                out[id_type] = {
                    pid: {
                        name: {
                            "value": value,
                            "modifiedAt": iso(w.modified),
                            "appliedAt": w.applied_at,
                            "source": w.source,
                        }
                        for name, (value, w) in prof.attrs.items()
                    }
                    for pid, prof in table.items()
                }
            else:
                out[id_type] = {
                    pid: {name: value for name, (value, _) in prof.attrs.items()}
                    for pid, prof in table.items()
                }
        return out


def _write(
    table: dict[str, Profile],
    profile_id: str,
    attributes: dict[str, str],
    write: Write,
    create: bool,
    cap: int,
    dry: bool = False,
) -> int:
    """Merge non-empty ``attributes`` into one profile, all or nothing under the size cap.

    With ``dry``, only say what the outcome would be; nothing is stored.
    """
    profile = table.get(profile_id)
    if profile is None:
        if not create:
            return NOT_FOUND
        if not attributes:
            return OK  # nothing to store: no profile is created for empty values
        size = utf8_len("".join(attributes)) + utf8_len("".join(attributes.values()))
        if size > cap:
            return FAILED
        if dry:
            return OK
        profile = Profile()
        profile.attrs = dict(zip(attributes, zip(attributes.values(), repeat(write)), strict=False))
        profile.size = size
        table[profile_id] = profile
        return OK
    if not attributes:
        return OK
    stored = profile.attrs
    # Sizes are summed over joined strings: one C-level pass instead of a call per cell.
    added: list[str] = []
    replaced: list[str] = []
    for name in attributes:
        previous = stored.get(name)
        if previous is None:
            added.append(name)
        else:
            replaced.append(previous[0])
    delta = (
        utf8_len("".join(attributes.values()))
        + utf8_len("".join(added))
        - utf8_len("".join(replaced))
    )
    if profile.size + delta > cap:
        return FAILED
    if dry:
        return OK
    stored.update(zip(attributes, zip(attributes.values(), repeat(write)), strict=False))
    profile.size += delta
    return OK
