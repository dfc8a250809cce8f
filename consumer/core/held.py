"""What Target holds for a profile, as far as this service knows: the guard of carry-forward
with the sizes it needs (issue 17, items 5 and 7).

Target caps all external data of one profile at 64 KB (names and values, UTF-8; see
``consumer.core.validate.MAX_PROFILE_BYTES``); an update that would cross the cap fails as
a whole and shows up only as ``failedUpdates`` in the batch status. A row that fits on its
own can still cross it when earlier batches already stored attributes. So the guard (what
batches already complete sent, ``{encoded name: (encoded value, stamp)}``) also counts:

- ``held``: the UTF-8 bytes of the names and values it stands for, the profile's size in
  Target as far as we know (values sent by other systems, or before this memory, are not
  known: docs/guarantees.md says so);
- ``memory``: the encoded characters of names and values it keeps, for the carry-forward's
  byte bound.

A guard restored from the owner's changelog knows stamps and sizes but not values: such a
cell holds ``""`` (never a value that was sent) and its held bytes are in ``unknown``.
Guards are immutable once built (rows share them); a new one is built to change one.
Pure logic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from consumer.core.buffer import raw_size

# What a complete batch sent for one attribute: (encoded value, stamp).
Sent = tuple[str, int]


class Guard(dict[str, Sent]):
    __slots__ = ("held", "memory", "unknown")

    held: int
    memory: int
    unknown: dict[str, int] | None


def make_guard(cells: Mapping[str, Sent], unknown: Mapping[str, int] | None = None) -> Guard:
    """A guard of ``cells``; ``unknown`` gives the held bytes (name and value) of cells
    whose value is not kept (``""``). A name with a known value is not in ``unknown``."""
    guard = Guard(cells)
    if not unknown:  # every value known: one pass over the text (raw_size of it all)
        text = "".join([*guard, *[value for value, _ in guard.values()]])
        guard.unknown = None
        guard.memory = len(text)
        guard.held = len(text) - 2 * text.count("%")
        return guard
    sizes = {n: s for n, s in unknown.items() if guard.get(n, ("x",))[0] == ""}
    guard.unknown = sizes or None
    held = memory = 0
    for name, (value, _) in guard.items():
        memory += len(name) + len(value)
        held += sizes[name] if name in sizes else raw_size(name) + raw_size(value)
    guard.held = held
    guard.memory = memory
    return guard


def cell_held(guard: Guard, name: str) -> int:
    """Held bytes of one cell of ``guard`` (0 if it has none)."""
    sent = guard.get(name)
    if sent is None:
        return 0
    unknown = guard.unknown
    if unknown is not None and name in unknown:
        return unknown[name]
    return raw_size(name) + raw_size(sent[0])


def held_besides(guard: Guard | None, names: Iterable[str]) -> int:
    """Held bytes of ``guard`` less the cells a row replaces (``names``, encoded)."""
    if not guard:
        return 0
    return guard.held - sum(cell_held(guard, n) for n in names if n in guard)


def fold(older: Guard | None, sent: dict[str, Sent]) -> Guard:
    """``older`` with what a completed row ``sent`` (its cells replace older ones).

    Counts only the row's cells: a profile's guard can be much wider than one row.
    """
    if not older:
        return make_guard(sent)
    guard = Guard(older)
    guard.update(sent)
    held, memory = older.held, older.memory
    unknown = older.unknown
    for name, (value, _) in sent.items():
        previous = older.get(name)
        if previous is not None:
            held -= cell_held(older, name)
            memory -= len(name) + len(previous[0])
        held += raw_size(name) + raw_size(value)
        memory += len(name) + len(value)
    if unknown is not None:
        unknown = {n: size for n, size in unknown.items() if n not in sent} or None
    guard.held, guard.memory, guard.unknown = held, memory, unknown
    return guard


def too_large_detail(size: tuple[int, int], attributes: Mapping[str, str], cap: int) -> str:
    """The dead-letter message of an event refused by the 64 KB rule: how big the profile
    would be, how much of it was already sent, and the event's attributes by size."""
    total, held = size
    cells = sorted(
        ((len(n.encode()) + len(v.encode()), n) for n, v in attributes.items()), reverse=True
    )
    named = ", ".join(f"{n} ({b} B)" for b, n in cells[:10])
    more = f" and {len(cells) - 10} more" if len(cells) > 10 else ""
    return (
        f"the profile would hold {total} bytes in Target (at most {cap}), {held} of them "
        f"already sent by earlier batches; this event's attributes: {named}{more}"
    )
