"""The owner side as a Source wrapper, and the forward stage (consumer/core/ownership.py,
consumer/core/forward.py), against in-process fakes."""

from __future__ import annotations

from consumer.core import internal_format
from consumer.core.forward import Forwarder
from consumer.core.ledger import SETTLED, Ledger
from consumer.core.model import TopicPartition
from consumer.core.ownership import OwnedSource
from consumer.core.seams import PartitionsCallback, Record
from consumer.errors import ValidationError
from tests.utils import make_update

REPART = "g.repartition"


class FakeSource:
    def __init__(self) -> None:
        self.assigned: set[TopicPartition] = set()
        self.on_assign: PartitionsCallback = lambda tps: None
        self.on_revoke: PartitionsCallback = lambda tps: None
        self.on_lost: PartitionsCallback = lambda tps: None
        self.stored: list[dict[TopicPartition, int]] = []
        self.commits = 0
        self.records: list[Record] = []

    def consume(self, max_records: int, timeout: float) -> list[Record]:
        out, self.records = self.records, []
        return out

    def store_offsets(self, offsets: dict[TopicPartition, int]) -> None:
        self.stored.append(dict(offsets))

    def commit_sync(self) -> None:
        self.commits += 1

    def pause_all(self) -> None: ...
    def pause(self, tps: set[TopicPartition]) -> None: ...
    def resume_all(self) -> None: ...
    def request_rewind(self, tps: set[TopicPartition]) -> None: ...
    def close(self) -> None: ...


class FakeLog:
    def __init__(self) -> None:
        self.sent = 0
        self.acked = 0

    def mark(self) -> int:
        return self.sent

    def done(self, mark: int) -> bool:
        return self.acked >= mark

    def flush(self, timeout: float) -> int:
        self.acked = self.sent
        return 0


def _owned(inner: FakeSource, log: FakeLog, restored: list[set[int]]) -> OwnedSource:
    def restore(parts: set[int]) -> int:
        restored.append(parts)
        return 0

    return OwnedSource(
        inner, REPART, restore=restore, changelog_mark=log.mark, changelog_done=log.done,
        flush=log.flush,
    )  # fmt: skip


def test_repartition_partitions_are_restored_before_the_loop_hears_of_them() -> None:
    inner, log, restored = FakeSource(), FakeLog(), []
    src = _owned(inner, log, restored)
    heard: list[set[TopicPartition]] = []
    src.on_assign = lambda tps: heard.append(set(restored[-1]) if restored else set())
    inner.on_assign(
        {TopicPartition(REPART, 2), TopicPartition(REPART, 5), TopicPartition("pos", 0)}
    )
    assert restored == [{2, 5}]
    assert heard == [{2, 5}]  # the loop was told only after the restore


def test_repartition_offsets_wait_for_the_changelog_writes_made_before_them() -> None:
    inner, log, restored = FakeSource(), FakeLog(), []
    src = _owned(inner, log, restored)
    log.sent = 3
    src.store_offsets({TopicPartition(REPART, 0): 10, TopicPartition("pos", 1): 7})
    assert inner.stored == [{TopicPartition("pos", 1): 7}]  # source offsets pass at once
    log.acked = 2
    src.consume(10, 0.0)
    assert len(inner.stored) == 1
    log.acked = 3
    src.consume(10, 0.0)
    assert inner.stored[-1] == {TopicPartition(REPART, 0): 10}


def test_commit_sync_first_waits_for_the_changelog() -> None:
    inner, log, restored = FakeSource(), FakeLog(), []
    src = _owned(inner, log, restored)
    log.sent = 1
    src.store_offsets({TopicPartition(REPART, 0): 4})
    src.commit_sync()
    assert inner.stored == [{TopicPartition(REPART, 0): 4}]
    assert inner.commits == 1


class FakeWrites:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes, int]] = []

    def forward(self, key: bytes, value: bytes, unit: int) -> None:
        self.sent.append((key, value, unit))


def test_source_records_are_forwarded_and_settle_only_when_acknowledged() -> None:
    ledger = Ledger()
    units = iter(range(-1, -100, -1))
    writes = FakeWrites()
    letters: list[str] = []

    def convert(rec: Record, tp: TopicPartition):  # type: ignore[no-untyped-def]
        if rec.value == b"bad":
            raise ValidationError("bad_id", "no")
        if rec.value == b"empty":
            return None
        return make_update(
            rec.value.decode() if rec.value else "", {"a": "1"}, tp=tp, offset=rec.offset
        )

    fwd = Forwarder(
        REPART, convert=convert, writes=writes, track=ledger.track, new_unit=lambda: next(units),
        dead_letter=lambda exc, rec, tp: (
            letters.append(exc.reason),
            ledger.track(tp, rec.offset, -99),  # settles when its dead letter lands
        ),
    )  # fmt: skip
    records = [
        Record("pos", 0, 0, None, b"p1", 0),
        Record(REPART, 3, 40, b"k", b"v", 0),
        Record("pos", 0, 1, None, b"empty", 0),
        Record("pos", 0, 2, None, b"bad", 0),
        Record("pos", 0, 3, None, b"p2", 0),
    ]
    owned = fwd.take(records)
    assert owned == [records[1]]
    assert letters == ["bad_id"]
    assert [internal_format.decode(v).profile_id for _, v, _ in writes.sent] == ["p1", "p2"]
    assert [k for k, _, _ in writes.sent] == [b"thirdPartyId:p1", b"thirdPartyId:p2"]
    tp = TopicPartition("pos", 0)
    ledger.track(tp, 4, SETTLED)
    assert ledger.take_committable() == {}
    assert writes.sent[0][2] == writes.sent[1][2]  # one unit for the list's updates
    ledger.settle(writes.sent[0][2])  # both acknowledged; offset 2 waits for its dead letter
    assert ledger.take_committable() == {tp: 2}
    ledger.settle(-99)
    assert ledger.take_committable() == {tp: 5}
