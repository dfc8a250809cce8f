"""Micro-batching: coalesce events into one row per profile, cut files before any limit.

One open buffer per id type (a batch file holds one id type). Within a buffer each profile
has one row; each attribute keeps the newest value (guarantee 2 in docs/guarantees.md): an
event replaces a cell when it comes from the same partition as the cell (a later offset,
since partitions are read in order) or when its ``occurred_at`` is not older. Rows are kept
compact and already percent-encoded (consumer/core/buffer.py), so memory per row is close
to its size in the file and cutting is mostly a concatenation.

The encoded file size is tracked incrementally:

    size = header + sum(len(id) + 1 newline) + rows * columns (commas) + sum(len(cell))

A cut happens *before* an event would make a file reach ``max_bytes`` or exceed
``max_rows``; an idle buffer is cut when its oldest event is ``linger`` seconds old.

A cut (trigger ``width``) also happens before a new row or column would make the file's
empty cells (``rows * columns - cells``, a comma each) exceed ``max_padding_ratio`` times
the rest of the file, so no file is more than ``1 + max_padding_ratio`` times its data
however wide one event is; a profile in both files is carried forward as after any cut.

A cut only swaps the open buffer for a new one. Writing the cut buffer's file and handing
its rows to carry-forward is done in steps of ``CUT_STEP_ROWS`` rows (``take_ready`` with
a budget), so that the loop's thread, which also reads urgent events, never spends the
time of a whole 500,000-row file in one go (docs/performance.md, "Urgent under load").
Until a cut is finished its buffer is still looked at first when a profile gets a new row
(carry-forward), so nothing depends on when the steps run.

Pure logic: plain values and a monotonic time passed in, no I/O.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from itertools import islice

from consumer.core.buffer import (
    COUNT,
    MAX_NARROW,
    MAX_OCCURRED_AT,
    NO_SOURCE,
    ONE_ENTRY,
    SOURCE_BITS,
    SOURCE_MASK,
    Buffer,
    Row,
    cell_stamp,
    close_stamps,
    drop_unused,
    insert_sorted,
    open_stamps,
    stamp,
)
from consumer.core.carry import CarryForward, Sent
from consumer.core.held import Guard, held_besides
from consumer.core.model import BatchFile, IdType, ProfileUpdate, TopicPartition
from consumer.core.validate import MAX_PROFILE_BYTES
from consumer.target.wire import ESCAPE_TABLE as _TABLE
from consumer.target.wire import header_line


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
_WIDTH = "width"

# Empty cells a file may hold per byte of data (docs/performance.md, "Wide events").
MAX_PADDING_RATIO = 3.0

# Encoded forms of short, repeated values ("gold", "true", store ids): a dict hit is
# cheaper than re-encoding, and rows share one string object per value.
_VALUE_CACHE_SIZE = 4_096
_NAME_CACHE_SIZE = 100_000
_VALUE_CACHE_MAX_LEN = 64
_VALUES: dict[str, str] = {}

# Rows of a cut buffer written to its file, or handed to carry-forward, per step.
CUT_STEP_ROWS = 500


@dataclass(frozen=True, slots=True)
class BatchLimits:
    max_rows: int
    max_bytes: int
    linger_seconds: float
    max_padding_ratio: float = MAX_PADDING_RATIO


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
        # Buffers cut and not yet finished (oldest first), each with its remaining steps.
        self._cutting: deque[tuple[Buffer, Iterator[int]]] = deque()
        # For the last TOO_LARGE: (bytes the profile would hold, of which already in Target).
        self.refused_size = (0, 0)

    def _new_buffer(self, id_type: IdType) -> Buffer:
        buffer = Buffer(self._next_id, id_type)
        self._next_id += 1
        return buffer

    # -- state

    @property
    def open_bytes(self) -> int:
        """Encoded bytes of the open buffers (what the next cuts will write)."""
        return sum(b.size for b in self._buffers.values())

    @property
    def buffered_bytes(self) -> int:
        """Encoded bytes held: the open buffers and those cut but not finished."""
        return self.open_bytes + sum(b.size for b, _ in self._cutting)

    @property
    def buffered_rows(self) -> int:
        return sum(len(b.rows) for b in self._held())

    @property
    def cutting(self) -> int:
        """Cuts not finished yet (``take_ready`` finishes them)."""
        return len(self._cutting)

    def buffered_rows_by_type(self) -> dict[IdType, int]:
        rows = dict.fromkeys(IdType, 0)
        for b in self._held():
            rows[b.id_type] += len(b.rows)
        return rows

    def oldest_started_at(self) -> float | None:
        """Monotonic time of the oldest pending event, None when nothing is buffered."""
        starts = [b.started_at for b in self._held() if b.rows]
        return min(starts) if starts else None

    def _held(self) -> list[Buffer]:
        return [*self._buffers.values(), *(b for b, _ in self._cutting)]

    def buffered_names(self, id_type: IdType, id_enc: str) -> set[str]:
        """Encoded names of the attributes the open buffer holds for this profile."""
        buffer = self._buffers[id_type]
        row = buffer.rows.get(id_enc)
        return {buffer.names[ord(c)] for c in row.cols} if row is not None else set()

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
            if src >= NO_SOURCE:  # never in practice: a stamp's source field is full
                raise OverflowError(f"more than {NO_SOURCE - 1} partitions in one process")
        if update.occurred_at > MAX_OCCURRED_AT:  # the intake refuses these long before
            raise OverflowError(
                f"occurred_at {update.occurred_at} is past {MAX_OCCURRED_AT}, the last"
                " millisecond a 64-bit stamp holds (the year 3084)"
            )
        id_enc = update.profile_id.translate(_TABLE)
        buffer = self._buffers[update.id_type]
        outcome = self._merge(buffer, id_enc, update, src, now)
        if outcome is None:  # merged: the common case
            return buffer.batch_id
        if outcome is _BYTES or outcome is _ROWS or outcome is _WIDTH:
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
        buffer = self._buffers[update.id_type]
        row = buffer.rows.get(update.profile_id.translate(_TABLE))
        src = self._sources.get(update.tp)
        if row is None or src is None:
            return {}
        mine = stamp(update.occurred_at, src).to_bytes(8, "big")
        out = {}
        for name, value in update.attributes.items():
            char = buffer.slots.get(name)
            pos = row.cols.find(char) if char is not None else -1
            if pos >= 0 and cell_stamp(row.stamps, pos) == mine:
                out[name] = value
        return out

    def _merge(
        self, buffer: Buffer, id_enc: str, update: ProfileUpdate, src: int, now: float
    ) -> str | None:
        """Merge ``update`` into its row; None when done, else why it was rolled back.

        The row's new state is built aside and stored only when no limit is crossed, so a
        roll-back only drops the columns this event added.
        """
        rows = buffer.rows
        row = rows.get(id_enc)
        columns_before = len(buffer.names)
        if row is None:
            if rows and len(rows) >= self.limits.max_rows:
                return _ROWS
            cols, joined, packed, guard = self._start_row(buffer, id_enc)
            old_body = -len(id_enc) - 1  # a new row adds its id and newline
            old_cells = 0
        else:
            cols, joined, packed, guard = row.cols, row.vals, row.stamps, row.guard
            old_body = len(joined) - len(cols)
            old_cells = len(cols)
        vals = joined.split(",")  # vals[0] is "": value i is vals[i + 1]
        # The cells' stamps (consumer/core/buffer.py): an index into ``table`` per cell; this
        # event's stamp becomes entry ``k`` if any cell takes it.
        k = packed[-1] if packed else 0
        if k:  # open_stamps, inlined for the common (narrow) case
            index: bytearray | list[int] = bytearray(packed[8 * k : -1])
            table = packed[: 8 * k]
        elif not packed:
            index, table = bytearray(), b""
        else:
            index, table = open_stamps(packed, len(cols))  # the wide form
            k = len(table) >> 3
        slots = buffer.slots
        values = _VALUES
        occurred_at = update.occurred_at
        mine = occurred_at << SOURCE_BITS | src  # stamp(occurred_at, src), inlined
        mine_b = mine.to_bytes(8, "big")
        # The table is in order: only when its newest stamp is newer than this event can a
        # cell hold a newer value (out of order: rare), so only then are cells compared.
        newer = k and table[-8:] > mine_b
        changed = replaced = False
        for name, value in update.attributes.items():
            char = slots.get(name) or self._column(buffer, name, add=False)
            pos = cols.find(char) if char is not None else -1
            if pos >= 0:
                if newer:
                    at = index[pos] << 3
                    old = int.from_bytes(table[at : at + 8], "big")
                    if old > mine and old & SOURCE_MASK != src and old >> SOURCE_BITS > occurred_at:
                        continue  # an older event from another partition: the newer value stays
            elif guard:
                guarded = self._guarded(guard, name)
                if (
                    guarded is not None
                    and guarded > mine
                    and guarded & SOURCE_MASK != src
                    and guarded >> SOURCE_BITS > occurred_at
                ):
                    continue
            value_enc = values.get(value)
            if value_enc is None:
                value_enc = value.translate(_TABLE)
                if len(value) <= _VALUE_CACHE_MAX_LEN:
                    if len(values) >= _VALUE_CACHE_SIZE:
                        values.clear()
                    values[value] = value_enc
            if pos >= 0:
                vals[pos + 1] = value_enc
                index[pos] = k
                replaced = True
            else:
                cols += char or self._column(buffer, name)  # type: ignore[operator]
                vals.append(value_enc)
                index.append(k)
            changed = True
        if row is None and not cols:
            # Every value was stale and nothing is carried: a row without a value would
            # only make a file Target rejects (no attribute column).
            return _STALE
        if changed or row is None:
            joined = ",".join(vals)
            body = len(joined) - len(cols) - old_body
            # Encoded text is at least as long as its UTF-8: count exactly only when needed.
            # What complete batches already stored counts too (the cap is on the profile).
            too_large = (
                len(joined) + len(cols) * buffer.widest_name + (guard.held if guard else 0)
                > MAX_PROFILE_BYTES
                and self._profile_size(buffer, cols, joined, guard) > MAX_PROFILE_BYTES
            )
            count = len(rows) + (row is None)
            size = buffer.header_bytes + buffer.body_bytes + body + count * len(buffer.names)
            cells = buffer.cells + len(cols) - old_cells
            refused = _TOO_LARGE if too_large else None
            if refused is None and count > 1:
                if size >= self.limits.max_bytes:
                    refused = _BYTES
                elif row is None or len(buffer.names) > columns_before:
                    # Padding grows only with a new row or column; the rest is data.
                    padding = count * len(buffer.names) - cells
                    if padding > self.limits.max_padding_ratio * (size - padding):
                        refused = _WIDTH
            if refused is not None:
                buffer.drop_columns(len(buffer.names) - columns_before)
                return refused
            stamps = packed
            if changed and index.count(k) == len(index) <= MAX_NARROW:  # all this event's
                stamps = mine_b + ONE_ENTRY[len(index)]
            elif changed:
                if newer:  # the old entries are 0..k but one, wherever this one went
                    index, table = insert_sorted(index, table, mine_b)
                    old_entries = k + 1
                else:
                    table += mine_b
                    old_entries = k
                # Every entry is in use before an event (kept so here): only an entry whose
                # every cell this event replaced can fall out of use.
                if not replaced:
                    pass
                elif type(index) is bytearray:
                    for i in range(old_entries):
                        if i not in index:
                            index, table = drop_unused(index, table, old_entries)
                            break
                else:  # a wide row: one pass
                    index, table = drop_unused(index, table, old_entries)
                k = len(table) >> 3
                if k <= MAX_NARROW and type(index) is bytearray:  # close_stamps, inlined
                    stamps = b"".join((table, index, COUNT[k]))
                else:
                    stamps = close_stamps(index, table)
            if row is None:
                rows[id_enc] = Row(buffer.shape(cols), joined, stamps, guard)
            else:
                if cols is not row.cols:  # a column was added
                    cols = buffer.shape(cols)
                row.cols, row.vals, row.stamps = cols, joined, stamps
            buffer.body_bytes += body
            buffer.cells = cells
        if buffer.event_count == 0:
            buffer.started_at = now
            buffer.oldest_occurred_at = buffer.newest_occurred_at = occurred_at
        elif occurred_at < buffer.oldest_occurred_at:
            buffer.oldest_occurred_at = occurred_at
        elif occurred_at > buffer.newest_occurred_at:
            buffer.newest_occurred_at = occurred_at
        buffer.event_count += 1
        return None

    def _start_row(self, buffer: Buffer, id_enc: str) -> tuple[str, str, bytes, Guard | None]:
        """A new row's cells: what a pending batch sent for the profile (carry-forward)."""
        carry = self.carry
        if carry is None:
            return "", "", b"", None
        guard, sent, names = carry.start(buffer.id_type, id_enc)
        seed = self._seed(buffer.id_type, id_enc) if self._cutting else None
        if seed is not None:
            names, sent = seed
        elif sent is None:
            return "", "", b"", guard
        columns = buffer.columns
        cols = []
        for char in sent.cols:
            name_enc = names[ord(char)]
            mine = columns.get(name_enc)
            if mine is None:
                mine = buffer.add_column(name_enc)
            cols.append(mine)
        return "".join(cols), sent.vals, sent.stamps, guard

    def _seed(self, id_type: IdType, id_enc: str) -> tuple[list[str], Row] | None:
        """The profile's row in the newest unfinished cut: what carry-forward will hold for
        it once the cut is finished (its guard is already the carry's)."""
        assert self.carry is not None
        if self.carry.max_profiles <= 0:
            return None
        for cut, _ in reversed(self._cutting):
            if cut.id_type is id_type:
                row = cut.rows.get(id_enc)
                if row is not None:
                    return cut.names, row
        return None

    def _profile_size(self, buffer: Buffer, cols: str, joined: str, guard: Guard | None) -> int:
        """The profile's size in Target once this row is applied, as far as we know: the
        row's names and values, and what complete batches sent that it does not replace.
        Kept in ``refused_size`` for the dead letter of an event it refuses."""
        row = buffer.raw_size(cols, joined)
        held = held_besides(guard, [buffer.names[ord(c)] for c in cols])
        self.refused_size = (row + held, held)
        return row + held

    def _guarded(self, guard: dict[str, Sent], name: str) -> int | None:
        sent = guard.get(self._names.get(name) or name.translate(_TABLE))
        return sent[1] if sent is not None else None

    def _column(self, buffer: Buffer, name: str, add: bool = True) -> str | None:
        """The cell character of attribute ``name`` in ``buffer``; its column is added
        when missing if ``add``, else None is returned."""
        name_enc = self._names.get(name)
        if name_enc is None:
            name_enc = name.translate(_TABLE)
            if len(self._names) < _NAME_CACHE_SIZE:  # bounded: names are a producer's choice
                self._names[name] = name_enc
        char = buffer.columns.get(name_enc)
        if char is None:
            if not add:
                return None
            char = buffer.add_column(name_enc)
        buffer.slots[name] = char
        return char

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

    def take_ready(self, rows: int | None = None) -> list[BatchFile]:
        """The batches whose cut is finished, after up to ``rows`` rows of cutting work
        (None: every cut is finished first)."""
        cutting = self._cutting
        while cutting:
            for done in cutting[0][1]:
                if rows is not None:
                    rows -= done
                    if rows <= 0:
                        break
            else:
                cutting.popleft()
                continue
            break
        ready, self.ready = self.ready, []
        return ready

    def _cut(self, buffer: Buffer, trigger: str) -> None:
        self._buffers[buffer.id_type] = self._new_buffer(buffer.id_type)
        self._cutting.append((buffer, self._cut_steps(buffer, trigger)))

    def _cut_steps(self, buffer: Buffer, trigger: str) -> Iterator[int]:
        """Write ``buffer``'s file and hand its rows to carry-forward, yielding after each
        step the rows it took; the finished batch is then in ``ready``."""
        line = _lines(buffer)
        parts = [header_line(buffer.id_type, buffer.names)]
        rows = iter(buffer.rows.items())
        while step := list(islice(rows, CUT_STEP_ROWS)):
            parts.extend([line(id_enc, row) for id_enc, row in step])
            yield len(step)
        body = "".join(parts).encode("ascii")
        yield len(buffer.rows) // 20  # the join: a fraction of the rows' work
        carry = self.carry
        if carry is not None:
            rows = iter(buffer.rows.items())
            while step_rows := dict(islice(rows, CUT_STEP_ROWS)):
                carry.remember(
                    buffer.batch_id, buffer.id_type, buffer.names, step_rows, final=False
                )
                yield len(step_rows)
            carry.remember(buffer.batch_id, buffer.id_type, buffer.names, {})
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


