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
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

from consumer.core.model import TopicPartition
from consumer.core.seams import PartitionsCallback, Record, Source

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
    ) -> None:
        self.inner = inner
        self.topic = repartition_topic
        self._restore = restore
        self._mark = changelog_mark
        self._done = changelog_done
        self._flush = flush
        self._on_restored = on_restored
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

    # -- Source

    def consume(self, max_records: int, timeout: float) -> list[Record]:
        self._release()
        records = self.inner.consume(max_records, timeout)
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

    def pause(self, tps: set[TopicPartition]) -> None:
        self.inner.pause(tps)

    def resume_all(self) -> None:
        self.inner.resume_all()

    def request_rewind(self, tps: set[TopicPartition]) -> None:
        self._drop_held(tps)
        self.inner.request_rewind(tps)

    def close(self) -> None:
        self.inner.close()
