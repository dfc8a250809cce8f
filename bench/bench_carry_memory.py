"""Memory of carry-forward against what it accounts (``CarryForward.memory_bytes``).

In-process, with tracemalloc (like bench/bench_hotpath.py): for a few shapes of profiles,
cut them into batches through the batcher, drop the batch files, and compare the Python
memory the carry-forward keeps with what it counts against
PROFILE_SYNC_CARRY_FORWARD_MAX_BYTES; once while the batch is pending (rows carried), once
after it completed and every profile came back once (rows folded into guards). The ratio
is the factor deploy/checks/pod.py multiplies the byte bound by
(``CARRY_FORWARD_MEMORY_FACTOR``, docs/deploy.md "Sizing").

Numbers, not a test: `.venv/bin/python bench/bench_carry_memory.py`.
"""

from __future__ import annotations

import gc
import tracemalloc

from consumer.core.batcher import Batcher, BatchLimits
from consumer.core.carry import CarryForward
from consumer.core.model import IdType, ProfileUpdate, TopicPartition

TP = TopicPartition("bench", 0)
# (what, profiles, attributes per profile, value length)
SHAPES = [
    ("60 KB values (issue 17)", 6_000, 1, 60_000),
    ("sample events: 3 short attributes", 50_000, 3, 8),
    ("30 attributes of 5 chars", 10_000, 30, 5),
    ("4 attributes of 1 KB", 20_000, 4, 1_000),
]


def _updates(profiles: int, attrs: int, length: int) -> list[ProfileUpdate]:
    out = []
    for p in range(profiles):
        # Distinct values per profile: nothing shared that a real stream would not share.
        values = {f"attr{a}": f"{p:08d}{a:04d}".ljust(length, "v")[:length] for a in range(attrs)}
        out.append(ProfileUpdate(IdType.THIRD_PARTY_ID, f"crm-{p:08d}", values, 0, 1, TP, p))
    return out


def measure(profiles: int, attrs: int, length: int, folded: bool) -> tuple[int, int]:
    """(bytes Python holds for the carry-forward, bytes it accounts)."""
    updates = _updates(profiles, attrs, length)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    carry = CarryForward(10**9)
    batcher = Batcher(BatchLimits(500_000, 49_000_000, 3600), carry)
    for u in updates:
        batcher.add(u, 0.0)
    batcher.cut_all("bench")
    ids = [b.batch_id for b in batcher.take_ready()]
    if folded:
        for batch_id in ids:
            carry.release(batch_id)
        for u in updates:
            carry.guard(IdType.THIRD_PARTY_ID, u.profile_id)
    del batcher
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return held, carry.memory_bytes


def main() -> None:
    worst = 0.0
    for what, profiles, attrs, length in SHAPES:
        for folded in (False, True):
            held, counted = measure(profiles, attrs, length, folded)
            ratio = held / counted
            worst = max(worst, ratio)
            state = "complete, guards" if folded else "pending, rows"
            print(
                f"{what:36} {state:17} {profiles:>6} profiles: held {held / 1e6:7.1f} MB, "
                f"counted {counted / 1e6:7.1f} MB, ratio {ratio:.2f}, "
                f"{held / profiles:,.0f} B per profile"
            )
    print(f"worst ratio held / counted: {worst:.2f}")


if __name__ == "__main__":
    main()
