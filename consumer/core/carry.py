"""Carry-forward: what was sent for a profile, so no later row can lose or undo it.

Target documents that a later v2 batch for the same profiles "overrides" an earlier one;
read strictly, a later batch reaching Target before the earlier one was applied may
replace the earlier batch's pending attributes instead of merging with them. So when a
profile gets a new row while an earlier batch holding it is not known complete, the new
row starts from what that earlier row sent (newest value per attribute wins), and
whichever batch Target applies last holds every attribute.

Once a batch is complete its rows are no longer carried, but their timestamps stay as a
*guard*: an event for the same attribute that is older and comes from another partition
(say the POS topic lagging behind the CRM topic) is still recognised as stale and
dropped, so guarantee 2 (docs/guarantees.md) holds across batches too.

What is remembered per profile is the compact row that was cut (consumer/core/buffer.py),
shared with the cut batch's column names, not a copy; once its batch is complete the row is
folded into the guard (consumer/core/held.py, which also knows the profile's size in
Target for the 64 KB rule). Memory is bounded by a number of profiles and by bytes
(``memory_bytes``: encoded names and values kept plus a fixed cost per profile and per
cell, close to what Python holds: docs/deploy.md, "Sizing"). Past a bound the least
recently sent profiles whose batches are complete are forgotten and counted as evictions;
a profile whose batch is still pending is never forgotten (that could lose its attributes
to a later batch): while only those remain, ``over_bound`` is true and the loop pauses
consumption until batches complete. Pure logic: no I/O, no clock.
"""

from __future__ import annotations

from collections import OrderedDict

from consumer.core.buffer import NO_SOURCE, Row, raw_size, stamp, stamp_time, unpack_stamps
from consumer.core.held import Guard, Sent, fold, make_guard
from consumer.core.model import IdType

__all__ = ["CarryForward", "Sent"]

_Key = tuple[IdType, str]
# What one remembered profile and one remembered cell cost beyond their encoded text, in
# bytes of Python objects (measured with tracemalloc: bench/bench_carry_memory.py).
PROFILE_COST = 600
ROW_CELL_COST = 12  # a cell of a carried row: its column character and stamp
GUARD_CELL_COST = 120  # a cell of a guard: a dict slot and a (value, stamp) tuple
_EMPTY = Row("", "", b"", None)


class _Entry:
    __slots__ = ("batch_id", "cost", "folded", "names", "older", "pending", "row")

    def __init__(self, batch_id: int, names: list[str], row: Row, older: Guard | None) -> None:
        self.batch_id = batch_id
        self.names = names  # the cut batch's encoded column names; row.cols index them
        self.row = row
        # Stamps of values sent in batches already complete; a row does not carry them, so
        # they must outlive later rows or a stale event could undo them.
        self.older = older
        self.folded = False  # once released: is ``row`` in ``older`` yet? (done on first use)
        self.pending = True
        # _cost(row, older), inlined: one per row of every batch cut.
        self.cost = PROFILE_COST + len(row.vals) + len(row.cols) * ROW_CELL_COST
        if older:
            self.cost += older.memory + len(older) * GUARD_CELL_COST


