"""The open batch of one id type and its rows, kept compact (consumer/core/batcher.py).

A buffered profile costs a few hundred bytes, close to its size in the file, because a row
is three immutable objects instead of a dict of cells:

- ``cols``: one character per cell, ``chr(i)`` for the buffer's column ``i``;
- ``vals``: the cells' values, already percent-encoded, each after a comma
  (``",gold,Z%C3%BCrich"``): an encoded value never holds a raw comma;
- ``stamps``: per cell, when its value happened and where it came from
  (``stamp(occurred_at, source)``, 64 bits), in one ``bytes``: each distinct stamp once
  and a one-byte index per cell (layout below); a row's cells come from a few events.

Plain slotted state, no logic beyond sizes and stamps.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from consumer.core.model import IdType
from consumer.target.wire import header_line

if TYPE_CHECKING:
    from consumer.core.held import Guard

# A stamp packs (occurred_at ms, source partition id) in 64 bits: compare the time with
# ``>>``, the source with ``&``. Rows keep stamps as 8 big-endian bytes, so comparing two
# packed stamps as bytes compares them as numbers. 19 bits of source leave 45 of time:
# occurred_at below 2**45 ms (the year 3084; the intake refuses events more than a year
# ahead); up to 524,286 partitions per process (a clear error beyond).
SOURCE_BITS = 19
SOURCE_MASK = (1 << SOURCE_BITS) - 1
STAMP_BITS = 64
MAX_OCCURRED_AT = (1 << (STAMP_BITS - SOURCE_BITS)) - 1
# The source of stamps restored from outside this process (no partition of ours): it never
# equals a real source, so such a stamp guards against older events from every partition.
NO_SOURCE = SOURCE_MASK

# A row's ``stamps`` (``b""`` for a row without cells): the table of its distinct stamps
# (8 bytes each, table index i at 8 * i), in ascending order so that the last one is the
# newest (an event at least as new needs no comparison per cell), then one index per cell
# in ``cols`` order, then the number of table entries k in one byte (1-255). A row of more
# than 255 distinct stamps (hundreds of events of one profile, each leaving a different
# attribute) has 2-byte indexes and ends with k in 2 bytes and a zero byte instead.
MAX_NARROW = 255


# How many distinct row shapes a buffer shares (beyond that, rows keep their own).
MAX_SHAPES = 4_096


def stamp(occurred_at: int, source: int) -> int:
    return occurred_at << SOURCE_BITS | source


def stamp_time(value: int) -> int:
    return value >> SOURCE_BITS


def pack(value: int) -> bytes:
    """One stamp as a row stores it."""
    return value.to_bytes(8, "big")


# The last byte of a narrow row's stamps, by table size.
COUNT = tuple(bytes((k,)) for k in range(MAX_NARROW + 1))
# What follows the one entry of a row of n cells all from one event, by n.
ONE_ENTRY = tuple(bytes(n) + COUNT[1] for n in range(MAX_NARROW + 1))


def open_stamps(stamps: bytes, cells: int) -> tuple[bytearray | list[int], bytes]:
    """(index per cell, table) of a row's ``stamps``, to be changed and ``close_stamps``-ed.
    The batcher inlines the narrow case."""
    if not stamps:
        return bytearray(), b""
    k = stamps[-1]
    if k:
        return bytearray(stamps[8 * k : -1]), stamps[: 8 * k]
    k = int.from_bytes(stamps[-3:-1], "big")
    return list(struct.unpack(f">{cells}H", stamps[8 * k : -3])), stamps[: 8 * k]


def close_stamps(index: bytearray | list[int], table: bytes) -> bytes:
    """A row's ``stamps`` from its index per cell and table (every entry in use)."""
    k = len(table) >> 3
    if k <= MAX_NARROW:  # indexes of a wide row fit a byte again once it has 255 entries
        return b"".join((table, bytes(index), COUNT[k])) if k else b""
    wide = struct.pack(f">{len(index)}H", *index)
    return b"".join((table, wide, k.to_bytes(2, "big"), b"\x00"))


