"""Memory of the urgent queue against what it counts (``consumer.target.urgent.queued_cost``).

In-process, with tracemalloc: for a few shapes of urgent events, offer them to a
SingleUpdater whose worker is held back, so they all wait in the queue, and compare the
Python memory they hold (events built after the baseline, so everything an event owns is
traced) with what the queue counts against PROFILE_SYNC_SINGLE_QUEUE_MAX_BYTES. The worst
ratio is the factor deploy/checks/pod.py multiplies the byte bound by
(``URGENT_QUEUE_MEMORY_FACTOR``, docs/deploy.md "Sizing").

Numbers, not a test: `.venv/bin/python bench/bench_urgent_memory.py`.
"""

from __future__ import annotations

import gc
import threading
import tracemalloc

from consumer.backoff import Backoff
from consumer.core.model import IdType, Priority, ProfileUpdate, TopicPartition
from consumer.core.uploads import CutBatches
from consumer.target.quota import RollingBudget
from consumer.target.urgent import SingleUpdater

# (what, events, attributes per event, value length)
SHAPES = [
    ("one attribute of 4 chars", 10_000, 1, 4),
    ("sample events: 3 short attributes", 10_000, 3, 8),
    ("30 attributes of 5 chars", 5_000, 30, 5),
    ("4 attributes of 1 KB", 3_000, 4, 1_000),
    ("one value near the 60 KB cap", 500, 1, 58_000),
    ("non-ASCII: 20 attributes of 40 'é'", 3_000, 20, 40),
]


def _events(n: int, attrs: int, length: int, fill: str) -> list[ProfileUpdate]:
    out = []
    for p in range(n):
        tp = TopicPartition(f"pos.profile-changes{p % 1}", p % 24)
        values = {
            f"attr{a}{p % 1}": f"{p:08d}{a:04d}".ljust(length, fill)[:length] for a in range(attrs)
        }
        out.append(
            ProfileUpdate(IdType.THIRD_PARTY_ID, f"crm-{p:08d}", values, Priority.URGENT, 1, tp, p)
        )
    return out


def measure(what: str, n: int, attrs: int, length: int) -> float:
    fill = "é" if "é" in what else "v"
    gate = threading.Event()
    updater = SingleUpdater(
        lambda *_: gate.wait(),
        RollingBudget(10**9),
        concurrency=1,
        queue_max=10**7,
        queue_max_bytes=2**40,
        max_attempts=1,
        backoff=Backoff(0.001, 0.002),
        metrics=None,
        superseded=CutBatches(),
    )
    # One event first, so the worker is busy with it and the rest stay queued.
    updater.offer(_events(1, attrs, length, fill)[0], 0, 0.0)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    events = _events(n, attrs, length, fill)
    for e in events:
        updater.offer(e, 0, 0.0)
    del events, e
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    counted = updater.queued_bytes
    gate.set()
    updater.close()
    ratio = held / counted
    print(
        f"{what:40} {n:>6} events  held {held / 1e6:7.2f} MB  "
        f"counted {counted / 1e6:7.2f} MB  ratio {ratio:.2f}"
    )
    return ratio


def main() -> None:
    worst = max(measure(*shape) for shape in SHAPES)
    print(f"worst ratio {worst:.2f}")


if __name__ == "__main__":
    main()