class CarryForward:
    def __init__(self, max_profiles: int, max_bytes: int | None = None) -> None:
        self.max_profiles = max_profiles
        self.max_bytes = max_bytes  # None: bounded by profiles only
        self._entries: OrderedDict[_Key, _Entry] = OrderedDict()
        self._by_batch: dict[int, list[_Key]] = {}
        self._pending = 0
        self.evictions = 0
        self.memory_bytes = 0  # what the entries cost (fixed costs and text, see _cost)
        # Over a bound with only pending profiles left to forget: consumption should pause.
        self.over_bound = False
        self._holding = False  # a batch's rows are coming in several calls (``remember``)

    def __len__(self) -> int:
        """Profiles remembered (carried or only guarding)."""
        return len(self._entries)

    def take_evictions(self) -> int:
        """Evictions since the last call (for a counter)."""
        evicted, self.evictions = self.evictions, 0
        return evicted

    @property
    def pending_profiles(self) -> int:
        """Profiles whose last batch is not known complete (their rows are carried)."""
        return self._pending

    def seed(self, id_type: IdType, id_enc: str) -> tuple[list[str], Row] | None:
        """The row last sent for this profile and its batch's column names, if that batch
        is pending (read-only: rows are immutable once cut)."""
        entry = self._entries.get((id_type, id_enc))
        return (entry.names, entry.row) if entry is not None and entry.pending else None

    def guard(self, id_type: IdType, id_enc: str) -> Guard | None:
        """(encoded value, stamp) by encoded name of what batches already complete sent,
        with their size in Target (read-only)."""
        entry = self._entries.get((id_type, id_enc))
        return self._older(entry) if entry is not None else None

    def start(self, id_type: IdType, id_enc: str) -> tuple[Guard | None, Row | None, list[str]]:
        """``guard`` and ``seed`` in one look-up (a new row needs both): (guard, the row last
        sent if its batch is pending, that batch's column names)."""
        entry = self._entries.get((id_type, id_enc))
        if entry is None:
            return None, None, []
        guard = self._older(entry)
        return (guard, entry.row, entry.names) if entry.pending else (guard, None, [])

    def remember(
        self,
        batch_id: int,
        id_type: IdType,
        names: list[str],
        rows: dict[str, Row],
        final: bool = True,
    ) -> None:
        """Record the rows of a batch that was just cut (they include what they carried).

        A batch's rows may come in several calls, all but the last with ``final`` False:
        until the last one nothing is forgotten, so a profile the batch sends again keeps
        its guard until its new row is here."""
        if self.max_profiles <= 0:
            return
        entries = self._entries
        keys = []
        added = 0
        for id_enc, row in rows.items():
            key = (id_type, id_enc)
            old = entries.get(key)
            if old is not None:
                if old.pending:
                    self._pending -= 1
                older = self._older(old)  # may fold: read its cost after
                added -= old.cost
                entry = _Entry(batch_id, names, row, older)
            else:
                entry = _Entry(batch_id, names, row, None)
            entries[key] = entry
            entries.move_to_end(key)
            added += entry.cost
            self._pending += 1
            keys.append(key)
        self.memory_bytes += added
        self._by_batch.setdefault(batch_id, []).extend(keys)
        self._holding = not final
        self._evict()

    def _over(self) -> bool:
        limit = self.max_bytes
        return len(self._entries) > self.max_profiles or (
            limit is not None and self.memory_bytes > limit
        )

    def _evict(self) -> None:
        """Forget the least recently sent profiles whose batches are complete until both
        bounds hold; pending ones are passed over (moved to the recent end)."""
        if self._holding:
            return
        entries = self._entries
        while self._over():
            if len(entries) <= self._pending:
                self.over_bound = True  # only pending profiles left: pause, do not forget
                return
            # Pass over the pending profiles at the front (moved to the recent end, in
            # order) in one go: nothing else changes meanwhile, and there may be thousands.
            passed = []
            for key, entry in entries.items():
                if not entry.pending:
                    break
                passed.append(key)
            else:  # only pending ones after all (the count said otherwise): do not forget
                self.over_bound = True
                return
            for moved in passed:
                entries.move_to_end(moved)
            del entries[key]
            self.memory_bytes -= entry.cost
            self.evictions += 1
        self.over_bound = False

    def release(self, batch_id: int) -> int:
        """Stop carrying what ``batch_id`` sent, unless a later batch sent that profile again.

        Called when the batch is known complete, or will never be applied (rejected,
        cancelled). Its cells stay as a guard against stale events. Returns how many
        profiles stopped being carried.
        """
        released = 0
        for key in self._by_batch.pop(batch_id, ()):
            entry = self._entries.get(key)
            if entry is not None and entry.batch_id == batch_id and entry.pending:
                entry.pending = False  # its row joins the guard on first use (_older)
                self._pending -= 1
                released += 1
        if released and self.over_bound:
            self._evict()
        return released

    def last_batch(self, id_type: IdType, id_enc: str) -> int | None:
        """The batch that last sent this profile, None if it is not remembered."""
        entry = self._entries.get((id_type, id_enc))
        return entry.batch_id if entry is not None else None

    def restore_guard(
        self,
        id_type: IdType,
        id_enc: str,
        occurred_at: dict[str, int],
        sizes: dict[str, int] | None = None,
    ) -> None:
        """Guard a profile with what another process sent for it: encoded attribute name ->
        occurred_at of the newest value known applied (say, read back from a changelog),
        and, when known, the UTF-8 size of that value (the 64 KB rule).

        Such stamps have no source partition of ours, so an older event from any partition
        is stale against them. Stamps already known and newer are kept.
        """
        if self.max_profiles <= 0 or not occurred_at:
            return
        key = (id_type, id_enc)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(0, [], _EMPTY, None)
            entry.pending = False
            self.memory_bytes += entry.cost
        guard = self._older(entry)
        cells = dict(guard or {})
        unknown = dict(guard.unknown or {}) if guard else {}
        for name, at in occurred_at.items():
            known = cells.get(name)
            if known is None or stamp_time(known[1]) < at:
                # The value is unknown: "" never equals a value that was sent.
                cells[name] = ("", stamp(at, NO_SOURCE))
                unknown[name] = raw_size(name) + (sizes or {}).get(name, 0)
        self._set_older(entry, make_guard(cells, unknown))
        self._evict()

    def _older(self, entry: _Entry) -> Guard | None:
        """``entry``'s guard: what complete batches sent, its own row folded in once released.

        Folding on first use keeps ``release`` (run on the loop thread for every row of a
        completed batch) to a flag per row; most profiles never come back. The folded row
        is dropped: the guard holds its values.
        """
        if not entry.pending and not entry.folded:
            entry.folded = True
            names, row = entry.names, entry.row
            values = row.vals.split(",")[1:]
            sent = {
                names[ord(c)]: (v, s)
                for c, v, s in zip(row.cols, values, unpack_stamps(row.stamps), strict=True)
            }
            entry.names, entry.row = [], _EMPTY
            self._set_older(entry, fold(entry.older, sent))
        return entry.older

    def _set_older(self, entry: _Entry, guard: Guard) -> None:
        entry.older = guard
        cost = _cost(entry.row, guard)
        self.memory_bytes += cost - entry.cost
        entry.cost = cost


def _cost(row: Row, older: Guard | None) -> int:
    """What one entry costs: its row's encoded values (the names are the batch's) and its
    guard's names and values, plus the fixed costs."""
    cost = PROFILE_COST + len(row.vals) + len(row.cols) * ROW_CELL_COST
    if older:
        cost += older.memory + len(older) * GUARD_CELL_COST
    return cost
