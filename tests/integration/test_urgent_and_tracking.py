"""The urgent path, carry-forward across overlapping batches, and batch-status tracking."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.conftest import Stack
from tests.integration.events import event, random_events
from tests.integration.service import wait_for


def _single_requests(s: Stack) -> list[dict[str, object]]:
    return [r for r in s.emulator.control.requests() if r.get("api") == "single"]


@pytest.mark.parametrize("mode", ["never", "always"])
def test_urgent_events_reach_the_single_api_long_before_linger(
    stack: Callable[..., Stack], mode: str
) -> None:
    s = stack(partitions=1, topics=1, mode=mode)
    service = s.start(PROFILE_SYNC_BATCH_LINGER_SECONDS="30")
    wait_for(lambda: service.metric("profile_sync_partitions_assigned") >= 1, 60, "assignment")
    normal = [event(f"crm-{i}", {"tier": "silver"}, 1_000 + i) for i in range(20)]
    urgent = [
        event(f"crm-{i}", {"tier": "gold", "swipedAt": i}, 2_000 + i, priority="URGENT")
        for i in range(5)
    ]
    s.produce(normal)
    produced_at = time.monotonic()
    s.produce(urgent)

    wait_for(lambda: len(_single_requests(s)) >= 5, 10, "five single updates")
    delay = time.monotonic() - produced_at
    assert delay < 30 / 4, f"urgent path took {delay:.1f}s, linger is 30s"
    assert s.emulator.control.stats()["bulk_requests"] == 0  # still lingering

    service.signal(signal.SIGTERM)
    assert service.wait(30) == 0
    s.wait_for_state(s.expected(normal + urgent))
    assert s.all_committed(), s.uncommitted()


def test_past_the_budget_urgent_events_fall_back_to_bulk(stack: Callable[..., Stack]) -> None:
    s = stack(partitions=1, topics=1)
    urgent = [
        event(f"crm-{i}", {"tier": "gold", "n": i}, 1_000 + i, priority="URGENT") for i in range(30)
    ]
    s.produce(urgent)

    s.run_to_idle(PROFILE_SYNC_SINGLE_QUOTA_PER_DAY="10")

    assert len(_single_requests(s)) == 10
    s.wait_for_state(s.expected(urgent))
    assert s.all_committed(), s.uncommitted()


def test_ids_and_names_target_refuses_go_to_the_dlq_and_their_neighbours_land(
    stack: Callable[..., Stack],
) -> None:
    s = stack(partitions=1, topics=1)
    refused = {
        "third_party_id_forbidden_character": [
            event("crm+1", {"tier": "gold"}, 1_000, priority="URGENT"),
            event("crm/2", {"tier": "gold"}, 1_001),
        ],
        "profile_id_too_long": [event("x" * 300, {"tier": "gold"}, 1_002, priority="URGENT")],
        "attribute_name_too_long": [event("crm-3", {"n" * 129: "v", "tier": "gold"}, 1_003)],
    }
    good = [
        event("crm-3", {"tier": "silver"}, 900),
        event("crm-4", {"tier": "gold", "note": "v" * 300}, 1_004, priority="URGENT"),
        event("crm-5", {"tier": "bronze", "n" * 128: "longest name"}, 1_005),
        event("a+b/c", {"tier": "gold"}, 1_006, id_type="PC_ID"),  # pcIds have no such rule
    ]
    mixed = [good[0], *refused["third_party_id_forbidden_character"], good[1]]
    mixed += [*refused["profile_id_too_long"], good[2], *refused["attribute_name_too_long"]]
    s.produce([*mixed, good[3]])

    summary = s.run_to_idle()

    letters = s.dead_letters(4)
    reasons = sorted(dict(m.headers())["profile-sync.reason"].decode() for m in letters)
    assert reasons == sorted(r for r, events in refused.items() for _ in events)
    assert summary["events_poison"] == 4
    s.wait_for_state(s.expected(good))
    # The long value was sent as it is (Target truncates it only for in-mbox use).
    assert s.target_state()[("thirdPartyId", "crm-4")]["note"] == "v" * 300
    # Of the three urgent events only crm-4's was valid: one single call, and it succeeded.
    assert [r["status"] for r in _single_requests(s)] == [200]
    assert s.all_committed(), s.uncommitted()


def test_a_slow_bulk_batch_cannot_undo_a_newer_urgent_update(stack: Callable[..., Stack]) -> None:
    # Target applies bulk batches much later than single updates here.
    s = stack(partitions=1, topics=1, bulk_apply_delay=3.0, single_apply_delay=0.0)
    before = event("crm-1", {"tier": "silver", "city": "Oslo"}, 1_000)
    urgent = event("crm-1", {"tier": "gold"}, 2_000, priority="URGENT")
    after = event("crm-1", {"city": "Bergen"}, 3_000)
    s.produce([before, urgent, after])

    s.run_to_idle()

    wait_for(lambda: s.emulator.control.stats()["batches"].get("complete", 0) >= 1, 30, "apply")
    s.wait_for_state(s.expected([before, urgent, after]))
    assert s.target_state()[("thirdPartyId", "crm-1")] == {"tier": "gold", "city": "Bergen"}


@pytest.mark.parametrize("carry_forward", [True, False], ids=["carry-forward", "without"])
def test_overlapping_batches_in_replace_pending_mode(
    stack: Callable[..., Stack], carry_forward: bool
) -> None:
    # The repartition mode always carries forward (docs/repartition.md): "without" is a
    # direct-mode case.
    s = stack(
        partitions=1,
        topics=1,
        mode="" if carry_forward else "never",
        bulk_apply_delay=4.0,
        override_mode="replace-pending",
    )
    # Each profile gets different attributes in consecutive batches that overlap at Target.
    waves = [
        [event(f"crm-{p}", {f"attr{w}": f"v{w}", "wave": w}, 1_000 * w + p) for p in range(50)]
        for w in range(1, 4)
    ]
    service = s.start(
        PROFILE_SYNC_BATCH_LINGER_SECONDS="0.3",
        PROFILE_SYNC_CARRY_FORWARD_ENABLED="true" if carry_forward else "false",
    )
    wait_for(lambda: service.metric("profile_sync_partitions_assigned") >= 1, 60, "assignment")
    for w, wave in enumerate(waves, start=1):
        s.produce(wave)
        wait_for(
            lambda w=w: service.metric("profile_sync_batches_total", outcome="accepted") >= w,
            30,
            f"batch of wave {w} accepted",
        )
    service.signal(signal.SIGTERM)
    assert service.wait(30) == 0
    expected = s.expected([e for wave in waves for e in wave])
    if carry_forward:
        s.wait_for_state(expected, timeout=30)
    else:
        # Without carry-forward Target keeps only the last batch's row: attributes lost.
        wait_for(lambda: s.emulator.control.stats()["batches"].get("complete", 0) >= 3, 30, "apply")
        assert s.target_state() != expected
        assert s.target_state()[("thirdPartyId", "crm-0")] == {"attr3": "v3", "wave": "3"}


def test_stuck_batches_are_resubmitted_then_dead_lettered(stack: Callable[..., Stack]) -> None:
    s = stack(partitions=1, topics=1)
    s.emulator.control.inject({"api": "bulk", "stuck": True, "count": 3})
    events = [event(f"crm-{i}", {"tier": "gold"}, 1_000 + i) for i in range(10)]
    s.produce(events)

    service = s.start(PROFILE_SYNC_STATUS_MAX_RESUBMITS="2")
    letters = s.dead_letters(10, timeout=60)
    assert {m.key().decode() for m in letters} == {f"crm-{i}" for i in range(10)}
    assert all(dict(m.headers())["profile-sync.reason"] == b"batch_stuck" for m in letters)
    assert service.metric("profile_sync_batch_resubmissions_total") == 2
    assert service.metric("profile_sync_batch_status_total", status="stuck") == 3
    assert s.emulator.control.stats()["bulk_requests"] == 3
    service.signal(signal.SIGTERM)
    assert service.wait(30) == 0


def test_a_stuck_batch_that_completes_on_resubmission_is_not_dead_lettered(
    stack: Callable[..., Stack],
) -> None:
    s = stack(partitions=1, topics=1)
    s.emulator.control.inject({"api": "bulk", "stuck": True, "count": 1})
    events = random_events(200, 40, seed=11)
    s.produce(events)

    service = s.start()
    wait_for(
        lambda: service.metric("profile_sync_batch_status_total", status="complete") >= 1,
        60,
        "the resubmitted batch to complete",
    )
    assert service.metric("profile_sync_batch_resubmissions_total") == 1
    service.signal(signal.SIGTERM)
    assert service.wait(30) == 0
    s.wait_for_state(s.expected(events))


def test_the_urgent_path_can_be_turned_off(stack: Callable[..., Stack]) -> None:
    s = stack(partitions=1, topics=1)
    urgent = [event(f"crm-{i}", {"tier": "gold"}, 1_000 + i, priority="URGENT") for i in range(5)]
    s.produce(urgent)

    s.run_to_idle(PROFILE_SYNC_SINGLE_ENABLED="false")

    assert _single_requests(s) == []
    s.wait_for_state(s.expected(urgent))


def test_the_single_update_budget_survives_a_restart(
    stack: Callable[..., Stack], tmp_path: Path
) -> None:
    s = stack(partitions=1, topics=1)
    state = str(tmp_path / "single-quota.json")
    first = [event(f"crm-{i}", {"n": i}, 1_000 + i, priority="URGENT") for i in range(6)]
    s.produce(first)
    s.run_to_idle(PROFILE_SYNC_SINGLE_QUOTA_PER_DAY="8", PROFILE_SYNC_SINGLE_QUOTA_STATE_FILE=state)
    assert len(_single_requests(s)) == 6

    second = [event(f"crm-{i}", {"n": 10 + i}, 2_000 + i, priority="URGENT") for i in range(6)]
    s.produce(second)
    s.run_to_idle(PROFILE_SYNC_SINGLE_QUOTA_PER_DAY="8", PROFILE_SYNC_SINGLE_QUOTA_STATE_FILE=state)

    # Only 2 of the 8 were left after the restart; the rest went through bulk alone.
    assert len(_single_requests(s)) == 8
    s.wait_for_state(s.expected(first + second))


def test_urgent_events_in_a_saturating_backlog_are_all_sent_and_shutdown_drains(
    stack: Callable[..., Stack],
) -> None:
    # Issue 18: urgent events buried in a backlog the service consumes as fast as it can
    # still reach the single API (none starved behind the bulk work), and a SIGTERM right
    # after still exits within the shutdown timeout with everything in Target and committed.
    s = stack(partitions=2, topics=1)
    background = random_events(20_000, 2_000, seed=18, start_ms=1_000)
    urgent = [
        event(f"urgent-{i}", {"tier": "gold", "n": i}, 50_000 + i, priority="URGENT")
        for i in range(30)
    ]
    s.produce(background[:10_000])
    s.produce(urgent)
    s.produce(background[10_000:])
    service = s.start(
        PROFILE_SYNC_BATCH_LINGER_SECONDS="30", PROFILE_SYNC_SHUTDOWN_TIMEOUT_SECONDS="15"
    )

    def outcome(name: str) -> float:
        return service.metric("profile_sync_single_updates_total", outcome=name)

    # Every urgent event gets its single call (the emulator accepts it), none is skipped.
    wait_for(lambda: outcome("sent") >= len(urgent), 60, "a single update per urgent event")
    skipped = service.metric("profile_sync_single_updates_total") - outcome("sent")
    assert skipped == 0, service.metrics()
    assert len(_single_requests(s)) >= len(urgent)

    # The whole backlog read (none of it uploaded yet: 30 s linger), then the SIGTERM.
    total = len(background) + len(urgent)
    wait_for(
        lambda: service.metric("profile_sync_events_consumed_total") >= total,
        60,
        "the backlog consumed",
    )
    service.signal(signal.SIGTERM)
    assert service.wait(15 + 5) == 0  # the shutdown timeout, plus the interpreter's exit
    s.wait_for_state(s.expected(background + urgent))
    assert s.all_committed(), s.uncommitted()
