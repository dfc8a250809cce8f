"""Up to which offset every event is known *complete* in Target, per partition, so that a
restart can finish what a stopped process left open (guarantee 13 in docs/guarantees.md).

Offsets are committed when Target *accepts* a batch (lag stays honest), but a batch is
only done once its status says ``complete``. What a process knew between the two (stuck
batches to resubmit, attributes to carry forward) used to die with it. So each partition
also has a **complete-up-to** offset: every event below it went into batches that are
complete (or were given up and dead-lettered), or needed nothing. It travels with the
committed offset as Kafka commit metadata; a new owner (or the restarted process) starts
reading there and sends again what lies between it and the committed offset. The
newest-value rule (guarantee 2) makes the second sending safe, and the rows it builds
hold every attribute not yet known applied, which is what carry-forward needs.

How it is computed without tracking each offset twice: whenever a partition's
committable offset moves to ``C``, every batch holding an offset below ``C`` has been
accepted; the ones among them not complete yet are exactly the partition's open batches
at that moment. So ``C`` becomes a checkpoint with that set of open batches, and the
complete-up-to offset is the last checkpoint whose batches have all completed. Checkpoints
with the same open set merge, so there are at most as many as open batches.

Pure logic: no Kafka, no clock. Runs on the loop's thread.
"""

from __future__ import annotations

from collections import deque

from consumer.core.model import TopicPartition

# The commit metadata: a prefix and version, then the offset. Anything else in the
# metadata (another tool's, or none) means "no knowledge": start at the committed offset.
METADATA_PREFIX = "profile-sync/1 complete="


def metadata_for(complete_up_to: int) -> str:
    return f"{METADATA_PREFIX}{complete_up_to}"


def parse_metadata(metadata: str | None) -> int | None:
    """The complete-up-to offset recorded in commit metadata, None if there is none."""
    if not metadata or not metadata.startswith(METADATA_PREFIX):
        return None
    try:
        value = int(metadata[len(METADATA_PREFIX) :])
    except ValueError:
        return None
    return value if value >= 0 else None


class _Checkpoint:
    __slots__ = ("offset", "open")

    def __init__(self, offset: int, open_batches: frozenset[int]) -> None:
        self.offset = offset
        self.open = open_batches


class Completion:
    def __init__(self) -> None:
        self._open: dict[TopicPartition, set[int]] = {}
        self._batch_tps: dict[int, set[TopicPartition]] = {}
        self._checkpoints: dict[TopicPartition, deque[_Checkpoint]] = {}
        self._complete: dict[TopicPartition, int] = {}
        self._dirty: set[TopicPartition] = set()

    @property
    def open_batches(self) -> int:
        return len(self._batch_tps)

    def accepted(self, batch_id: int, tps: set[TopicPartition]) -> None:
        """Target accepted ``batch_id``, holding events of ``tps``: open until complete."""
        if not tps:
            return
        self._batch_tps[batch_id] = set(tps)
        for tp in tps:
            self._open.setdefault(tp, set()).add(batch_id)

    def completed(self, batch_id: int) -> None:
        """``batch_id`` is complete in Target, or was given up (its rows dead-lettered)."""
        for tp in self._batch_tps.pop(batch_id, ()):
            open_batches = self._open.get(tp)
            if open_batches is not None:
                open_batches.discard(batch_id)
            self._advance(tp)

    def moved(self, offsets: dict[TopicPartition, int]) -> None:
        """The committable offsets of these partitions moved (the ledger's settled prefix)."""
        for tp, offset in offsets.items():
            open_now = frozenset(self._open.get(tp, ()))
            checkpoints = self._checkpoints.setdefault(tp, deque())
            if checkpoints and checkpoints[-1].open == open_now:
                checkpoints[-1].offset = max(checkpoints[-1].offset, offset)
            else:
                checkpoints.append(_Checkpoint(offset, open_now))
            self._advance(tp)

    def _advance(self, tp: TopicPartition) -> None:
        checkpoints = self._checkpoints.get(tp)
        if not checkpoints:
            return
        open_batches = self._open.get(tp, set())
        moved = False
        while checkpoints and not (checkpoints[0].open & open_batches):
            offset = checkpoints.popleft().offset
            if offset > self._complete.get(tp, -1):
                self._complete[tp] = offset
                moved = True
        if moved:
            self._dirty.add(tp)

    def complete_up_to(self, tp: TopicPartition) -> int | None:
        """Every event of ``tp`` below this is complete; None when nothing is known yet."""
        return self._complete.get(tp)

    def take_changed(self) -> dict[TopicPartition, int]:
        """Complete-up-to offsets that moved since the last call."""
        out = {tp: self._complete[tp] for tp in self._dirty}
        self._dirty.clear()
        return out

    def forget(self, tps: set[TopicPartition]) -> None:
        """Partitions handed over (revoked, lost): the next owner reads their metadata."""
        for tp in tps:
            self._checkpoints.pop(tp, None)
            self._complete.pop(tp, None)
            self._dirty.discard(tp)
            for batch_id in self._open.pop(tp, ()):
                batch_tps = self._batch_tps.get(batch_id)
                if batch_tps is not None:
                    batch_tps.discard(tp)
                    if not batch_tps:
                        del self._batch_tps[batch_id]