# Characters of row templates one cut keeps at most (shapes times columns): past it, rows
# of further shapes are padded one by one (``Buffer.line``).
_TEMPLATE_CHARS = 1_000_000


def _lines(buffer: Buffer) -> Callable[[str, Row], str]:
    """``buffer.line`` plus its newline; a row shape (a row without every column) met again
    is padded by a ``str.format`` template of its values in column order, worked out once
    (encoded values hold no brace, and format does not read its arguments)."""
    order, width = buffer.order, len(buffer.names)
    templates: dict[str, str | None] = {}  # None: a shape met once
    budget = _TEMPLATE_CHARS

    def line(id_enc: str, row: Row) -> str:
        nonlocal budget
        cols = row.cols
        if cols == order:  # every column, in order: the common case
            return id_enc + row.vals + "\n"
        template = templates.get(cols, "")
        if template:
            return id_enc + template.format(*row.vals.split(","))
        if template is None and budget >= 4 * width:
            cells = [","] * width
            for i, char in enumerate(cols, 1):  # vals.split(",")[i] is the cell's
                cells[ord(char)] = f",{{{i}}}"
            cells.append("\n")
            template = templates[cols] = "".join(cells)
            budget -= len(template)
            return id_enc + template.format(*row.vals.split(","))
        if budget > 0:
            templates[cols] = None
            budget -= len(cols) + 1
        return buffer.line(id_enc, row) + "\n"

    return line
