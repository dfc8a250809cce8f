"""The tenant call budget: shares, the rolling window, polls behind uploads, AIMD on 503."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.core.budget import WINDOW_SECONDS, CallBudget, CallKind

UP, POLL = CallKind.UPLOAD, CallKind.POLL


def spend_all(budget: CallBudget, kind: CallKind, now: float) -> int:
    n = 0
    while budget.take(kind, now) == 0.0:
        n += 1
    return n


def test_one_member_spends_the_whole_budget_in_a_window_and_no_more() -> None:
    budget = CallBudget(40, now=0.0)
    assert spend_all(budget, UP, 0.0) == 40
    wait = budget.take(UP, 10.0)
    assert wait == WINDOW_SECONDS - 10.0  # the first call leaves the window at t=60
    assert budget.take(UP, 60.0) == 0.0


def test_the_share_divides_by_the_members_of_the_group() -> None:
    budget = CallBudget(40, now=0.0)
    budget.set_members(4, 0.0)
    assert budget.share(0.0) == 10
    assert spend_all(budget, UP, 0.0) == 10


@settings(max_examples=60, deadline=None)
@given(
    members=st.integers(1, 30),
    limit=st.integers(1, 60),
    gaps=st.lists(st.floats(0.0, 20.0), min_size=50, max_size=300),
)
def test_replicas_together_never_exceed_the_tenant_budget_in_any_window(
    members: int, limit: int, gaps: list[float]
) -> None:
    """``members`` replicas, each asking for a call at random moments: in any window of 60 s
    they make at most ``limit`` calls (or one each when the budget is smaller than the
    group)."""
    replicas = [CallBudget(limit, now=0.0) for _ in range(members)]
    for r in replicas:
        r.set_members(members, 0.0)
    calls: list[float] = []
    now = 0.0
    for i, gap in enumerate(gaps):
        now += gap
        if replicas[i % members].take(UP, now) == 0.0:
            calls.append(now)
    cap = limit if limit >= members else members
    for start in calls:
        in_window = [t for t in calls if start <= t < start + WINDOW_SECONDS]
        assert len(in_window) <= cap


def test_below_one_call_a_minute_calls_are_spaced_out() -> None:
    budget = CallBudget(10, now=0.0)
    budget.set_members(20, 0.0)  # half a call a minute each
    assert budget.take(UP, 0.0) == 0.0
    assert budget.take(UP, 60.0) == 60.0
    assert budget.take(UP, 120.0) == 0.0


def test_polls_take_only_what_uploads_leave() -> None:
    budget = CallBudget(5, now=0.0)
    # Polls keep one call free for the next upload.
    assert spend_all(budget, POLL, 0.0) == 4
    assert budget.take(UP, 0.0) == 0.0
    fresh = CallBudget(5, now=0.0)
    fresh.waiting(+2)  # two uploads wait for a call: polls leave them room too
    assert spend_all(fresh, POLL, 0.0) == 2
    fresh.waiting(-2)
    assert spend_all(fresh, UP, 0.0) == 3


def test_a_503_halves_the_share_at_once_and_it_recovers_slowly() -> None:
    budget = CallBudget(40, now=0.0)
    assert budget.throttled(100.0)
    assert budget.share(100.0) == 20
    # Calls in flight all get a 503 together: one signal, not several halvings.
    assert not budget.throttled(101.0)
    assert budget.share(101.0) < 21
    assert budget.throttled(110.0)
    assert abs(budget.share(110.0) - 10) < 0.5
    # Back to the full share only after minutes without a 503.
    assert budget.share(110.0 + 60) < 15
    assert 25 < budget.share(110.0 + 5 * 60) < 35
    assert budget.share(110.0 + 10 * 60) == 40


def test_the_share_never_shrinks_to_nothing() -> None:
    budget = CallBudget(40, now=0.0)
    for i in range(20):
        budget.throttled(i * 10.0)
    assert budget.share(200.0) > 2
    assert budget.take(UP, 200.0) == 0.0


def test_room_tells_the_loop_whether_an_upload_could_go_now() -> None:
    budget = CallBudget(3, now=0.0)
    assert budget.room(0.0) == 3
    spend_all(budget, UP, 0.0)
    assert budget.room(30.0) == 0
    assert budget.room(60.0) == 3


def test_a_member_leaving_grows_the_share_only_a_window_later() -> None:
    budget = CallBudget(40, now=0.0)
    budget.set_members(4, 0.0)
    assert budget.share(0.0) == 10
    # Its calls of the last minute still count at Target: wait a window before taking them.
    budget.set_members(2, 100.0)
    assert budget.share(159.0) == 10
    assert budget.share(160.0) == 20
    # A member joining shrinks the share at once, and cancels a pending growth.
    budget.set_members(1, 200.0)
    budget.set_members(5, 210.0)
    assert budget.share(210.0) == 8
    assert budget.share(300.0) == 8
