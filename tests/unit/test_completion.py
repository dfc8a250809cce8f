"""The complete-up-to offset (consumer/core/completion.py): what a restart re-reads."""

from __future__ import annotations

import random

from consumer.core.completion import Completion, metadata_for, parse_metadata
from consumer.core.model import TopicPartition

TP = TopicPartition("t", 0)
TP2 = TopicPartition("t", 1)


def test_metadata_round_trips_and_foreign_metadata_means_nothing_known() -> None:
    assert parse_metadata(metadata_for(42)) == 42
    for other in (
        None,
        "",
        "something else",
        "profile-sync/1 complete=x",
        "profile-sync/1 complete=-3",
    ):
        assert parse_metadata(other) is None


def test_the_offset_waits_for_every_open_batch_below_it() -> None:
    c = Completion()
    c.accepted(1, {TP})
    c.moved({TP: 10})
    assert c.complete_up_to(TP) is None  # batch 1 holds offsets below 10 and is open
    c.accepted(2, {TP})
    c.moved({TP: 20})
    c.completed(2)
    assert c.complete_up_to(TP) is None  # batch 1 still open
    c.completed(1)
    assert c.complete_up_to(TP) == 20
    assert c.take_changed() == {TP: 20}
    assert c.take_changed() == {}


def test_partitions_are_independent_and_forget_drops_state() -> None:
    c = Completion()
    c.accepted(1, {TP, TP2})
    c.accepted(2, {TP2})
    c.moved({TP: 5, TP2: 7})
    c.completed(1)
    assert c.complete_up_to(TP) == 5 and c.complete_up_to(TP2) is None
    c.forget({TP2})
    assert c.complete_up_to(TP2) is None and c.open_batches == 0


def test_model_never_claims_an_offset_whose_batch_is_open() -> None:
    """Random acceptances, moves and completions against a per-offset oracle."""
    rng = random.Random(7)
    for _ in range(200):
        c = Completion()
        batch_of: dict[int, int] = {}  # offset -> batch
        open_batches: set[int] = set()
        offset = 0
        next_batch = 1
        pending: list[int] = []  # cut, not yet accepted (in order)
        for _ in range(60):
            action = rng.random()
            if action < 0.4:
                bid = next_batch
                next_batch += 1
                for _ in range(rng.randint(1, 3)):
                    batch_of[offset] = bid
                    offset += 1
                pending.append(bid)
            elif action < 0.7 and pending:
                bid = pending.pop(0)  # uploads are accepted in cut order
                c.accepted(bid, {TP})
                open_batches.add(bid)
                accepted_up_to = max(o for o, b in batch_of.items() if b == bid) + 1
                c.moved({TP: accepted_up_to})
            elif open_batches:
                bid = rng.choice(sorted(open_batches))
                open_batches.discard(bid)
                c.completed(bid)
            done = c.complete_up_to(TP)
            if done is not None:
                assert all(batch_of[o] not in open_batches for o in range(done))
                assert all(batch_of[o] not in pending for o in range(done))