# _DROP[i] renumbers a narrow index once table entry i is gone (entries after it move down).
_DROP = tuple(bytes(x if x <= i else x - 1 for x in range(256)) for i in range(256))


def drop_unused(
    index: bytearray | list[int], table: bytes, old: int
) -> tuple[bytearray | list[int], bytes]:
    """Remove the first ``old`` table entries no cell uses any more (the order is kept);
    returns the index, renumbered, and the table."""
    if not isinstance(index, bytearray):  # a wide row: one pass, not one per entry
        used = set(index)
        keep = [i for i in range(len(table) >> 3) if i >= old or i in used]
        if len(keep) == len(table) >> 3:
            return index, table
        renumber = {i: n for n, i in enumerate(keep)}
        return [renumber[x] for x in index], b"".join(table[8 * i : 8 * i + 8] for i in keep)
    for i in range(old - 1, -1, -1):
        if i not in index:
            table = table[: 8 * i] + table[8 * i + 8 :]
            index = index.translate(_DROP[i])
    return index, table


def insert_sorted(
    index: bytearray | list[int], table: bytes, new: bytes
) -> tuple[bytearray | list[int], bytes]:
    """``table`` with stamp ``new`` in its place, which ``index`` calls entry ``len(table) // 8``
    (an event older than some of the row's stamps that still set a cell)."""
    k = len(table) >> 3
    j = 0
    while j < k and table[8 * j : 8 * j + 8] <= new:
        j += 1
    if isinstance(index, bytearray):
        moves = _INSERT.get((j, k))
        if moves is None:
            moves = _insert_moves(j, k)
        index = index.translate(moves)
    else:
        index = [x + 1 if j <= x < k else j if x == k else x for x in index]
    return index, table[: 8 * j] + new + table[8 * j :]


def _insert_moves(j: int, k: int) -> bytes:
    """The translation of a narrow index once entry ``k`` moves to ``j`` (``j..k-1`` move up)."""
    moves = bytes(x + 1 if j <= x < k else j if x == k else x for x in range(256))
    if k < _INSERT_CACHED:
        _INSERT[(j, k)] = moves
    return moves


# insert_sorted's translations for tables of fewer than _INSERT_CACHED entries (the usual
# rows: a few events each): building one costs more than the rest of an event's merge.
_INSERT_CACHED = 32
_INSERT: dict[tuple[int, int], bytes] = {}


def cell_stamp(stamps: bytes, pos: int) -> bytes:
    """The packed stamp of cell ``pos`` of a row's ``stamps``."""
    k = stamps[-1]
    if k:
        i = stamps[8 * k + pos]
    else:
        k = int.from_bytes(stamps[-3:-1], "big")
        i = int.from_bytes(stamps[8 * k + 2 * pos : 8 * k + 2 * pos + 2], "big")
    return stamps[8 * i : 8 * i + 8]


def pack_stamps(values: list[int]) -> bytes:
    """A row's ``stamps`` from its stamps as ints, one per cell (``unpack_stamps`` undone)."""
    entries = {v: i for i, v in enumerate(sorted(set(values)))}
    index = [entries[v] for v in values]
    table = b"".join(pack(v) for v in entries)
    return close_stamps(bytearray(index) if len(entries) <= MAX_NARROW else index, table)


# Readers of the table of k stamps, by k (a narrow row's tables).
_TABLES = tuple(struct.Struct(f">{k}Q") for k in range(MAX_NARROW + 1))


def unpack_stamps(stamps: bytes) -> list[int]:
    """A row's stamps as ints, one per cell in ``cols`` order."""
    if not stamps:
        return []
    k = stamps[-1]
    if k == 1:  # one event's cells
        return [int.from_bytes(stamps[:8], "big")] * (len(stamps) - 9)
    if k:
        table = _TABLES[k].unpack_from(stamps)
        return [table[i] for i in stamps[8 * k : -1]]
    k = int.from_bytes(stamps[-3:-1], "big")
    table = struct.unpack_from(f">{k}Q", stamps)
    wide = stamps[8 * k : -3]
    return [table[i] for i in struct.unpack(f">{len(wide) // 2}H", wide)]


