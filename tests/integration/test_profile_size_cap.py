"""The 64 KB cap holds across batches (issue 17, item 5), against the real broker and the
emulator (which fails an update that would take a profile past 64 KB of names and
values, docs/emulator.md).

A profile is brought near the cap, then takes 20 events of a new 2 KB attribute over
several batches, with small updates of the same profile in between. Before, Target
failed the rows that crossed the cap (the small attributes lost with them) and nothing
was dead-lettered. Now: no failed update, the crossing events in the DLQ as
``profile_too_large``, everything else in Target. The expected outcome comes from the
rule as Target documents it, computed here (``_target_outcome``), not from the service.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.conftest import Stack
from tests.integration.events import event
from tests.integration.service import Service, wait_for
from tests.utils import fold

T0 = 1_700_000_000_000
CAP = 64 * 1024
FAST = {
    "PROFILE_SYNC_BATCH_LINGER_SECONDS": "0.2",
    "PROFILE_SYNC_STATUS_POLL_INITIAL_SECONDS": "0.2",
    "PROFILE_SYNC_STATUS_POLL_MAX_SECONDS": "0.5",
}


def _size(attrs: dict[str, str]) -> int:
    return sum(len(n.encode()) + len(v.encode()) for n, v in attrs.items())


def _target_outcome(events: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[int]]:
    """(events Target can take, indexes of those that would take the profile past 64 KB),
    applying them one after another to what the profile already holds."""
    held: dict[str, str] = {}
    taken, refused = [], []
    for i, e in enumerate(events):
        merged = {**held, **e["attributes"]}
        if _size(merged) > CAP:
            refused.append(i)
        else:
            held = merged
            taken.append(e)
    return taken, refused


def _near_the_cap() -> dict[str, Any]:
    # 29 attributes of 2,000 bytes: 58,145 bytes with their names.
    return event("crm-big", {f"big{i:02d}": chr(97 + i % 26) * 2000 for i in range(29)}, T0)


def _rounds() -> list[list[dict[str, Any]]]:
    """Four rounds of five 2 KB events, each round with a small update of the profile."""
    rounds = []
    for r in range(4):
        batch = [
            event("crm-big", {f"more{n:02d}": "z" * 2000, "visits": str(n)}, T0 + 1 + n)
            for n in range(r * 5, r * 5 + 5)
        ]
        batch.append(event("crm-big", {"tier": f"tier{r}"}, T0 + 100 + r))
        rounds.append(batch)
    return rounds


def _uploaded(s: Stack) -> int:
    return int(s.emulator.control.stats()["batches_accepted"])


def _known_complete(s: Stack, service: Service, batches: int, earlier: int = 0) -> bool:
    """``batches`` were uploaded and ``service`` has read the status of each one it
    uploaded (after ``earlier`` ones by others): complete, so it no longer carries their
    rows and what they sent is only in Target."""
    done = service.metric("profile_sync_batch_status_total", status="complete")
    uploaded = _uploaded(s)
    return uploaded >= batches and done >= uploaded - earlier


def _send_in_rounds(s: Stack, service: Service, earlier: int = 0) -> None:
    for batch in _rounds():
        before = _uploaded(s)
        s.produce(batch)
        # Each round reaches Target in a batch of its own, known complete, before the next.
        wait_for(
            lambda b=before: _known_complete(s, service, b + 1, earlier), 60, "a batch complete"
        )


def _stop(service: Service) -> None:
    service.signal(signal.SIGTERM)
    assert service.wait(60) == 0, service.log_tail()


def _check(s: Stack, letters_expected: int) -> None:
    everything = [_near_the_cap(), *[e for r in _rounds() for e in r]]
    taken, refused = _target_outcome(everything)
    assert len(refused) == letters_expected
    wait_for(s.all_committed, 60, "every offset committed")
    assert s.emulator.control.stats()["rows"]["failed"] == 0
    letters = s.dead_letters(len(refused))
    reasons = [dict(m.headers() or [])["profile-sync.reason"].decode() for m in letters]
    assert reasons == ["profile_too_large"] * len(refused)
    s.wait_for_state(fold(taken))


@pytest.mark.parametrize("mode", ["never", "always"])
def test_a_profile_near_the_cap_takes_no_update_that_would_fail_in_target(
    stack: Callable[..., Stack], mode: str
) -> None:
    s = stack(partitions=1, topics=1, mode=mode)
    service = s.start(**FAST)
    s.produce([_near_the_cap()])
    wait_for(lambda: _known_complete(s, service, 1), 60, "the first batch complete")
    _send_in_rounds(s, service)
    _check(s, 17)  # three 2 KB attributes still fit under the cap
    _stop(service)


def test_a_new_owner_knows_the_size_from_the_changelog(stack: Callable[..., Stack]) -> None:
    # The repartition mode keeps the sizes in the owner's changelog: a replica that takes
    # the profile over after the first one stopped refuses what would cross the cap.
    s = stack(partitions=1, topics=1, mode="always")
    first = s.start(**FAST)
    s.produce([_near_the_cap()])
    wait_for(lambda: _known_complete(s, first, 1), 60, "the first batch complete")
    _stop(first)
    second = s.start(**FAST)
    _send_in_rounds(s, second, earlier=_uploaded(s))
    _check(s, 17)
    _stop(second)
