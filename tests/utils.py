"""Shared test helpers: an oracle for the final Target state, a fake clock, update builders.

Both tiers import this module. The oracle (``fold`` and ``fold_batches``) is written from
the documented rules, not from the consumer's code, so a test comparing the two proves
something: the rendering rule of schemas/README.md and guarantee 2 of docs/guarantees.md
(newest value per attribute wins).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote

from consumer.core.model import IdType, Priority, ProfileUpdate, TopicPartition

# ProfileChange ``profile.id_type`` -> the name Target uses in a batch file header.
ID_TYPE_HEADER = {"THIRD_PARTY_ID": "thirdPartyId", "PC_ID": "pcId"}

DEFAULT_TP = TopicPartition("crm.profile-changes", 0)

ProfileKey = tuple[str, str]  # (id type header name, profile id)
ProfileState = dict[ProfileKey, dict[str, str]]


def render(value: object) -> str | None:
    """The Target string for one attribute value, or None for "no change".

    String as is (empty = no change), null = no change, boolean ``true``/``false``
    (checked before int: a bool is an int in Python), long as decimal, double in shortest
    round-trip form (Python's ``repr``).
    """
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    raise TypeError(f"not an attribute value: {value!r}")


def fold(events: Iterable[Mapping[str, Any]]) -> ProfileState:
    """The final Target profile state the service must produce from these events.

    ``fold(events: Iterable[dict]) -> dict[tuple[str, str], dict[str, str]]``

    ``events`` are ProfileChange records as dicts (``profile.id_type``, ``profile.id``,
    ``occurred_at``, ``attributes``), in production order. The result is keyed by
    (id type header name ``"thirdPartyId"``/``"pcId"``, profile id) and maps each attribute
    name (``profile.`` prefix stripped) to its Target string. Per profile and attribute the
    value of the event with the latest ``occurred_at`` wins; on a tie the later event in the
    list wins. Null and empty-string values change nothing (Target cannot delete), so a
    profile whose events carry only those is absent.

    Valid events only: leave out events the service dead-letters (invalid ids or names,
    NaN, over 64 KB). Cross-partition ordering is by ``occurred_at``, so this is exact when
    ``occurred_at`` never decreases within one profile's partition (the generator in
    tests/integration/events.py makes it grow with list position).
    """
    state: dict[ProfileKey, dict[str, tuple[int, str]]] = {}
    for event in events:
        profile = event["profile"]
        key = (ID_TYPE_HEADER[profile["id_type"]], profile["id"])
        occurred_at = event["occurred_at"]
        cells = state.setdefault(key, {})
        for raw_name, value in event["attributes"].items():
            rendered = render(value)
            if rendered is None:
                continue
            name = raw_name.removeprefix("profile.")
            old = cells.get(name)
            if old is None or occurred_at >= old[0]:
                cells[name] = (occurred_at, rendered)
    return {
        key: {name: value for name, (_, value) in cells.items()}
        for key, cells in state.items()
        if cells
    }


def fold_updates(updates: Iterable[ProfileUpdate]) -> ProfileState:
    """Guarantee 2 (docs/guarantees.md) over rendered ``ProfileUpdate``s, in consumption order.

    An attribute takes a newer event's value when the event comes from the same partition
    as the value it replaces (a later offset) or when its ``occurred_at`` is not older.
    """
    state: dict[ProfileKey, dict[str, tuple[int, TopicPartition, str]]] = {}
    for u in updates:
        cells = state.setdefault((u.id_type.value, u.profile_id), {})
        for name, value in u.attributes.items():
            old = cells.get(name)
            if old is None or old[1] == u.tp or u.occurred_at >= old[0]:
                cells[name] = (u.occurred_at, u.tp, value)
    return {
        key: {name: value for name, (_, _, value) in cells.items()}
        for key, cells in state.items()
        if cells
    }


def parse_batch(body: bytes) -> tuple[str, list[tuple[str, dict[str, str]]]]:
    """A batch file read the way Target reads it: (id type name, [(profile id, cells)]).

    Written independently of ``consumer.target.wire.decode_batch``: split lines and commas,
    URL-decode each cell, drop empty cells (an empty cell sets nothing).
    """
    text = body.decode("ascii")
    assert text.endswith("\n"), "a batch file ends with a line break"
    header, *lines = text[:-1].split("\n")
    first, *names = header.split(",")
    assert first.startswith("batch="), first
    decoded_names = [unquote(n, errors="strict") for n in names]
    rows = []
    for line in lines:
        cells = line.split(",")
        assert len(cells) == len(names) + 1, f"row has {len(cells)} cells, header {len(names) + 1}"
        attrs = {
            decoded_names[i]: unquote(c, errors="strict") for i, c in enumerate(cells[1:]) if c
        }
        rows.append((unquote(cells[0], errors="strict"), attrs))
    return first.removeprefix("batch="), rows


def fold_batches(bodies: Iterable[bytes]) -> ProfileState:
    """The profile state after Target applies these batch files in order (merge reading):
    each row sets its non-empty cells, later files overwrite earlier values."""
    state: ProfileState = {}
    for body in bodies:
        id_type, rows = parse_batch(body)
        for profile_id, attrs in rows:
            state.setdefault((id_type, profile_id), {}).update(attrs)
    return {key: attrs for key, attrs in state.items() if attrs}


class FakeClock:
    """A ``consumer.clock.Clock`` that moves only when told to."""

    def __init__(self, monotonic: float = 1000.0, wall: float = 1_700_000_000.0) -> None:
        self._monotonic = monotonic
        self._wall = wall

    def monotonic(self) -> float:
        return self._monotonic

    def time(self) -> float:
        return self._wall

    def advance(self, seconds: float) -> None:
        self._monotonic += seconds
        self._wall += seconds


def make_update(
    profile_id: str,
    attributes: dict[str, str],
    *,
    occurred_at: int = 1_700_000_000_000,
    id_type: IdType = IdType.THIRD_PARTY_ID,
    tp: TopicPartition = DEFAULT_TP,
    offset: int = 0,
    priority: Priority = Priority.NORMAL,
) -> ProfileUpdate:
    """A rendered, valid ``ProfileUpdate`` with defaults for what a test does not care about."""
    return ProfileUpdate(
        id_type=id_type,
        profile_id=profile_id,
        attributes=dict(attributes),
        priority=priority,
        occurred_at=occurred_at,
        tp=tp,
        offset=offset,
    )
