"""Micro-batching: coalesce events into one row per profile, cut files before any limit.

One open buffer per id type (a batch file holds one id type). Within a buffer each profile
has one row; each attribute keeps the newest value (guarantee 2 in docs/guarantees.md): an
event replaces a cell when it comes from the same partition as the cell (a later offset,
since partitions are read in order) or when its ``occurred_at`` is not older. Cells are kept
already percent-encoded, so memory per row is close to its size in the file and cutting is a
join.

The encoded file size is tracked incrementally:

    size = header + sum(len(id) + 1 newline) + rows * columns (commas) + sum(len(cell))

A cut happens *before* an event would make a file reach ``max_bytes`` or exceed
``max_rows``; an idle buffer is cut when its oldest event is ``linger`` seconds old.
Pure logic: plain values and a monotonic time passed in, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from consumer.core.model import BatchFile, IdType, ProfileUpdate, TopicPartition
from consumer.core.validate import MAX_PROFILE_BYTES
from consumer.target.wire import ESCAPE_TABLE as _TABLE
from consumer.target.wire import header_line
from tests.legacy.buffer import Buffer, Row
from tests.legacy.carry import CarryForward, Cell


class Refused(Enum):
    """Why ``Batcher.add`` gave an event no row (it returns a batch id otherwise)."""

    TOO_LARGE = "too_large"  # its row would exceed Target's 64 KB per profile: poison
    # Every value is older than one already sent for its profile (from another
    # partition): nothing to send, nothing to wait for.
    STALE = "stale"


TOO_LARGE = Refused.TOO_LARGE
STALE = Refused.STALE

# Why ``_merge`` rolled an event back (the first two are also the cut triggers).
_BYTES = "bytes"
_ROWS = "rows"
_TOO_LARGE = "too_large"
_STALE = "stale"

# Encoded forms of short, repeated values ("gold", "true", store ids): a dict hit is
# cheaper than re-encoding, and rows share one string object per value.
_VALUE_CACHE_SIZE = 65_536
_NAME_CACHE_SIZE = 100_000
_VALUE_CACHE_MAX_LEN = 64
_VALUES: dict[str, str] = {}


@dataclass(frozen=True, slots=True)
class BatchLimits:
    max_rows: int
    max_bytes: int
    linger_seconds: float


class Batcher:
    """Buffers for both id types. Cut batches collect in ``ready`` until taken."""

    def __init__(self, limits: BatchLimits, carry: CarryForward | None = None) -> None:
        self.limits = limits
        self.carry = carry
        self._next_id = 1
        self._buffers = {t: self._new_buffer(t) for t in IdType}
        self._sources: dict[TopicPartition, int] = {}
        self._names: dict[str, str] = {}
        self.ready: list[BatchFile] = []

    def _new_buffer(self, id_type: IdType) -> Buffer:
        buffer = Buffer(self._next_id, id_type)
        self._next_id += 1
        return buffer

    # -- state

    @property
    def buffered_bytes(self) -> int:
        return sum(b.size for b in self._buffers.values())

    @property
    def buffered_rows(self) -> int:
        return sum(len(b.rows) for b in self._buffers.values())

    def buffered_rows_by_type(self) -> dict[IdType, int]:
        return {t: len(b.rows) for t, b in self._buffers.items()}

    def oldest_started_at(self) -> float | None:
        """Monotonic time of the oldest pending event, None when nothing is buffered."""
        starts = [b.started_at for b in self._buffers.values() if b.rows]
        return min(starts) if starts else None

    # -- the hot path

    def add(self, update: ProfileUpdate, now: float) -> int | Refused:
        """Coalesce one event. Returns the batch id it now belongs to, or why it has no row.

        May cut the open batch of this id type first (into ``ready``) so that no limit is
        ever crossed: the event is merged optimistically and rolled back if the file would
        cross a limit (rare), then merged into a fresh buffer.
        """
        src = self._sources.get(update.tp)
        if src is None:
            src = self._sources[update.tp] = len(self._sources)
        id_enc = update.profile_id.translate(_TABLE)
        buffer = self._buffers[update.id_type]
        outcome = self._merge(buffer, id_enc, update, src, now)
        if outcome is _BYTES or outcome is _ROWS:
            self._cut(buffer, outcome)
            buffer = self._buffers[update.id_type]
            outcome = self._merge(buffer, id_enc, update, src, now)
        if outcome is _TOO_LARGE:
            return TOO_LARGE
        return STALE if outcome is _STALE else buffer.batch_id

    def winning_attributes(self, update: ProfileUpdate) -> dict[str, str]:
        """The attributes of ``update`` (just added) that are the newest value in its row.

        The urgent path sends only these: a stale attribute must not reach Target through
        the single-update API either.
        """
        row = self._buffers[update.id_type].rows.get(update.profile_id.translate(_TABLE))
        src = self._sources.get(update.tp)
        if row is None or src is None:
            return {}
        names = self._names
        out = {}
        for name, value in update.attributes.items():
            cell = row.cells.get(names.get(name) or name.translate(_TABLE))
            if cell is not None and cell[1] == update.occurred_at and cell[2] == src:
                out[name] = value
        return out

    def _merge(
        self, buffer: Buffer, id_enc: str, update: ProfileUpdate, src: int, now: float
    ) -> str | None:
        """Merge ``update`` into its row; None when done, else why it was rolled back."""
        rows = buffer.rows
        columns = buffer.columns
        row = rows.get(id_enc)
        new_row = row is None
        new_columns: list[str] = []
        if row is None:
            if rows and len(rows) >= self.limits.max_rows:
                return _ROWS
            carry = self.carry
            seeded = guard = None
            if carry is not None:
                seeded = carry.seed(buffer.id_type, id_enc)
                guard = carry.guard(buffer.id_type, id_enc)
            row = rows[id_enc] = Row(seeded or {}, 0, guard)
            buffer.body_bytes += len(id_enc) + 1
            if seeded:
                for seeded_name, cell in seeded.items():
                    row.raw_size += cell[3]
                    buffer.body_bytes += len(cell[0])
                    if seeded_name not in columns:
                        columns[seeded_name] = None
                        buffer.header_bytes += 1 + len(seeded_name)
                        new_columns.append(seeded_name)
        cells = row.cells
        guard = row.guard
        raw = row.raw_size
        undo: list[tuple[str, Cell | None]] = []
        names = self._names
        values = _VALUES
        occurred_at = update.occurred_at
        body = 0
        for name, value in update.attributes.items():
            name_enc = names.get(name)
            if name_enc is None:
                name_enc = name.translate(_TABLE)
                if len(names) < _NAME_CACHE_SIZE:  # bounded: names are a producer's choice
                    names[name] = name_enc
            old = cells.get(name_enc)
            stamp = old if old is not None else guard.get(name_enc) if guard else None
            if stamp is not None and stamp[2] != src and stamp[1] > occurred_at:
                continue  # an older event from another partition: the newer value stays
            value_enc = values.get(value)
            if value_enc is None:
                value_enc = value.translate(_TABLE)
                if len(value) <= _VALUE_CACHE_MAX_LEN:
                    if len(values) >= _VALUE_CACHE_SIZE:
                        values.clear()
                    values[value] = value_enc
            size = (len(name) if name.isascii() else len(name.encode("utf-8"))) + (
                len(value) if value.isascii() else len(value.encode("utf-8"))
            )
            if old is None:
                body += len(value_enc)
                raw += size
                if name_enc not in columns:
                    columns[name_enc] = None
                    buffer.header_bytes += 1 + len(name_enc)
                    new_columns.append(name_enc)
            else:
                body += len(value_enc) - len(old[0])
                raw += size - old[3]
            undo.append((name_enc, old))
            cells[name_enc] = (value_enc, occurred_at, src, size)
        if new_row and not cells:
            # Every value was stale and nothing is carried: a row without a value would
            # only make a file Target rejects (no attribute column).
            del rows[id_enc]
            buffer.body_bytes -= len(id_enc) + 1
            return _STALE
        buffer.body_bytes += body
        too_large = raw > MAX_PROFILE_BYTES
        over = not too_large and buffer.size >= self.limits.max_bytes and len(rows) > 1
        if too_large or over:
            # Roll back this event: restore cells, drop new columns, a new row, sizes.
            buffer.body_bytes -= body
            for name_enc, old in reversed(undo):
                if old is None:
                    del cells[name_enc]
                else:
                    cells[name_enc] = old
            for name_enc in new_columns:
                del columns[name_enc]
                buffer.header_bytes -= 1 + len(name_enc)
            if new_row:
                del rows[id_enc]
                buffer.body_bytes -= len(id_enc) + 1 + sum(len(c[0]) for c in cells.values())
            return _TOO_LARGE if too_large else _BYTES
        row.raw_size = raw
        if buffer.event_count == 0:
            buffer.started_at = now
            buffer.oldest_occurred_at = buffer.newest_occurred_at = occurred_at
        elif occurred_at < buffer.oldest_occurred_at:
            buffer.oldest_occurred_at = occurred_at
        elif occurred_at > buffer.newest_occurred_at:
            buffer.newest_occurred_at = occurred_at
        buffer.event_count += 1
        return None

    # -- cutting

    def cut_due(self, now: float) -> None:
        """Cut every buffer whose oldest event has waited ``linger`` seconds."""
        for buffer in list(self._buffers.values()):
            if buffer.rows and now - buffer.started_at >= self.limits.linger_seconds:
                self._cut(buffer, "linger")

    def cut_all(self, trigger: str) -> None:
        """Cut every non-empty buffer (revoke, shutdown)."""
        for buffer in list(self._buffers.values()):
            if buffer.rows:
                self._cut(buffer, trigger)

    def take_ready(self) -> list[BatchFile]:
        ready, self.ready = self.ready, []
        return ready

    def _cut(self, buffer: Buffer, trigger: str) -> None:
        columns = list(buffer.columns)
        parts = [header_line(buffer.id_type, columns)]
        for id_enc, row in buffer.rows.items():
            cells = row.cells
            parts.append(",".join([id_enc, *[cells[c][0] if c in cells else "" for c in columns]]))
            parts.append("\n")
        body = "".join(parts).encode("ascii")
        self.ready.append(
            BatchFile(
                batch_id=buffer.batch_id,
                id_type=buffer.id_type,
                body=body,
                row_count=len(buffer.rows),
                event_count=buffer.event_count,
                trigger=trigger,
                oldest_occurred_at=buffer.oldest_occurred_at,
                newest_occurred_at=buffer.newest_occurred_at,
            )
        )
        if self.carry is not None:
            self.carry.remember(
                buffer.batch_id, buffer.id_type, {i: r.cells for i, r in buffer.rows.items()}
            )
        self._buffers[buffer.id_type] = self._new_buffer(buffer.id_type)
