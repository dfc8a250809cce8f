"""What Target should hold: the newest value of every attribute, folded from events, and a
diff against what Target holds (``profile-sync verify``).

The fold follows guarantee 2 in docs/guarantees.md the way the batcher applies it: within
a partition a later offset wins; across partitions the event whose ``occurred_at`` is not
older wins. Empty values never reach here (an update carries only values that change
something). Pure logic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from consumer.core.model import IdType, ProfileUpdate, TopicPartition

ProfileKey = tuple[IdType, str]


@dataclass(frozen=True, slots=True)
class Newest:
    """The newest value of one attribute and the record it came from."""

    value: str
    occurred_at: int
    tp: TopicPartition
    offset: int


class Fold:
    """Newest value per attribute for the profiles ``wanted`` says yes to."""

    def __init__(self, wanted: Callable[[ProfileKey], bool] = lambda _key: True) -> None:
        self.wanted = wanted
        self.profiles: dict[ProfileKey, dict[str, Newest]] = {}

    def add(self, update: ProfileUpdate) -> None:
        key = (update.id_type, update.profile_id)
        if not self.wanted(key):
            return
        attrs = self.profiles.setdefault(key, {})
        for name, value in update.attributes.items():
            old = attrs.get(name)
            if old is None or old.tp == update.tp or old.occurred_at <= update.occurred_at:
                attrs[name] = Newest(value, update.occurred_at, update.tp, update.offset)

    def add_all(self, updates: Iterable[ProfileUpdate]) -> None:
        for update in updates:
            self.add(update)


class Status(StrEnum):
    MATCH = "match"
    LOST = "lost"  # Target holds another value (or none), and the service is past it
    SUPERSEDED = "superseded"  # Target differs, but the service has not settled it yet
    NOT_FOUND = "not_found"  # Target has no such profile at all


@dataclass(frozen=True, slots=True)
class Difference:
    id_type: IdType
    profile_id: str
    attribute: str
    status: Status
    expected: str
    held: str | None


def compare(
    key: ProfileKey,
    expected: dict[str, Newest],
    held: dict[str, str] | None,
    settled: Callable[[Newest], bool],
) -> list[Difference]:
    """One ``Difference`` per attribute; ``held`` None: no profile; ``settled(newest)``: has
    the service committed past the record that set it (so it should be in Target)?"""
    out = []
    for name, newest in sorted(expected.items()):
        value = None if held is None else held.get(name)
        if value == newest.value:
            status = Status.MATCH
        elif not settled(newest):
            status = Status.SUPERSEDED
        elif held is None:
            status = Status.NOT_FOUND
        else:
            status = Status.LOST
        out.append(Difference(key[0], key[1], name, status, newest.value, value))
    return out
