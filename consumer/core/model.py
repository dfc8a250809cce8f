"""Domain values that flow through the pipeline. Frozen and slotted; no raw dicts past decode."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple


class IdType(StrEnum):
    """How a profile is keyed. The value is the name Target uses in a batch file header."""

    THIRD_PARTY_ID = "thirdPartyId"
    PC_ID = "pcId"

    @property
    def single_param(self) -> str:
        """The single-update API's query parameter for this id type."""
        return "mbox3rdPartyId" if self is IdType.THIRD_PARTY_ID else "mboxPC"


class Priority(StrEnum):
    NORMAL = "NORMAL"
    URGENT = "URGENT"


class TopicPartition(NamedTuple):
    topic: str
    partition: int


class ProfileUpdate(NamedTuple):
    """One valid event, rendered: attribute values are already Target strings.

    ``attributes`` holds only values that change something (no null, no empty string).
    ``tp`` and ``offset`` say where the event came from, for ordering and committing.
    A NamedTuple rather than a frozen dataclass: one is built per event, and a frozen
    dataclass's ``__init__`` costs ~1.2 us more.
    """

    id_type: IdType
    profile_id: str
    attributes: dict[str, str]
    priority: Priority
    occurred_at: int
    tp: TopicPartition
    offset: int
    source: str = "OTHER"
    event_id: str = ""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record for the dead-letter topic: the original bytes plus why it is there."""

    key: bytes | None
    value: bytes | None
    reason: str
    stage: str
    error_class: str
    message: str
    tp: TopicPartition | None = None
    offset: int | None = None
    extra_headers: tuple[tuple[str, str], ...] = field(default=())
    # The source record's own headers, written as they were (a rejected batch's events).
    original_headers: tuple[tuple[str, bytes | None], ...] = field(default=())


@dataclass(frozen=True, slots=True)
class BatchFile:
    """A cut batch: the CSV bytes Target receives, and facts about it for logs and metrics.

    The rows are not kept a second time: the rare paths that need them (dead-lettering a
    rejected batch) decode ``body`` with ``encoding.decode_batch``.
    """

    batch_id: int
    id_type: IdType
    body: bytes
    row_count: int
    event_count: int
    trigger: str
    oldest_occurred_at: int
    newest_occurred_at: int
