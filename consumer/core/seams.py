"""The seams between the core and its edges, as ``typing.Protocol``s.

The core (intake, uploads, settling, the loop) talks to Kafka and Target only through
these. Production passes ``consumer.kafka.source.KafkaSource``,
``consumer.target.bulk.BulkSender``, ``consumer.target.status.StatusTracker`` and
``consumer.kafka.dlq.DeadLetterQueue``; the loop's
unit tests (tests/unit/test_loop.py) pass the fakes of tests/utils.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple, Protocol

from consumer.core.model import BatchFile, DeadLetter, TopicPartition

if TYPE_CHECKING:
    from consumer.target.bulk import BulkResult
    from consumer.target.status import StatusOutcome

PartitionsCallback = Callable[[set[TopicPartition]], None]


class Record(NamedTuple):
    """One Kafka record as the core sees it: plain values, no client object.

    A NamedTuple (frozen, no per-instance dict): the source builds one per message on the
    hot path, and a tuple is the cheapest frozen value to build.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int  # milliseconds since the epoch, as the broker reports it (-1: none)


class Source(Protocol):
    """Where records enter: a consumer-group member that stores settled offsets.

    The ``on_*`` callbacks run inside ``consume`` (and ``close``), on the loop's thread.
    """

    assigned: set[TopicPartition]
    on_assign: PartitionsCallback
    on_revoke: PartitionsCallback
    on_lost: PartitionsCallback

    def consume(self, max_records: int, timeout: float) -> list[Record]:
        """Up to ``max_records`` records; raises ``FatalError`` if the client is unusable."""
        ...

    def store_offsets(self, offsets: dict[TopicPartition, int]) -> None:
        """Offsets (next to read) that may be committed; auto-commit sends them."""
        ...

    def store_complete(self, complete: dict[TopicPartition, int]) -> None:
        """Complete-up-to offsets (consumer/core/completion.py), kept with the commits."""
        ...

    def commit_sync(self) -> None: ...

    def pause_all(self) -> None: ...

    def begin_stop(self) -> None:
        """The process is stopping: partitions assigned from now on are never read."""

    def pause(self, tps: set[TopicPartition]) -> None: ...

    def resume_all(self) -> None: ...

    def request_rewind(self, tps: set[TopicPartition]) -> None:
        """Re-read ``tps`` from their committed offsets at the next ``consume``."""
        ...

    def close(self) -> None:
        """Leave the group (runs ``on_revoke`` for what is still assigned)."""
        ...


class Uploads(Protocol):
    """Target's Bulk API behind worker threads: batches in, one ``BulkResult`` each out."""

    def submit(self, batch: BatchFile, resubmission: bool = False) -> None: ...

    def cancel(self, batch_id: int) -> None:
        """Never send ``batch_id`` again; its result (``cancelled``) still arrives."""
        ...

    def next_result(self, timeout: float = 0.0) -> BulkResult | None:
        """A finished upload, waiting up to ``timeout`` seconds; None if there is none."""
        ...

    def close(self) -> None: ...


class BatchFollower(Protocol):
    """Follows accepted batches to a final status (``consumer.target.status``)."""

    @property
    def tracked(self) -> int: ...

    def track(self, batch: BatchFile, url: str, resubmits: int = 0) -> None: ...

    def next_outcome(self) -> StatusOutcome | None:
        """A batch that reached a final status, None if there is none yet."""
        ...

    def close(self) -> None: ...


class OriginalEvent(NamedTuple):
    """A record of a source topic as it was published (for dead letters of its batch)."""

    tp: TopicPartition
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]


class Rereader(Protocol):
    """Reads given offsets of the source topics again (consumer/kafka/reread.py)."""

    def read(
        self, ranges: dict[TopicPartition, list[tuple[int, int]]]
    ) -> list[OriginalEvent] | None:
        """The records at ``ranges`` (first, last inclusive); None if not all were read."""
        ...


class DeadLetterSink(Protocol):
    """The dead-letter topic. A unit is settled once every letter sent for it landed."""

    @property
    def pending(self) -> int: ...

    def send(self, letter: DeadLetter, unit: int) -> None: ...

    def poll(self) -> None:
        """Serve delivery reports (they call back ``on_settled(unit)``) and retries."""
        ...

    def flush(self, timeout: float) -> int:
        """Wait for outstanding writes; returns how many are still undelivered."""
        ...
