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

Memory is bounded by a number of profiles; past it the least recently sent profiles are
forgotten and counted as evictions. Pure logic: no I/O, no clock.
"""

from __future__ import annotations

from collections import OrderedDict

from consumer.core.model import IdType

# (encoded value, occurred_at ms, source partition id, raw UTF-8 size of name+value)
Cell = tuple[str, int, int, int]
_Key = tuple[IdType, str]


class _Entry:
    __slots__ = ("batch_id", "cells", "older", "pending")

    def __init__(
        self, batch_id: int, cells: dict[str, Cell], older: dict[str, Cell] | None
    ) -> None:
        self.batch_id = batch_id
        self.cells = cells
        # Stamps of values sent in batches already complete; a row does not carry them, so
        # they must outlive later rows or a stale event could undo them.
        self.older = older
        self.pending = True


class CarryForward:
    def __init__(self, max_profiles: int) -> None:
        self.max_profiles = max_profiles
        self._entries: OrderedDict[_Key, _Entry] = OrderedDict()
        self._by_batch: dict[int, list[_Key]] = {}
        self._pending = 0
        self.evictions = 0

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

    def seed(self, id_type: IdType, id_enc: str) -> dict[str, Cell] | None:
        """A copy of the cells last sent for this profile, if a batch holding it is pending."""
        entry = self._entries.get((id_type, id_enc))
        return dict(entry.cells) if entry is not None and entry.pending else None

    def guard(self, id_type: IdType, id_enc: str) -> dict[str, Cell] | None:
        """The cells sent for this profile in batches already complete (read-only)."""
        entry = self._entries.get((id_type, id_enc))
        return entry.older if entry is not None else None

    def remember(self, batch_id: int, id_type: IdType, rows: dict[str, dict[str, Cell]]) -> None:
        """Record the rows of a batch that was just cut (they include what they carried)."""
        if self.max_profiles <= 0:
            return
        entries = self._entries
        keys = []
        for id_enc, cells in rows.items():
            key = (id_type, id_enc)
            old = entries.get(key)
            if old is not None and old.pending:
                self._pending -= 1
            entries[key] = _Entry(batch_id, cells, old.older if old is not None else None)
            entries.move_to_end(key)
            self._pending += 1
            keys.append(key)
        self._by_batch[batch_id] = keys
        while len(entries) > self.max_profiles:
            _, evicted = entries.popitem(last=False)
            if evicted.pending:
                self._pending -= 1
            self.evictions += 1

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
                entry.pending = False
                entry.older = {**entry.older, **entry.cells} if entry.older else entry.cells
                self._pending -= 1
                released += 1
        return released

    def last_batch(self, id_type: IdType, id_enc: str) -> int | None:
        """The batch that last sent this profile, None if it is not remembered."""
        entry = self._entries.get((id_type, id_enc))
        return entry.batch_id if entry is not None else None
