"""Read-back audit, the pure part: which rows to read back, when, and what a read means.

Target may silently drop rows of a batch it reports ``complete`` (Adobe: "up to 0.1% of
large production batches"). After a batch completes, a sample of its rows waits
``settle_seconds`` (Target may apply later than it reports), is read back, and each
attribute we sent is judged:

- ``matching``: Target holds the value we sent;
- ``superseded``: it does not, but a newer write for the profile is in flight or buffered
  (a later batch holds it, or the open buffer holds this attribute): that write decides;
- ``lost``: it does not, and nothing newer is on its way. The row is repaired: its lost
  attributes re-enter the bulk path, and the repair batch's row is read back in turn.

Sampling is by profile (a hash of id type and id), not by row: a sampled profile is
audited in every batch that holds it, so an attribute called superseded because a later
batch holds it is judged again when that batch completes.

Memory is bounded: at most ``max_pending`` rows wait for their read (past it, rows are
not sampled and counted as skipped), and at most ``max_pending`` profiles are remembered
as being repaired (the oldest forgotten first). Pure logic: plain values and a monotonic
time passed in, no I/O.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import unquote

from consumer.core.model import BatchFile, IdType

ProfileKey = tuple[IdType, str]

# A read that failed (timeout, 5xx, 401 while a token rotates) is tried again this many
# times, then the row counts as unreadable: an outage must not fill memory with reads.
MAX_READ_ATTEMPTS = 3
# Seconds between tries of a failed read.
READ_RETRY_SECONDS = 30.0
# Bytes of a completed batch file scanned for the sample in one step (a few hundred rows).
SCAN_STEP_BYTES = 64 * 1024


class Verdict(StrEnum):
    MATCHING = "matching"
    SUPERSEDED = "superseded"
    LOST = "lost"


class Kind(StrEnum):
    """Why a row is read back: drawn by the sample, or a repair being checked."""

    SAMPLE = "sample"
    REPAIR = "repair"


def sampled(id_type: IdType, profile_id: str, share: float) -> bool:
    """Is this profile in the audit sample? The same answer every time and on every pod.

    CRC-32 of the id type and id, compared with ``share`` of its range: a tenth of a
    cryptographic hash's cost, and it runs for every row of every completed batch.
    """
    if share >= 1.0:
        return True
    if share <= 0.0:
        return False
    return zlib.crc32(profile_id.encode(), _PREFIX_CRC[id_type]) < share * 2**32


_PREFIX_CRC = {t: zlib.crc32(f"{t.value}:".encode()) for t in IdType}


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One row of a completed batch awaiting its read back (values decoded, as sent)."""

    id_type: IdType
    profile_id: str
    sent: dict[str, str]
    batch_id: int
    occurred_at: int  # the batch's oldest event time: a repair never claims to be newer
    due_at: float
    kind: Kind
    repairs: int = 0  # repairs already sent for this profile's lost attributes
    attempts: int = 0  # failed reads so far

    @property
    def key(self) -> ProfileKey:
        return (self.id_type, self.profile_id)


@dataclass(frozen=True, slots=True)
class Judgement:
    """What one read back found, attribute by attribute."""

    matching: tuple[str, ...] = ()
    superseded: tuple[str, ...] = ()
    lost: dict[str, str] = field(default_factory=dict)  # name -> the value to send again


class Step(StrEnum):
    """What to do with a judged row."""

    DONE = "done"  # nothing lost
    REPAIR = "repair"  # send the lost attributes again
    DEAD_LETTER = "dead_letter"  # lost again after the last repair allowed


def judge(row: AuditRow, held: dict[str, str] | None, newer: Callable[[str], bool]) -> Judgement:
    """Compare what we sent with what Target ``held`` (None: no such profile).

    ``newer(name)`` says whether a newer write of that attribute is in flight or buffered.
    """
    held = held or {}
    matching: list[str] = []
    superseded: list[str] = []
    lost: dict[str, str] = {}
    for name, value in row.sent.items():
        if held.get(name) == value:
            matching.append(name)
        elif newer(name):
            superseded.append(name)
        else:
            lost[name] = value
    return Judgement(tuple(matching), tuple(superseded), lost)


def next_step(row: AuditRow, judgement: Judgement, max_repairs: int) -> Step:
    if not judgement.lost:
        return Step.DONE
    return Step.REPAIR if row.repairs < max_repairs else Step.DEAD_LETTER


def held_values(profile: dict[str, object] | None) -> dict[str, str] | None:
    """The attribute values of a fetched profile (Target's JSON), None if not found."""
    if profile is None:
        return None
    attrs = profile.get("profileAttributes")
    out: dict[str, str] = {}
    if isinstance(attrs, dict):
        for name, entry in attrs.items():
            value = entry.get("value") if isinstance(entry, dict) else entry
            if value is not None:
                out[str(name)] = str(value)
    return out


