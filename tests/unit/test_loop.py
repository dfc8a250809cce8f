"""The whole consume loop in-process: intake, uploads, settling and rebalance against fakes
of its seams (tests/utils.py) and one fake clock. No sockets, no sleeping.

What an operator would notice: which offsets reach Kafka and when, what is uploaded and
how much at once, when consumption pauses, what survives a rebalance or a shutdown.
"""

from __future__ import annotations

import io
import uuid
from typing import Any

import fastavro
from prometheus_client import CollectorRegistry

from consumer import config
from consumer.core.batcher import Batcher, BatchLimits
from consumer.core.budget import CallBudget, CallKind
from consumer.core.carry import CarryForward
from consumer.core.decode import load_schema
from consumer.core.loop import Loop
from consumer.core.model import TopicPartition
from consumer.core.uploads import CutBatches
from consumer.mapping.startup import build_mapper
from consumer.metrics import Metrics
from consumer.target.status import FinalStatus
from tests.utils import (
    FakeClock,
    FakeDeadLetters,
    FakeFollower,
    FakeSource,
    FakeUploads,
    parse_batch,
)

TOPIC = "crm.profile-changes"
A = TopicPartition(TOPIC, 0)
B = TopicPartition(TOPIC, 1)
SCHEMA = load_schema(config.DEFAULT_WRITER_SCHEMA)
WRITER = fastavro.parse_schema(SCHEMA)
REQUIRED = {
    "PROFILE_SYNC_TARGET_URL": "http://127.0.0.1:8080",
    "PROFILE_SYNC_TARGET_CLIENT": "acmeretail",
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19092",
    "PROFILE_SYNC_TOPICS": TOPIC,
}


def event(profile_id: str, occurred_at: int = 1_700_000_000_000, **attributes: Any) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(
        buf,
        WRITER,
        {
            "event_id": str(uuid.uuid4()),
            "source": "CRM",
            "occurred_at": occurred_at,
            "profile": {"id_type": "THIRD_PARTY_ID", "id": profile_id},
            "priority": "NORMAL",
            "attributes": attributes or {"tier": "gold"},
        },
    )
    return buf.getvalue()


class Rig:
    """A ``Loop`` wired to fakes, the way consumer/commands/run.py wires the real edges."""

    def __init__(
        self,
        *,
        auto_accept: bool = True,
        follow: bool = False,
        budget: CallBudget | None = None,
        **env: str,
    ) -> None:
        self.clock = FakeClock()
        self.settings = config.load(
            {**REQUIRED, **{f"PROFILE_SYNC_{k.upper()}": v for k, v in env.items()}}
        )
        s = self.settings
        self.source = FakeSource()
        self.uploads = FakeUploads(self.clock, auto_accept)
        self.follower = FakeFollower() if follow else None
        self.registry = CollectorRegistry()
        carry = (
            CarryForward(s.carry_forward_max_profiles, s.carry_forward_max_bytes)
            if s.carry_forward_enabled
            else None
        )
        self.dead_letters: FakeDeadLetters | None = None
        self.loop = Loop(
            s,
            source=self.source,
            mapper=build_mapper(s, None),
            batcher=Batcher(
                BatchLimits(s.batch_max_rows, s.batch_max_bytes, s.batch_linger_seconds), carry
            ),
            carry=carry,
            uploads=self.uploads,
            dead_letter_sink=self._sink,
            cut=CutBatches(),
            single=None,
            tracker=self.follower,
            metrics=Metrics(self.registry),
            clock=self.clock,
            budget=budget,
        )

    def _sink(self, on_settled: Any) -> FakeDeadLetters:
        self.dead_letters = FakeDeadLetters(on_settled)
        return self.dead_letters

    def turns(self, n: int = 1, seconds: float = 0.0) -> None:
        for _ in range(n):
            self.clock.advance(seconds)
            self.loop.turn()

    def uploaded_profiles(self) -> list[str]:
        return [pid for batch, _ in self.uploads.submitted for pid, _ in parse_batch(batch.body)[1]]

    def gauge(self, name: str) -> float | None:
        return self.registry.get_sample_value(f"profile_sync_{name}")


