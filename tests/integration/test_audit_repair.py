"""The read-back audit against the real broker and the emulator over HTTP, losing rows the
way Adobe says Target may (``bulk_loss_rate``: silently, status still ``complete``).

Oracles: the emulator's own list of the rows it dropped (``/_emulator/lost``) and the fold
of the produced events (tests/utils.py ``fold``, written from the documented rules).
"""

from __future__ import annotations

import dataclasses
import math
import signal
from collections.abc import Callable
from typing import Any

from tests.integration.conftest import Stack
from tests.integration.events import event
from tests.integration.service import Service, wait_for

T0 = 1_700_000_000_000


def unique_events(n: int) -> list[dict[str, Any]]:
    """One event per profile, every value distinct: a dropped row is always visible, and no
    later write of the same profile can make it superseded."""
    return [
        event(f"crm-{i:06d}", {"tier": f"tier-{i}", "city": f"city-{i}"}, T0 + i) for i in range(n)
    ]


def audit_env(**settings: str) -> dict[str, str]:
    env = {
        "PROFILE_SYNC_AUDIT_SAMPLE_SHARE": "1",
        "PROFILE_SYNC_AUDIT_SETTLE_SECONDS": "0",
        "PROFILE_SYNC_AUDIT_READS_PER_SECOND": "1000",
    }
    env.update({f"PROFILE_SYNC_AUDIT_{k.upper()}": v for k, v in settings.items()})
    return env


def audit_idle(svc: Service, batches: int) -> bool:
    """Every batch accepted so far (at least ``batches``) completed, and no read is left."""
    accepted = svc.metric("profile_sync_batches_total", outcome="accepted")
    complete = svc.metric("profile_sync_batch_status_total", status="complete")
    return (
        accepted >= batches
        and complete >= accepted
        and not svc.metric("profile_sync_audit_pending_rows")
    )


def test_every_dropped_row_is_repaired_and_the_state_is_the_fold(
    stack: Callable[..., Stack],
) -> None:
    s = stack(bulk_loss_rate=0.01, bulk_loss_seed=5)
    events = unique_events(2000)
    s.produce(events)
    svc = s.start(**audit_env(max_repairs="3"))
    s.wait_for_state(s.expected(), timeout=120)
    lost = s.emulator.control.lost()
    assert len(lost) >= 10, "the emulator dropped too few rows for the test to mean much"
    profiles = {row["id"] for row in lost}
    wait_for(
        lambda: (
            svc.metric("profile_sync_audit_repairs_total", outcome="succeeded") >= len(profiles)
        ),
        60,
        "every repaired profile to be read back whole",
    )
    wait_for(lambda: audit_idle(svc, 1), 30, "the audit to finish")
    lost = s.emulator.control.lost()  # a repair can be dropped too, and is repaired again

    def m(name: str, **labels: str) -> float:
        return svc.metric(f"profile_sync_audit_{name}", **labels)

    assert m("rows_total", kind="sample") == len(events)
    assert m("rows_total", result="lost") == len(lost)
    assert m("repairs_total", outcome="sent") == len(lost)
    assert m("repairs_total", outcome="succeeded") == len(profiles)
    assert m("repairs_total", outcome="dead_lettered") == 0
    assert m("attributes_total", verdict="superseded") == 0
    assert m("attributes_total", verdict="lost") == 2 * len(lost)
    assert s.target_state() == s.expected()
    svc.signal(signal.SIGTERM)
    assert svc.wait(30) == 0


