"""CPU per event of coalescing with the owner's memory: ``Batcher`` + ``LoggedCarry``.

No decode and no I/O: 300,000 sample-like updates (1-4 of 5 attributes, two source
partitions) over 60,000 profiles are added, a batch is cut every 5,000 events, and the
batch before last is released (complete), so rows are carried, folded into guards, sized
and written to a changelog stub the way the repartition mode does. Prints the best of
BENCH_ROUNDS (5) in CPU microseconds per event.

To compare two trees, run it from outside the worktree with ``PYTHONPATH=<tree>`` for each,
alternating (the machine is shared: compare in one sitting). Numbers, not a test:
`.venv/bin/python bench/bench_carry_cut.py`.
"""

from __future__ import annotations

import os
import random
import time

from consumer.core.batcher import Batcher, BatchLimits
from consumer.core.model import IdType, ProfileUpdate, TopicPartition
from consumer.core.owner_memory import LoggedCarry

EVENTS = 300_000
PROFILES = 60_000
CUT_EVERY = 5_000
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
NAMES = ["tier", "city", "points", "store", "email_opt_in"]


def _updates() -> list[ProfileUpdate]:
    rnd = random.Random(7)
    tps = [TopicPartition("pos", 0), TopicPartition("crm", 0)]
    out = []
    for i in range(EVENTS):
        attrs = {rnd.choice(NAMES): f"v{rnd.randrange(1000)}" for _ in range(rnd.randint(1, 4))}
        pid = f"crm-{rnd.randrange(PROFILES):06d}"
        out.append(
            ProfileUpdate(
                IdType.THIRD_PARTY_ID, pid, attrs, 0, 1_700_000_000_000 + i, tps[i % 2], i
            )
        )
    return out


def _changelog(key: bytes, value: bytes) -> None:
    """The changelog producer's place: the record is built, not sent."""


def main() -> None:
    updates = _updates()
    best = float("inf")
    for _ in range(ROUNDS):
        carry = LoggedCarry(50_000, _changelog)
        batcher = Batcher(BatchLimits(500_000, 16_000_000, 3600), carry)
        pending: list[int] = []
        started = time.process_time()
        for n, update in enumerate(updates):
            batcher.add(update, 0.0)
            if n % CUT_EVERY == CUT_EVERY - 1:
                batcher.cut_all("bench")
                pending += [b.batch_id for b in batcher.take_ready()]
                while len(pending) > 1:
                    carry.release(pending.pop(0))
        best = min(best, time.process_time() - started)
    print(
        f"batcher + owner's memory: {best / EVENTS * 1e6:.2f} CPU-us per event (best of {ROUNDS})"
    )
    print(f"load average: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