def test_offsets_are_stored_only_up_to_the_first_batch_target_has_not_accepted() -> None:
    rig = Rig(auto_accept=False, batch_max_rows="2", max_in_flight_batches="4")
    rig.source.produce(A, [event(f"p{i}") for i in range(6)])
    rig.source.assign({A})
    rig.turns()  # 6 events, 2 rows a batch: batches 1 and 2 cut by rows, 3 open
    first, second = (b.batch_id for b, _ in rig.uploads.submitted)
    rig.uploads.accept(second)
    rig.turns()
    assert A not in rig.source.stored  # offsets 0-1 (batch 1) hold back 2-3
    rig.uploads.accept(first)
    rig.turns()
    assert rig.source.stored[A] == 4
    rig.turns(seconds=rig.settings.batch_linger_seconds)  # the open batch lingers out
    rig.uploads.accept(rig.uploads.submitted[-1][0].batch_id)
    rig.turns()
    assert rig.source.stored[A] == 6
    stored = [call[A] for call in rig.source.store_calls if A in call]
    assert stored == sorted(stored)  # never backwards


def test_a_poison_record_holds_its_offset_until_its_dead_letter_landed() -> None:
    rig = Rig()
    rig.source.produce(A, [event("p0"), b"not avro", event("p2")])
    rig.source.assign({A})
    assert rig.dead_letters is not None
    rig.dead_letters.hold = True
    rig.turns()
    rig.turns(seconds=rig.settings.batch_linger_seconds)
    assert rig.source.stored[A] == 1  # p0's batch accepted, the poison record not landed
    rig.dead_letters.hold = False
    rig.turns()
    assert rig.source.stored[A] == 3
    assert [letter.offset for letter in rig.dead_letters.landed] == [1]


def test_an_event_older_than_what_was_sent_settles_without_an_upload() -> None:
    rig = Rig()
    rig.source.produce(B, [event("p", occurred_at=200, tier="gold")])
    rig.source.produce(A, [event("p", occurred_at=100, tier="silver")])
    rig.source.assign({B})
    rig.turns()
    rig.turns(seconds=rig.settings.batch_linger_seconds)
    uploads = len(rig.uploads.submitted)
    assert uploads == 1
    rig.source.assign({A})
    rig.turns(2, seconds=rig.settings.batch_linger_seconds)
    assert rig.source.stored[A] == 1
    assert len(rig.uploads.submitted) == uploads


def test_revoke_waits_for_batches_in_flight_and_commits_them() -> None:
    rig = Rig()
    rig.source.produce(A, [event(f"a{i}") for i in range(3)])
    rig.source.assign({A})
    rig.turns()
    assert not rig.source.commits
    rig.source.revoke({A})  # the open batch is cut, uploaded and settled inside revoke
    assert rig.source.commits == [{A: 3}]
    assert sorted(rig.uploaded_profiles()) == ["a0", "a1", "a2"]


def test_revoke_with_target_down_leaves_rows_to_the_new_owner_and_rewinds_shared_ones() -> None:
    rig = Rig(auto_accept=False)
    rig.source.produce(A, [event("a0"), event("a1")])
    rig.source.produce(B, [event("b0"), event("b1")])
    rig.source.assign({A, B})
    rig.turns()  # one open batch holds rows of A and B
    started = rig.clock.monotonic()
    rig.source.revoke({A})
    # Waited the revoke timeout (on the fake clock), then gave up on the shared batch.
    assert rig.clock.monotonic() - started >= rig.settings.revoke_timeout_seconds
    [batch] = [b for b, _ in rig.uploads.submitted]
    assert rig.uploads.cancelled == [batch.batch_id]
    assert A not in rig.source.committed
    assert rig.source.rewound == [{B}]
    # Target is back: B is read again from its committed offset and fully delivered.
    rig.uploads.auto_accept = True
    rig.turns(2, seconds=rig.settings.batch_linger_seconds)
    assert rig.source.stored == {B: 2}
    assert rig.uploaded_profiles().count("b0") == 2  # once cancelled, once delivered
    assert "a0" not in rig.uploaded_profiles()[2:]  # A is the new owner's now


