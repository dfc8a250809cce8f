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
shared with the cut batch's column names, not a copy. Memory is bounded by a number of
profiles; past it the least recently sent profiles are forgotten and counted as evictions.
Pure logic: no I/O, no clock.
"""

from __future__ import annotations

from collections import OrderedDict

from consumer.core.buffer import NO_SOURCE, Row, stamp, stamp_time
from consumer.core.model import IdType

_Key = tuple[IdType, str]
# What a complete batch sent for one attribute: (encoded value, stamp).
Sent = tuple[str, int]


class _Entry:
    __slots__ = ("batch_id", "folded", "names", "older", "pending", "row")

    def __init__(
        self, batch_id: int, names: list[str], row: Row, older: dict[str, Sent] | None
    ) -> None:
        self.batch_id = batch_id
        self.names = names  # the cut batch's encoded column names; row.cols index them
        self.row = row
        # Stamps of values sent in batches already complete; a row does not carry them, so
        # they must outlive later rows or a stale event could undo them.
        self.older = older
        self.folded = False  # once released: is ``row`` in ``older`` yet? (done on first use)
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

    def seed(self, id_type: IdType, id_enc: str) -> tuple[list[str], Row] | None:
        """The row last sent for this profile and its batch's column names, if that batch
        is pending (read-only: rows are immutable once cut)."""
        entry = self._entries.get((id_type, id_enc))
        return (entry.names, entry.row) if entry is not None and entry.pending else None

    def guard(self, id_type: IdType, id_enc: str) -> dict[str, Sent] | None:
        """(encoded value, stamp) by encoded name of what batches already complete sent
        (read-only)."""
        entry = self._entries.get((id_type, id_enc))
        return _older(entry) if entry is not None else None

    def remember(
        self, batch_id: int, id_type: IdType, names: list[str], rows: dict[str, Row]
    ) -> None:
        """Record the rows of a batch that was just cut (they include what they carried)."""
        if self.max_profiles <= 0:
            return
        entries = self._entries
        keys = []
        for id_enc, row in rows.items():
            key = (id_type, id_enc)
            old = entries.get(key)
            if old is not None and old.pending:
                self._pending -= 1
            entries[key] = _Entry(batch_id, names, row, _older(old) if old is not None else None)
            entries.move_to_end(key)
            self._pending += 1
            keys.append(key)
        self._by_batch[batch_id] = keys
        self._evict()

    def _evict(self) -> None:
        entries = self._entries
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
                entry.pending = False  # its row joins the guard on first use (_older)
                self._pending -= 1
                released += 1
        return released

    def last_batch(self, id_type: IdType, id_enc: str) -> int | None:
        """The batch that last sent this profile, None if it is not remembered."""
        entry = self._entries.get((id_type, id_enc))
        return entry.batch_id if entry is not None else None

    def restore_guard(self, id_type: IdType, id_enc: str, occurred_at: dict[str, int]) -> None:
        """Guard a profile with what another process sent for it: encoded attribute name ->
        occurred_at of the newest value known applied (say, read back from a changelog).

        Such stamps have no source partition of ours, so an older event from any partition
        is stale against them. Stamps already known and newer are kept.
        """
        if self.max_profiles <= 0 or not occurred_at:
            return
        # The value is unknown: "" never equals a value that was sent.
        restored = {name: ("", stamp(at, NO_SOURCE)) for name, at in occurred_at.items()}
        key = (id_type, id_enc)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(0, [], Row("", "", (), None), None)
            entry.pending = False
            self._evict()
        older = dict(_older(entry) or {})
        for name, value in restored.items():
            known = older.get(name)
            if known is None or stamp_time(known[1]) < stamp_time(value[1]):
                older[name] = value
        entry.older = older


def _older(entry: _Entry) -> dict[str, Sent] | None:
    """``entry``'s guard: what complete batches sent, its own row folded in once released.

    Folding on first use keeps ``release`` (run on the loop thread for every row of a
    completed batch) to a flag per row; most profiles never come back.
    """
    if not entry.pending and not entry.folded:
        entry.folded = True
        names, row = entry.names, entry.row
        values = row.vals.split(",")[1:]
        sent = {names[ord(c)]: (v, s) for c, v, s in zip(row.cols, values, row.stamps, strict=True)}
        entry.older = {**entry.older, **sent} if entry.older else sent
    return entry.older
