"""Carry-forward: what was sent for a profile in batches not yet known complete.

Target documents that a later v2 batch for the same profiles "overrides" an earlier one;
read strictly, a later batch reaching Target before the earlier one was applied may
replace the earlier batch's pending attributes instead of merging with them. So when a
profile gets a new row while an earlier batch holding it is not known complete, the new
row starts from what that earlier row sent (newest value per attribute wins), and
whichever batch Target applies last holds every attribute.

Memory is bounded by a number of profiles; past it the least recently sent profiles are
forgotten and counted as evictions (their next row then carries only its own attributes).
Pure logic: no I/O, no clock.
"""

from __future__ import annotations

from collections import OrderedDict

from consumer.model import IdType

# (encoded value, occurred_at ms, source partition id, raw UTF-8 size of name+value)
Cell = tuple[str, int, int, int]
_Key = tuple[IdType, str]


class CarryForward:
    def __init__(self, max_profiles: int) -> None:
        self.max_profiles = max_profiles
        self._entries: OrderedDict[_Key, tuple[int, dict[str, Cell]]] = OrderedDict()
        self._by_batch: dict[int, list[_Key]] = {}
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def seed(self, id_type: IdType, id_enc: str) -> dict[str, Cell] | None:
        """A copy of the cells last sent for this profile, if a batch holding it is pending."""
        entry = self._entries.get((id_type, id_enc))
        return dict(entry[1]) if entry is not None else None

    def remember(self, batch_id: int, id_type: IdType, rows: dict[str, dict[str, Cell]]) -> None:
        """Record the rows of a batch that was just cut (they include what they carried)."""
        if self.max_profiles <= 0:
            return
        entries = self._entries
        keys = []
        for id_enc, cells in rows.items():
            key = (id_type, id_enc)
            entries[key] = (batch_id, cells)
            entries.move_to_end(key)
            keys.append(key)
        self._by_batch[batch_id] = keys
        while len(entries) > self.max_profiles:
            entries.popitem(last=False)
            self.evictions += 1

    def release(self, batch_id: int) -> int:
        """Forget what ``batch_id`` sent, unless a later batch sent that profile again.

        Called when the batch is known complete, or will never be applied (rejected,
        cancelled). Returns how many profiles were forgotten.
        """
        released = 0
        for key in self._by_batch.pop(batch_id, ()):
            entry = self._entries.get(key)
            if entry is not None and entry[0] == batch_id:
                del self._entries[key]
                released += 1
        return released

    def pending_batches(self) -> int:
        return len(self._by_batch)