def test_lost_partitions_drop_their_batches_at_once_without_committing() -> None:
    rig = Rig(auto_accept=False, batch_max_rows="2")
    rig.source.produce(A, [event("a0"), event("a1")])
    rig.source.produce(B, [event("b0")])
    rig.source.assign({A, B})
    rig.turns()  # batch of a0, a1 cut by rows and in flight; b0 open
    [in_flight] = [b.batch_id for b, _ in rig.uploads.submitted]
    started = rig.clock.monotonic()
    rig.source.lose({A})
    assert rig.clock.monotonic() == started  # nothing waited for
    assert rig.uploads.cancelled == [in_flight]
    assert rig.source.commits == [] and rig.source.rewound == []  # B shared nothing
    rig.uploads.auto_accept = True
    rig.turns(2, seconds=rig.settings.batch_linger_seconds)
    assert rig.source.stored == {B: 1}


def test_shutdown_with_a_full_buffer_uploads_and_commits_everything() -> None:
    rig = Rig(batch_linger_seconds="3600")
    rig.source.produce(A, [event(f"a{i}") for i in range(50)])
    rig.source.produce(B, [event(f"b{i}") for i in range(50)])
    rig.source.assign({A, B})
    rig.turns(3)
    assert rig.uploads.submitted == []  # all of it still buffered
    assert rig.loop.shutdown() is True
    assert rig.source.committed == {A: 50, B: 50}
    assert len(rig.uploaded_profiles()) == 100
    assert [b.trigger for b, _ in rig.uploads.submitted] == ["shutdown"]
    assert rig.uploads.closed and rig.source.closed


def test_shutdown_with_target_down_gives_up_at_its_deadline_and_commits_nothing() -> None:
    rig = Rig(auto_accept=False, shutdown_timeout_seconds="10")
    rig.source.produce(A, [event("a0")])
    rig.source.assign({A})
    rig.turns()
    assert rig.loop.shutdown() is False
    assert rig.clock.monotonic() - 1000.0 < 10
    assert A not in rig.source.committed
    assert rig.source.closed


def test_backpressure_pauses_while_batches_wait_and_resumes_when_they_drain() -> None:
    rig = Rig(auto_accept=False, batch_max_rows="2", max_in_flight_batches="1")
    rig.source.produce(A, [event(f"a{i}") for i in range(8)])
    rig.source.assign({A})
    rig.turns()  # 4 batches cut by rows (the last still open), one may be in flight
    assert rig.source.paused == {A}
    assert rig.gauge("partitions_paused") == 1
    rig.source.produce(A, [event("late")])
    rig.turns()
    assert rig.source.position[A] == 8  # nothing read while paused
    for _ in range(8):
        assert len(rig.uploads.held) <= 1  # never more than the bound
        for batch_id in list(rig.uploads.held):
            rig.uploads.accept(batch_id)
        rig.turns()
    assert rig.source.paused == set()
    assert rig.gauge("partitions_paused") == 0
    rig.uploads.auto_accept = True
    rig.turns(2, seconds=rig.settings.batch_linger_seconds)
    assert rig.source.stored[A] == 9
    assert rig.uploads.peak == 1


def test_a_stuck_batch_is_resubmitted_through_the_same_bounded_queue() -> None:
    rig = Rig(auto_accept=False, follow=True, batch_max_rows="2", max_in_flight_batches="1")
    assert rig.follower is not None
    rig.source.produce(A, [event(f"a{i}") for i in range(4)])
    rig.source.assign({A})
    rig.turns()
    first = rig.uploads.submitted[0][0].batch_id
    rig.uploads.accept(first)
    rig.turns(seconds=rig.settings.batch_linger_seconds)  # the second batch is cut
    rig.turns()  # and goes out
    second = rig.uploads.submitted[1][0].batch_id
    rig.follower.finish(first, FinalStatus.STUCK)
    rig.turns(3)
    # The resubmission waits (turn after turn): one batch is already in flight.
    assert [resub for _, resub in rig.uploads.submitted] == [False, False]
    assert rig.source.paused == {A}  # something waits to be sent
    rig.uploads.accept(second)
    rig.turns(2)  # the result frees the slot, the next turn submits
    assert [(b.batch_id, resub) for b, resub in rig.uploads.submitted][-1] == (first, True)
    assert rig.uploads.peak == 1
    rig.uploads.accept(first)
    rig.turns()
    assert rig.follower.following[first][1] == 1  # followed again, one resubmission spent
    assert rig.source.stored[A] == 4


