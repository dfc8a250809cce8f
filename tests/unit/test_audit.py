"""The audit's decisions: which profiles are sampled, what a read back means, memory bounds."""

from __future__ import annotations

import math

from consumer.core.audit import (
    MAX_READ_ATTEMPTS,
    AuditQueue,
    AuditRow,
    Kind,
    Step,
    held_values,
    judge,
    next_step,
    sampled,
)
from consumer.core.model import BatchFile, IdType
from consumer.target.wire import encode_batch

T = IdType.THIRD_PARTY_ID


def batch(batch_id: int, rows: list[tuple[str, dict[str, str]]]) -> BatchFile:
    return BatchFile(batch_id, T, encode_batch(T, rows), len(rows), len(rows), "linger", 1, 2)


def row(sent: dict[str, str], repairs: int = 0) -> AuditRow:
    return AuditRow(T, "p1", sent, 7, 1, 0.0, Kind.SAMPLE, repairs)


def test_sample_share_is_the_share_of_profiles_and_stable() -> None:
    ids = [f"crm-{i}" for i in range(20_000)]
    picked = [i for i in ids if sampled(T, i, 0.1)]
    # binomial(20000, 0.1): sd = 42; 5 sd either side
    assert abs(len(picked) - 2000) < 5 * math.sqrt(20_000 * 0.1 * 0.9)
    assert picked == [i for i in ids if sampled(T, i, 0.1)]
    assert all(sampled(T, i, 0.2) for i in picked)  # a larger share keeps the smaller's
    assert all(sampled(T, i, 1.0) for i in ids[:100])
    assert not any(sampled(T, i, 0.0) for i in ids[:100])


def test_judge_tells_matching_superseded_and_lost() -> None:
    sent = {"tier": "gold", "ltv": "10", "store": "s1", "email": "a@b"}
    held = {"tier": "gold", "ltv": "9", "email": "x@y"}
    verdict = judge(row(sent), held, lambda name: name == "email")
    assert verdict.matching == ("tier",)
    assert verdict.superseded == ("email",)
    assert verdict.lost == {"ltv": "10", "store": "s1"}


def test_a_profile_target_does_not_have_loses_every_attribute() -> None:
    verdict = judge(row({"tier": "gold"}), None, lambda _n: False)
    assert verdict.lost == {"tier": "gold"}


def test_repairs_are_bounded_then_the_dlq() -> None:
    lost = judge(row({"tier": "gold"}), {}, lambda _n: False)
    assert next_step(row({"tier": "gold"}, repairs=0), lost, 2) is Step.REPAIR
    assert next_step(row({"tier": "gold"}, repairs=1), lost, 2) is Step.REPAIR
    assert next_step(row({"tier": "gold"}, repairs=2), lost, 2) is Step.DEAD_LETTER
    whole = judge(row({"tier": "gold"}), {"tier": "gold"}, lambda _n: False)
    assert next_step(row({"tier": "gold"}, repairs=2), whole, 2) is Step.DONE


def test_held_values_reads_target_json() -> None:
    profile = {
        "visitorId": "p1",
        "profileAttributes": {"tier": {"value": "gold", "modifiedAt": "x"}, "n": {"value": 3}},
    }
    assert held_values(profile) == {"tier": "gold", "n": "3"}
    assert held_values(None) is None


def test_rows_wait_for_the_settling_delay() -> None:
    q = AuditQueue(share=1.0, settle_seconds=60, max_pending=100)
    assert q.on_complete(batch(1, [("a", {"x": "1"}), ("b", {"x": "2"})]), now=100.0) == 2
    assert q.take_due(159.9, 10) == []
    due = q.take_due(160.0, 1)
    assert [(r.profile_id, r.sent) for r in due] == [("a", {"x": "1"})]
    assert [r.profile_id for r in q.take_due(160.0, 10)] == ["b"]
    assert q.pending == 0


def test_pending_rows_are_bounded_and_the_rest_counted() -> None:
    q = AuditQueue(share=1.0, settle_seconds=0, max_pending=3)
    q.on_complete(batch(1, [(f"p{i}", {"x": "1"}) for i in range(5)]), now=0.0)
    assert q.pending == 3
    assert q.skipped == 2


def test_a_failed_read_is_tried_again_a_bounded_number_of_times() -> None:
    q = AuditQueue(share=1.0, settle_seconds=0, max_pending=10)
    q.on_complete(batch(1, [("a", {"x": "1"})]), now=0.0)
    (r,) = q.take_due(0.0, 10)
    tries = 1
    while q.read_failed(r, now=float(tries)):
        assert q.take_due(float(tries), 10) == []  # not at once: after a pause
        (r,) = q.take_due(float(tries) + 3600, 10)
        tries += 1
    assert tries == MAX_READ_ATTEMPTS
    assert q.pending == 0


def test_a_repair_batch_is_read_back_whatever_the_sample() -> None:
    q = AuditQueue(share=0.0, settle_seconds=0, max_pending=10)
    assert q.on_complete(batch(1, [("a", {"x": "1"})]), now=0.0) == 0
    assert q.repair_sent((T, "a"), {5}) == 1
    q.on_complete(batch(5, [("a", {"x": "1"}), ("b", {"y": "2"})]), now=1.0)
    (r,) = q.take_due(1.0, 10)
    assert (r.profile_id, r.kind, r.repairs) == ("a", Kind.REPAIR, 1)
    assert q.repair_sent((T, "a"), {6}) == 2
    q.repair_ended((T, "a"))
    assert q.repairing == 0


def test_repairs_of_a_batch_that_never_completes_are_forgotten() -> None:
    q = AuditQueue(share=0.0, settle_seconds=0, max_pending=10)
    q.repair_sent((T, "a"), {5})
    q.batch_gone(5)
    assert q.repairing == 0
    assert q.on_complete(batch(5, [("a", {"x": "1"})]), now=0.0) == 0


def test_profiles_under_repair_are_bounded() -> None:
    q = AuditQueue(share=0.0, settle_seconds=0, max_pending=2)
    for i in range(5):
        q.repair_sent((T, f"p{i}"), {i})
    assert q.repairing == 2


def test_completed_batches_scanned_in_steps_schedule_what_a_whole_scan_does() -> None:
    # The loop scans a few thousand rows a turn; long rows and special characters cross
    # the step boundaries. Until a batch is scanned it still counts as waiting.
    files = [
        batch(
            b,
            [(f"p {b}-{i}%", {"x": "é" * (i % 7), "y": "," * (i % 3) or "v"}) for i in range(900)]
            + [(f"long-{b}", {"x": "z" * 200_000})],
        )
        for b in (1, 2, 3)
    ]
    whole = AuditQueue(share=0.3, settle_seconds=0, max_pending=10_000)
    stepped = AuditQueue(share=0.3, settle_seconds=0, max_pending=10_000)
    expected = sum(whole.on_complete(f, now=0.0) for f in files)
    for f in files:
        stepped.defer(f, now=0.0)
    assert stepped.take_due(0.0, 10_000) == []  # nothing scanned yet
    assert stepped.pending >= len(files)
    scheduled = [stepped.scan(max_rows=50) for _ in range(200)]  # 3 x 901 rows: 55 steps
    assert len([n for n in scheduled if n]) > 3  # several steps per batch
    assert sum(scheduled) == expected
    assert stepped.pending == whole.pending == expected
    assert stepped.take_due(0.0, 10_000) == whole.take_due(0.0, 10_000)
