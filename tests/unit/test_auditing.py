"""The audit on the loop's side: real batcher, carry-forward and settling, a fake reader.

What an operator would notice: a lost value comes back, a newer value is never replaced
by a repair, repairs stop after the limit and the row goes to the DLQ.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from prometheus_client import CollectorRegistry

from consumer.core.audit import AuditQueue, AuditRow
from consumer.core.auditing import Auditing
from consumer.core.batcher import Batcher, BatchLimits
from consumer.core.carry import CarryForward
from consumer.core.model import BatchFile, IdType, TopicPartition
from consumer.core.settling import Settling
from consumer.metrics import Metrics
from tests.utils import FakeClock, FakeDeadLetters, make_update, parse_batch

A = TopicPartition("crm", 0)
B = TopicPartition("pos", 0)


class Read(NamedTuple):
    row: AuditRow
    profile: dict[str, Any] | None
    error: str = ""


class FakeReader:
    """Target's fetch API as a dict of what it holds: {profile id: {name: value}}."""

    def __init__(self) -> None:
        self.held: dict[str, dict[str, str]] = {}
        self.reads: list[AuditRow] = []
        self._done: list[Read] = []

    def capacity(self) -> int:
        return 100

    def submit(self, row: AuditRow) -> None:
        self.reads.append(row)
        attrs = self.held.get(row.profile_id)
        profile = None
        if attrs is not None:
            profile = {"profileAttributes": {n: {"value": v} for n, v in attrs.items()}}
        self._done.append(Read(row, profile))

    def next_result(self) -> Read | None:
        return self._done.pop(0) if self._done else None

    def close(self) -> None:
        pass


class Rig:
    def __init__(self, max_repairs: int = 2) -> None:
        self.carry = CarryForward(1000)
        self.batcher = Batcher(BatchLimits(1000, 10_000_000, 1.0), self.carry)
        self.dead: list[FakeDeadLetters] = []
        self.settling = Settling(lambda on_settled: self._sink(on_settled))
        self.reader = FakeReader()
        self.clock = FakeClock()
        self.metrics = Metrics(CollectorRegistry())
        self.audit = Auditing(
            AuditQueue(share=1.0, settle_seconds=0.0, max_pending=100),
            self.reader,
            batcher=self.batcher,
            carry=self.carry,
            settling=self.settling,
            max_repairs=max_repairs,
            v1_ids=frozenset({IdType.PC_ID}),
            metrics=self.metrics,
            clock=self.clock,
        )

    def _sink(self, on_settled: Any) -> FakeDeadLetters:
        sink = FakeDeadLetters(on_settled)
        self.dead.append(sink)
        return sink

    def cut(self) -> BatchFile:
        self.batcher.cut_all("linger")
        (batch,) = self.batcher.take_ready()
        return batch

    def complete(self, batch: BatchFile) -> None:
        """Target reports ``batch`` complete (outcomes release it, then tell the audit)."""
        self.carry.release(batch.batch_id)
        self.audit.on_complete(batch, batch.batch_id)

    def turn(self) -> None:
        self.clock.advance(1.0)
        self.audit.turn(self.clock.monotonic())
        self.audit.turn(self.clock.monotonic())

    def count(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(f"profile_sync_audit_{name}", labels)
        return value or 0.0


def rows(batch: BatchFile) -> dict[str, dict[str, str]]:
    return dict(parse_batch(batch.body)[1])


def test_a_lost_value_is_sent_again_and_a_newer_event_still_wins() -> None:
    rig = Rig()
    rig.batcher.add(make_update("p", {"tier": "gold", "city": "Oslo"}, occurred_at=100, tp=A), 0)
    b1 = rig.cut()
    rig.complete(b1)
    rig.reader.held["p"] = {"tier": "gold"}  # Target dropped the city
    rig.turn()
    assert rig.count("attributes_total", kind="sample", verdict="lost") == 1
    assert rig.count("repairs_total", outcome="sent") == 1
    # An older event from another partition does not undo the repair...
    rig.batcher.add(make_update("p", {"city": "Rome"}, occurred_at=50, tp=B), 0)
    repair = rig.cut()
    assert rows(repair) == {"p": {"city": "Oslo"}}
    # ...and the repair's row is read back whatever the sample: whole now.
    rig.reader.held["p"] = {"tier": "gold", "city": "Oslo"}
    rig.complete(repair)
    rig.turn()
    assert rig.count("repairs_total", outcome="succeeded") == 1
    assert rig.count("rows_total", kind="repair", result="matching") == 1


def test_a_repair_loses_to_a_newer_event_buffered_with_it() -> None:
    rig = Rig()
    rig.batcher.add(make_update("p", {"city": "Oslo"}, occurred_at=100, tp=A), 0)
    b1 = rig.cut()
    rig.complete(b1)
    rig.turn()  # Target holds nothing: city lost, repair buffered
    rig.batcher.add(make_update("p", {"city": "Bergen"}, occurred_at=200, tp=B), 0)
    assert rows(rig.cut()) == {"p": {"city": "Bergen"}}


def test_a_newer_value_buffered_or_in_flight_is_superseded_not_repaired() -> None:
    rig = Rig()
    rig.batcher.add(make_update("p", {"tier": "gold", "city": "Oslo"}, occurred_at=100, tp=A), 0)
    rig.batcher.add(make_update("q", {"tier": "gold"}, occurred_at=100, tp=A), 0)
    b1 = rig.cut()
    rig.complete(b1)
    # p's tier: a newer value waits in the buffer; q's tier: in a later batch not complete.
    rig.batcher.add(make_update("q", {"tier": "silver"}, occurred_at=200, tp=B), 0)
    b2 = rig.cut()
    rig.batcher.add(make_update("p", {"tier": "platinum"}, occurred_at=200, tp=B), 0)
    rig.turn()  # Target holds nothing for p and q
    assert rig.count("attributes_total", kind="sample", verdict="superseded") == 2
    assert rig.count("attributes_total", kind="sample", verdict="lost") == 1  # p's city
    buffered = rig.cut()
    assert rows(buffered) == {"p": {"tier": "platinum", "city": "Oslo"}}
    assert rows(b2) == {"q": {"tier": "silver"}}


def test_after_the_last_repair_the_lost_attributes_go_to_the_dlq() -> None:
    rig = Rig(max_repairs=1)
    rig.batcher.add(make_update("p", {"tier": "gold"}, occurred_at=100, tp=A), 0)
    rig.complete(rig.cut())
    rig.turn()  # lost: repair 1
    rig.complete(rig.cut())
    rig.turn()  # lost again, no repair left
    rig.settling.poll()
    (letter,) = rig.dead[0].landed
    assert (letter.reason, letter.key) == ("audit_lost", b"p")
    assert b'"tier": "gold"' in (letter.value or b"")
    assert rig.count("repairs_total", outcome="dead_lettered") == 1
    assert rig.batcher.buffered_rows == 0


def test_a_pcid_profile_missing_after_a_v1_batch_is_not_a_loss() -> None:
    rig = Rig()
    pc = IdType.PC_ID
    rig.batcher.add(make_update("visitor", {"tier": "gold"}, id_type=pc, tp=A), 0)
    rig.complete(rig.cut())
    rig.turn()
    assert rig.count("reads_total", outcome="not_found") == 1
    assert rig.count("attributes_total", kind="sample", verdict="lost") == 0
    assert rig.batcher.buffered_rows == 0