def raw_size(encoded: str) -> int:
    """UTF-8 bytes behind percent-encoded text: one character per safe byte, %XX per other."""
    return len(encoded) - 2 * encoded.count("%")


class Row:
    __slots__ = ("cols", "guard", "stamps", "vals")

    def __init__(
        self,
        cols: str,
        vals: str,
        stamps: bytes,
        guard: Guard | None,
    ) -> None:
        self.cols = cols
        self.vals = vals
        self.stamps = stamps
        # (value, stamp) by encoded name of what batches already complete sent, with their
        # size in Target (consumer/core/held.py).
        self.guard = guard


class Buffer:
    """The open batch of one id type."""

    __slots__ = (
        "batch_id", "body_bytes", "cells", "columns", "event_count", "header_bytes", "id_type",
        "name_bytes", "names", "newest_occurred_at", "oldest_occurred_at", "order", "rows",
        "shapes", "slots", "started_at", "widest_name",
    )  # fmt: skip

    def __init__(self, batch_id: int, id_type: IdType) -> None:
        self.batch_id = batch_id
        self.id_type = id_type
        self.rows: dict[str, Row] = {}
        self.names: list[str] = []  # encoded column names, in header order
        self.columns: dict[str, str] = {}  # encoded name -> its cell character
        self.slots: dict[str, str] = {}  # attribute name (as in events) -> cell character
        self.name_bytes: list[int] = []  # UTF-8 size of each column's name (64 KB rule)
        self.widest_name = 0  # longest encoded column name
        self.order = ""  # every cell character in column order: a row that has them all
        # One ``cols`` string per distinct set of cells in order, shared by the rows that
        # have it (most rows repeat a few shapes): ~60 bytes less per row.
        self.shapes: dict[str, str] = {}
        self.header_bytes = len(header_line(id_type, []))
        self.body_bytes = 0  # ids, newlines and cell values; commas are rows * columns
        self.cells = 0  # cells that hold a value: the other rows * columns - cells are padding
        self.event_count = 0
        self.started_at = 0.0
        self.oldest_occurred_at = 0
        self.newest_occurred_at = 0

    @property
    def size(self) -> int:
        return self.header_bytes + self.body_bytes + len(self.rows) * len(self.names)

    def add_column(self, name_enc: str) -> str:
        char = chr(len(self.names))
        self.names.append(name_enc)
        self.columns[name_enc] = char
        self.name_bytes.append(raw_size(name_enc))
        self.widest_name = max(self.widest_name, len(name_enc))
        self.order += char
        self.header_bytes += 1 + len(name_enc)
        return char

    def shape(self, cols: str) -> str:
        """The shared string equal to ``cols`` (bounded: a few thousand shapes at most)."""
        shared = self.shapes.get(cols)
        if shared is None:
            if len(self.shapes) >= MAX_SHAPES:
                return cols
            shared = self.shapes[cols] = cols
        return shared

    def drop_columns(self, count: int) -> None:
        """Undo the last ``count`` ``add_column`` calls (an event rolled back)."""
        for _ in range(count):
            name_enc = self.names.pop()
            del self.columns[name_enc]
            self.name_bytes.pop()
            self.header_bytes -= 1 + len(name_enc)
        self.order = self.order[: len(self.names)]
        self.slots = {n: c for n, c in self.slots.items() if ord(c) < len(self.names)}

    def line(self, id_enc: str, row: Row) -> str:
        """The row as it is written to the file, without its newline."""
        if row.cols == self.order:  # every column, in order: the common case
            return id_enc + row.vals
        cells = [""] * len(self.names)
        for char, value in zip(row.cols, row.vals.split(",")[1:], strict=True):
            cells[ord(char)] = value
        return ",".join([id_enc, *cells])

    def raw_size(self, cols: str, vals: str) -> int:
        """UTF-8 bytes of a row's names and values (Target's 64 KB per profile)."""
        values = raw_size(vals) - len(cols)  # less the commas
        return values + sum(self.name_bytes[ord(c)] for c in cols)
