"""Living within Target's documented limits (issue 11), against the emulator's defaults.

The emulator here keeps Target's limit of 50 bulk-API calls a minute per tenant (503 past
it) and, where said, forgets batch statuses; the service budgets its calls
(PROFILE_SYNC_TARGET_CALLS_PER_MINUTE, default 40) across the replicas of its group.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

from tests.integration.conftest import Stack
from tests.integration.events import event, random_events
from tests.integration.service import Service, wait_for

TENANT_LIMIT = 50  # the emulator's default, Target's documented limit
SMALL_BUDGET = 12  # calls a minute; the service's default is 40


def _consumed(services: list[Service]) -> float:
    return sum(s.metric("profile_sync_events_consumed_total") for s in services if s.alive())


def test_four_replicas_share_one_tenant_budget_as_members_join_and_leave(
    stack: Callable[..., Stack],
) -> None:
    s = stack(partitions=4, topics=2, bulk_rate_limit=TENANT_LIMIT)
    events = random_events(4_000, 600, seed=21)

    def topic_of(e: dict[str, Any]) -> str:  # one topic per profile (see guarantees.md)
        return s.topics[sum(map(ord, str(e["profile"]["id"]))) % 2]

    def produce_split(batch: list[dict[str, Any]]) -> None:
        for topic in s.topics:
            s.produce([e for e in batch if topic_of(e) == topic], topic=topic)

    # A short linger: without the budget these replicas would upload every half second.
    # A budget of 12 calls a minute (3-4 per replica) is below what they ask for however
    # fast this machine takes the stream in (with the default 40, a fast run could be over
    # before any replica had used its share, and nothing would show the budget at work).
    settings = {
        "PROFILE_SYNC_BATCH_LINGER_SECONDS": "0.5",
        "PROFILE_SYNC_TARGET_CALLS_PER_MINUTE": str(SMALL_BUDGET),
    }
    replicas = [s.start(**settings) for _ in range(3)]
    for r in replicas:
        wait_for(lambda r=r: r.metric("profile_sync_partitions_assigned") >= 1, 60, "assigned")
    rounds = [events[i : i + 400] for i in range(0, len(events), 400)]
    leaving: Service | None = None
    for k, chunk in enumerate(rounds):
        if k == 3:  # a fourth replica joins under load
            replicas.append(s.start(**settings))
        if k == 6:  # and one leaves
            leaving = replicas.pop(0)
            leaving.signal(signal.SIGTERM)
        produce_split(chunk)
        # Sustained load: the next round once the group has taken this one in.
        produced = (k + 1) * 400
        wait_for(lambda p=produced: _consumed(replicas) >= p * 0.5, 60, f"round {k} consumed")
    assert leaving is not None and leaving.wait(60) == 0

    wait_for(s.all_committed, 150, "every offset committed")
    s.wait_for_state(s.expected(events), timeout=60)
    rate = s.emulator.control.stats()["bulk_rate"]
    waited = sum(r.metric("profile_sync_budget_waits_total", api="upload") for r in replicas)
    print("bulk_rate", rate, "upload waits", waited)
    for r in replicas:
        r.signal(signal.SIGTERM)
    for r in replicas:
        assert r.wait(60) == 0, r.log_tail()

    # The calls a minute stayed within the tenant's limit, within the budget but for the
    # moments of a membership change (a new member spends before the others see it).
    assert rate["peak_calls_in_window"] <= TENANT_LIMIT, rate
    # (A joining member spends its share before the others have seen it: about one share
    # over, which at this budget is 3-4 calls.)
    assert rate["peak_admitted_in_window"] <= SMALL_BUDGET + 6, rate
    assert rate["refused_503"] <= 3, rate
    # The budget was what held uploads back: batches grew instead of going out every 0.5 s.
    assert waited >= 1


def test_forgotten_statuses_are_normal_no_resend_no_dlq(stack: Callable[..., Stack]) -> None:
    # Target keeps only the last few statuses: here 3, while many batches are in flight.
    s = stack(
        partitions=2,
        topics=1,
        bulk_rate_limit=TENANT_LIMIT,
        status_retention_count=3,
        bulk_apply_delay=1.0,
    )
    events = random_events(1_500, 300, seed=5)
    service = s.start(
        PROFILE_SYNC_BATCH_LINGER_SECONDS="0.2",
        PROFILE_SYNC_BATCH_MAX_ROWS="40",
        PROFILE_SYNC_STATUS_POLL_INITIAL_SECONDS="2",
        PROFILE_SYNC_STATUS_POLL_MAX_SECONDS="4",
        PROFILE_SYNC_STATUS_UNKNOWN_RELEASE_SECONDS="2",
        PROFILE_SYNC_TARGET_CALLS_PER_MINUTE="45",
    )
    s.produce(events)

    wait_for(
        lambda: service.metric("profile_sync_batch_status_total", status="unknown") >= 5,
        120,
        "statuses forgotten",
    )
    wait_for(s.all_committed, 120, "every offset committed")
    s.wait_for_state(s.expected(events), timeout=60)
    accepted = service.metric("profile_sync_batches_total", outcome="accepted")
    service.signal(signal.SIGTERM)
    assert service.wait(60) == 0

    stats = s.emulator.control.stats()
    assert stats["bulk_requests"] == accepted  # no batch uploaded twice
    assert service.metric("profile_sync_batch_resubmissions_total") == 0
    assert service.metric("profile_sync_dead_letters_total") == 0
    assert stats["bulk_rate"]["refused_503"] == 0


def test_under_reading_b_no_column_is_ever_shifted(stack: Callable[..., Stack]) -> None:
    s = stack(partitions=1, topics=1, decoding="B", bulk_rate_limit=TENANT_LIMIT)
    unsafe_values = ["a,b", "line\nbreak", "x,y,z", "cr\rlf\n", ",", "trailing,"]
    safe, unsafe = [], []
    for i in range(120):
        pid = f"crm-{i % 40}"
        if i % 4 == 1:
            value = unsafe_values[i % len(unsafe_values)]
            unsafe.append(event(pid, {"note": value, "tier": f"t{i}", "city": "Oslo"}, 1_000 + i))
        else:
            safe.append(event(pid, {"note": f"n{i}", "tier": f"t{i}", "z": f"%+&= {i}"}, 1_000 + i))
    s.produce(sorted(safe + unsafe, key=lambda e: e["occurred_at"]))

    summary = s.run_to_idle(PROFILE_SYNC_TARGET_CELL_DECODING="B")

    # The documented route under B: such an event goes to the DLQ with its own reason.
    letters = s.dead_letters(len(unsafe))
    assert {dict(m.headers())["profile-sync.reason"] for m in letters} == {
        b"value_unsafe_under_reading_b"
    }
    assert summary["events_poison"] == len(unsafe)
    # Every attribute Target holds is exactly what the safe events say: nothing shifted.
    s.wait_for_state(s.expected(safe))
    assert s.emulator.control.stats()["rows"]["failed"] == 0