def test_linger_waits_for_the_call_budget_and_the_batch_grows_meanwhile() -> None:
    budget = CallBudget(2, now=FakeClock().monotonic())  # two calls a minute for this replica
    rig = Rig(budget=budget, batch_linger_seconds="1", batch_max_rows="50")
    rig.source.assign({A})
    for _ in range(2):  # the two calls of this minute go elsewhere (say, uploads)
        assert budget.take(CallKind.UPLOAD, rig.clock.monotonic()) == 0.0
    rig.source.produce(A, [event("a1"), event("a2")])
    rig.turns(3, seconds=1)
    assert rig.uploads.submitted == []  # linger passed, but no call is left: no cut
    rig.source.produce(A, [event(f"b{i}") for i in range(10)])
    rig.turns(3, seconds=10)
    assert rig.uploads.submitted == []
    rig.turns(seconds=40)  # the calls leave the window: one batch with everything
    assert [len(parse_batch(b.body)[1]) for b, _ in rig.uploads.submitted] == [12]
    assert rig.source.stored[A] == 12


def test_the_row_cap_still_cuts_when_calls_are_scarce() -> None:
    budget = CallBudget(1, now=FakeClock().monotonic())
    assert budget.take(CallKind.UPLOAD, FakeClock().monotonic()) == 0.0
    rig = Rig(budget=budget, batch_linger_seconds="1", batch_max_rows="5")
    rig.source.assign({A})
    rig.source.produce(A, [event(f"a{i}") for i in range(12)])
    rig.turns(2, seconds=1)
    # Two full batches are cut and queued (the fakes send at once); the remainder waits.
    assert [len(parse_batch(b.body)[1]) for b, _ in rig.uploads.submitted] == [5, 5]
    assert rig.loop.batcher.buffered_rows == 2


def test_a_batch_whose_status_is_unknown_is_released_never_resent() -> None:
    rig = Rig(follow=True)
    assert rig.follower is not None
    rig.source.assign({A})
    rig.source.produce(A, [event("a1")])
    rig.turns(2, seconds=rig.settings.batch_linger_seconds)
    first = rig.uploads.submitted[0][0].batch_id
    rig.follower.finish(first, FinalStatus.UNKNOWN)
    rig.turns(3)
    assert [resub for _, resub in rig.uploads.submitted] == [False]
    assert rig.dead_letters is not None and rig.dead_letters.pending == 0
    assert rig.source.stored[A] == 1
    assert (
        rig.registry.get_sample_value("profile_sync_batch_status_total", {"status": "unknown"}) == 1
    )


def test_a_full_carry_forward_pauses_consumption_until_batches_complete() -> None:
    # Only rows of pending batches left to forget: forgetting one could lose its
    # attributes to a later batch, so the loop waits for completions instead.
    rig = Rig(follow=True, carry_forward_max_bytes="1000000")
    assert rig.follower is not None
    rig.source.assign({A})
    rig.source.produce(A, [event(f"a{i}", note="x" * 60_000) for i in range(20)])
    rig.turns(2, seconds=rig.settings.batch_linger_seconds)
    assert rig.loop.carry is not None and rig.loop.carry.over_bound
    assert rig.source.paused == {A}
    rig.source.produce(A, [event("late")])
    rig.turns(2, seconds=rig.settings.batch_linger_seconds)
    assert rig.source.position[A] == 20  # nothing read while the memory is full
    for batch_id in list(rig.follower.following):
        rig.follower.finish(batch_id, FinalStatus.COMPLETE)
    rig.turns(2, seconds=rig.settings.batch_linger_seconds)
    assert rig.source.paused == set() and rig.source.position[A] == 21
    assert rig.gauge("carry_forward_bytes") is not None
    assert (rig.gauge("carry_forward_bytes") or 0) <= 1_000_000
    assert (rig.gauge("carry_forward_evictions_total") or 0) > 0