def test_measured_loss_rate_of_a_10_percent_sample_is_within_its_tolerance(
    stack: Callable[..., Stack],
) -> None:
    profiles = 50_000
    s = stack(partitions=2, topics=1, bulk_loss_rate=0.005, bulk_loss_seed=9)
    s.produce(unique_events(profiles))
    # No repair: every sampled row found lost goes to the DLQ, so the emulator's drops are
    # all drops of the original rows, and the true rate is theirs over all rows.
    svc = s.start(**audit_env(sample_share="0.1", max_repairs="0", max_pending="100000"))
    wait_for(s.all_committed, 180, "every event to be committed")
    wait_for(lambda: audit_idle(svc, 1), 120, "the audit to finish")
    true_lost = len(s.emulator.control.lost())
    true_rate = true_lost / profiles
    audited = svc.metric("profile_sync_audit_rows_total", kind="sample")
    found = svc.metric("profile_sync_audit_rows_total", kind="sample", result="lost")
    assert svc.metric("profile_sync_audit_rows_dropped_total") == 0
    # The sample is 10% of profiles: binomial(50,000, 0.1), sd 67; allow 4 sd.
    assert abs(audited - 0.1 * profiles) <= 4 * math.sqrt(profiles * 0.1 * 0.9)
    # Measured rate: lost rows among n sampled; sd = sqrt(p(1-p)/n), about 0.1 points at
    # p = 0.5%, n = 5,000. Which rows the emulator drops depends on how rows fall into
    # batches (timing), so the draw changes between runs: 4 sd (a false failure about once
    # in 16,000 runs) means the measured rate is within 0.4 points of the true one.
    tolerance = 4 * math.sqrt(true_rate * (1 - true_rate) / audited)
    measured = found / audited
    print(
        f"audited {audited:.0f}, lost {found:.0f}: measured {measured:.4%}, "
        f"true {true_rate:.4%} ({true_lost} of {profiles}), tolerance {tolerance:.4%}"
    )
    assert found > 0
    assert abs(measured - true_rate) <= tolerance, (measured, true_rate, tolerance)
    letters = s.dead_letters(int(found))
    assert {dict(m.headers() or [])["profile-sync.reason"] for m in letters} == {b"audit_lost"}
    svc.signal(signal.SIGTERM)
    assert svc.wait(30) == 0


def test_an_update_between_batch_and_audit_is_superseded_never_repaired_over(
    stack: Callable[..., Stack],
) -> None:
    s = stack(bulk_loss_rate=1.0)
    svc = s.start(**audit_env(settle_seconds="3", max_repairs="3"))
    s.produce([event("crm-sup", {"tier": "gold", "city": "Oslo"}, T0)])
    wait_for(s.emulator.control.lost, 30, "the first batch to be dropped")
    wait_for(
        lambda: svc.metric("profile_sync_batch_status_total", status="complete") >= 1,
        30,
        "the service to see the dropped batch complete",
    )
    # From now on Target keeps what it is sent (the emulator runs in this process).
    store = s.emulator.app.store
    with s.emulator.app.lock:
        store.config = dataclasses.replace(store.config, bulk_loss_rate=0.0)
    s.produce([event("crm-sup", {"tier": "platinum"}, T0 + 1000)])
    want = {("thirdPartyId", "crm-sup"): {"tier": "platinum", "city": "Oslo"}}
    s.wait_for_state(want, timeout=60)
    wait_for(
        lambda: svc.metric("profile_sync_audit_repairs_total", outcome="succeeded") >= 1,
        30,
        "the repair of the lost city to be read back",
    )
    wait_for(lambda: audit_idle(svc, 3), 30, "the audit to finish")

    def attrs(verdict: str) -> float:
        return svc.metric("profile_sync_audit_attributes_total", kind="sample", verdict=verdict)

    assert attrs("superseded") == 1  # tier: platinum was on its way when gold was read back
    assert attrs("lost") == 1  # city: nothing newer, so it was lost and repaired
    assert svc.metric("profile_sync_audit_repairs_total", outcome="sent") == 1
    assert s.target_state() == want  # the repair never put gold back over platinum
    svc.signal(signal.SIGTERM)
    assert svc.wait(30) == 0


def test_slow_profile_reads_never_delay_uploads(stack: Callable[..., Stack]) -> None:
    s = stack()
    # Every audit read hangs for 60 s; uploads and statuses are answered at once.
    s.emulator.control.inject({"api": "fetch", "latency": 60, "count": 1000})
    svc = s.start(**audit_env())
    first = unique_events(200)
    s.produce(first)
    s.wait_for_state(s.expected(), timeout=30)
    wait_for(
        lambda: s.emulator.control.stats()["fetch_requests"] >= 1,
        30,
        "the audit to start reading (and hang)",
    )
    # While the reads hang, new events still reach Target in seconds, not minutes.
    s.produce([event(f"crm-{i:06d}", {"tier": "late"}, T0 + 10_000 + i) for i in range(200)])
    s.wait_for_state(s.expected(), timeout=30)
    assert svc.metric("profile_sync_audit_rows_total") == 0  # no read has come back
