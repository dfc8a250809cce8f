"""The owner side of the repartition mode, as a ``Source`` around the Kafka source.

``OwnedSource`` adds two rules to the consumer-group member (consumer/core/seams.py):

- **restore before owning**: when repartition partitions are assigned, their changelog
  partitions are read into the owner's memory (``restore``) before the partitions are
  handed on to the loop, so not one of their records is consumed before that memory is
  back (guarantee 2 in docs/guarantees.md). This happens inside the rebalance callback:
  librdkafka starts fetching a partition only after the callback returns.
  ``restoring`` is True meanwhile (readiness reports it); the time is measured.
- **forward**: the source records of every consumed list go to the forward stage
  (``forward``); the loop sees only the repartition topic's records.
- **changelog before commit**: the settled offsets of repartition partitions are held back
  until every changelog write made before them is acknowledged (``changelog_mark`` /
  ``changelog_done``); offsets of source topics pass straight through. ``commit_sync``
  (rebalance, shutdown) first waits for the changelog (``flush``).
- **handover at shutdown** (consumer/core/handover.py): ``hold_sources`` stops fetching
  the source partitions (``resume_all`` leaves them paused), ``drain_to`` notes the end
  offsets of the owned partitions and ``drained`` says when everything up to them was
  consumed.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

from consumer.core.model import TopicPartition
from consumer.core.seams import PartitionsCallback, Record, Source

# (next offset to read, end offset) of partitions, as the broker knows them now.
Progress = Callable[[set[TopicPartition]], dict[TopicPartition, tuple[int, int]]]

log = logging.getLogger("profile_sync.ownership")


class OwnedSource:
    def __init__(
        self,
        inner: Source,
        repartition_topic: str,
        *,
        restore: Callable[[set[int]], int],
        changelog_mark: Callable[[], int],
        changelog_done: Callable[[int], bool],
        flush: Callable[[float], int],
        on_restored: Callable[[float, int], None] = lambda seconds, records: None,
        progress: Progress = lambda tps: {},
    ) -> None:
        self.inner = inner
        self.topic = repartition_topic
        self._restore = restore
        self._mark = changelog_mark
        self._done = changelog_done
        self._flush = flush
        self._on_restored = on_restored
        self._progress = progress
        self._held_sources = False
        # While draining (``drain_to``): owned partition -> [next to read, end offset].
        self._draining: dict[TopicPartition, list[int]] | None = None
        self._held: deque[tuple[int, dict[TopicPartition, int]]] = deque()
        self.restoring = False
        self.forwarded = 0  # source records taken by ``forward`` (see ``take_forwarded``)
        # The forward stage (consumer/core/forward.py): takes the source records of each
        # consumed list, returns the repartition topic's for the loop.
        self.forward: Callable[[list[Record]], list[Record]] = lambda records: records
        self.on_assign: PartitionsCallback = lambda tps: None
        self.on_revoke: PartitionsCallback = lambda tps: None
        self.on_lost: PartitionsCallback = lambda tps: None
        inner.on_assign = self._assigned
        inner.on_revoke = lambda tps: self.on_revoke(tps)
        inner.on_lost = self._lost

    @property
    def assigned(self) -> set[TopicPartition]:
        return self.inner.assigned

    @assigned.setter
    def assigned(self, tps: set[TopicPartition]) -> None:
        self.inner.assigned = tps

    def headers_of(self, tp: TopicPartition, offset: int) -> tuple[tuple[str, bytes | None], ...]:
        """A consumed source record's headers, for its dead letter (consumer/kafka/source.py)."""
        find = getattr(self.inner, "headers_of", None)
        return find(tp, offset) if find is not None else ()

    def _assigned(self, tps: set[TopicPartition]) -> None:
        owned = {tp.partition for tp in tps if tp.topic == self.topic}
        if owned:
            self.restoring = True
            started = time.monotonic()
            try:
                records = self._restore(owned)
            finally:
                self.restoring = False
            seconds = time.monotonic() - started
            self._on_restored(seconds, records)
            log.info(
                "owner's memory restored from the changelog",
                extra={
                    "fields": {"partitions": sorted(owned), "records": records,
                               "seconds": round(seconds, 3)}
                },
            )  # fmt: skip
        self.on_assign(tps)
        if self._held_sources:
            self.inner.pause({tp for tp in tps if tp.topic != self.topic})

    def take_forwarded(self) -> int:
        """Source records forwarded since the last call."""
        n, self.forwarded = self.forwarded, 0
        return n

    def _lost(self, tps: set[TopicPartition]) -> None:
        self._drop_held(tps)
        self.on_lost(tps)

    def _drop_held(self, tps: set[TopicPartition]) -> None:
        for _, offsets in self._held:
            for tp in tps:
                offsets.pop(tp, None)

    # -- handover (consumer/core/handover.py)

    def _sources(self) -> set[TopicPartition]:
        return {tp for tp in self.inner.assigned if tp.topic != self.topic}

    def hold_sources(self) -> None:
        """Stop fetching the source partitions, for good (``resume_all`` leaves them)."""
        self._held_sources = True
        self.inner.pause(self._sources())

    def drain_to(self) -> dict[TopicPartition, tuple[int, int]]:
        """Note the end offsets of the owned partitions now; ``drained`` compares to them."""
        owned = {tp for tp in self.inner.assigned if tp.topic == self.topic}
        known = self._progress(owned)
        self._draining = {tp: [at, end] for tp, (at, end) in known.items()}
        return known

    def drained(self) -> bool:
        """Every owned partition still assigned was consumed up to its noted end."""
        draining = self._draining or {}
        assigned = self.inner.assigned
        return all(at >= end for tp, (at, end) in draining.items() if tp in assigned)

    # -- Source

    def consume(self, max_records: int, timeout: float) -> list[Record]:
        self._release()
        records = self.inner.consume(max_records, timeout)
        if self._draining is not None:
            for rec in records:
                mark = self._draining.get(TopicPartition(rec.topic, rec.partition))
                if mark is not None and rec.offset >= mark[0]:
                    mark[0] = rec.offset + 1
        return self.forward(records) if records else records

    def store_offsets(self, offsets: dict[TopicPartition, int]) -> None:
        owned = {tp: o for tp, o in offsets.items() if tp.topic == self.topic}
        direct = {tp: o for tp, o in offsets.items() if tp.topic != self.topic}
        if direct:
            self.inner.store_offsets(direct)
        if owned:
            self._held.append((self._mark(), owned))
            self._release()

    def _release(self) -> None:
        held = self._held
        while held and self._done(held[0][0]):
            _, offsets = held.popleft()
            if offsets:
                self.inner.store_offsets(offsets)

    def store_complete(self, complete: dict[TopicPartition, int]) -> None:
        # Safe before held offsets are released: the metadata never claims past the
        # stored offset (consumer/kafka/source.py keeps the smaller of the two).
        self.inner.store_complete(complete)

    def commit_sync(self) -> None:
        if self._held:
            self._flush(10.0)
            self._release()
        self.inner.commit_sync()

    def pause_all(self) -> None:
        self.inner.pause_all()

    def begin_stop(self) -> None:
        self.inner.begin_stop()

    def pause(self, tps: set[TopicPartition]) -> None:
        self.inner.pause(tps)

    def resume_all(self) -> None:
        self.inner.resume_all()
        if self._held_sources:
            self.inner.pause(self._sources())

    def request_rewind(self, tps: set[TopicPartition]) -> None:
        self._drop_held(tps)
        self.inner.request_rewind(tps)

    def close(self) -> None:
        self.inner.close()