class AuditQueue:
    """Rows waiting for their read back, and the profiles being repaired."""

    def __init__(self, share: float, settle_seconds: float, max_pending: int) -> None:
        self.share = share
        self.settle_seconds = settle_seconds
        self.max_pending = max_pending
        self._waiting: deque[AuditRow] = deque()  # due times never decrease
        self._retries: deque[AuditRow] = deque()
        self._in_batch: dict[int, dict[ProfileKey, int]] = {}  # repair batch -> repairs
        self._repairing: OrderedDict[ProfileKey, int] = OrderedDict()
        self.skipped = 0  # rows not sampled because memory was full (for a counter)
        # Completed batches whose rows are still to be scanned (``scan``), and their rows.
        self._scans: deque[Iterator[tuple[int, int]]] = deque()
        self._unscanned = 0

    @property
    def pending(self) -> int:
        """Rows waiting for a read (or for another try of one), and those of completed
        batches not scanned yet (as many as the sample share will take, at least one
        per batch: a batch that completed is never shown as nothing to audit)."""
        waiting = len(self._waiting) + len(self._retries)
        if self._scans:
            waiting += max(len(self._scans), round(self._unscanned * self.share))
        return waiting

    @property
    def repairing(self) -> int:
        return len(self._repairing)

    def on_complete(self, batch: BatchFile, now: float) -> int:
        """``batch`` completed: schedule its sampled rows and its repairs; returns how many."""
        self.defer(batch, now)
        return self.scan()

    def defer(self, batch: BatchFile, now: float) -> None:
        """``batch`` completed: its rows are scanned for the sample by ``scan``, a few
        thousand at a time (the loop's thread runs it, and reads urgent events too)."""
        repairs = self._in_batch.pop(batch.batch_id, None)
        if self.share <= 0.0 and not repairs:
            return
        self._scans.append(self._scan(batch, now + self.settle_seconds, repairs))
        self._unscanned += batch.row_count

    def scan(self, max_rows: int | None = None) -> int:
        """Scan up to ``max_rows`` rows of completed batches (None: all); returns how many
        rows were scheduled for a read."""
        scheduled = 0
        scans = self._scans
        while scans and (max_rows is None or max_rows > 0):
            for rows, chosen in scans[0]:
                scheduled += chosen
                self._unscanned -= rows
                if max_rows is not None:
                    max_rows -= rows
                    if max_rows <= 0:
                        break
            else:
                scans.popleft()
        return scheduled

    def _scan(
        self, batch: BatchFile, due: float, repairs: dict[ProfileKey, int] | None
    ) -> Iterator[tuple[int, int]]:
        """Schedule ``batch``'s sampled rows and repairs; yields (rows scanned, scheduled)
        every ``SCAN_STEP_BYTES`` of the file."""
        text = batch.body.decode("ascii")
        start = text.index("\n") + 1
        header = text[: start - 1].split(",")
        id_type = IdType(header[0].removeprefix("batch="))
        names = [unquote(n) for n in header[1:]]
        share = self.share
        while start < len(text):
            end = text.rfind("\n", start, start + SCAN_STEP_BYTES)
            if end < start:  # one line longer than a step
                end = text.find("\n", start + SCAN_STEP_BYTES)
                end = len(text) if end < 0 else end
            lines = text[start:end].split("\n")
            start = end + 1
            scheduled = 0
            for line in lines:
                # Only sampled rows are decoded: at 1% this is a hash per row, not a parse.
                id_enc, _, rest = line.partition(",")
                if not id_enc:
                    continue
                profile_id = unquote(id_enc) if "%" in id_enc else id_enc
                key = (id_type, profile_id)
                done = repairs.get(key) if repairs else None
                if done is not None:
                    kind = Kind.REPAIR
                elif sampled(id_type, profile_id, share):
                    kind = Kind.SAMPLE
                else:
                    continue
                if len(self._waiting) + len(self._retries) >= self.max_pending:
                    self.skipped += 1
                    continue
                cells = rest.split(",")
                attrs = {names[i]: unquote(c) for i, c in enumerate(cells) if c}
                self._waiting.append(
                    AuditRow(
                        id_type,
                        profile_id,
                        attrs,
                        batch.batch_id,
                        batch.oldest_occurred_at,
                        due,
                        kind,
                        repairs=self._repairing.get(key, 0),
                    )
                )
                scheduled += 1
            yield len(lines), scheduled

    def take_due(self, now: float, limit: int) -> list[AuditRow]:
        """Up to ``limit`` rows whose read is due, oldest first."""
        out: list[AuditRow] = []
        for queue in (self._retries, self._waiting):
            while queue and len(out) < limit and queue[0].due_at <= now:
                out.append(queue.popleft())
        return out

    def read_failed(self, row: AuditRow, now: float) -> bool:
        """A read of ``row`` failed: try again later (True) or give up on it (False)."""
        if row.attempts + 1 >= MAX_READ_ATTEMPTS:
            return False
        self._retries.append(
            AuditRow(
                row.id_type,
                row.profile_id,
                row.sent,
                row.batch_id,
                row.occurred_at,
                now + READ_RETRY_SECONDS,
                row.kind,
                row.repairs,
                row.attempts + 1,
            )
        )
        return True

    def repair_sent(self, key: ProfileKey, batch_ids: set[int]) -> int:
        """A repair of ``key`` went into ``batch_ids`` (usually one); returns its count."""
        count = self._repairing.pop(key, 0) + 1
        self._repairing[key] = count
        for batch_id in batch_ids:
            self._in_batch.setdefault(batch_id, {})[key] = count
        while len(self._repairing) > self.max_pending:
            self._repairing.popitem(last=False)
        return count

    def repair_ended(self, key: ProfileKey) -> None:
        """The profile is whole again, or its lost attributes went to the DLQ."""
        self._repairing.pop(key, None)

    def batch_gone(self, batch_id: int) -> None:
        """A batch that held repairs will not complete (rejected, cancelled, dead-lettered)."""
        for key in self._in_batch.pop(batch_id, {}):
            self._repairing.pop(key, None)

    def clear(self) -> int:
        """Forget every row waiting and every repair (partitions revoked: their profiles
        may now be written by another consumer, whose newer values we cannot see)."""
        dropped = self.pending
        self._waiting.clear()
        self._retries.clear()
        self._scans.clear()
        self._unscanned = 0
        self._in_batch.clear()
        self._repairing.clear()
        return dropped
