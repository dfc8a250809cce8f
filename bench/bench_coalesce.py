"""CPU time of ``Batcher.add`` alone over 200,000 updates (50,000 profiles), carry-forward on.

``.venv/bin/python bench/bench_coalesce.py TREE`` imports the batcher from TREE (a checkout,
say ``git archive main | tar -x -C /tmp/main``); run it for two trees alternately in one
sitting to compare them. Numbers, not a test.
"""

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, sys.argv[1])
sys.path.insert(1, str(Path(__file__).resolve().parent))
from bench_hotpath import make_events

import consumer.core.batcher as batcher_module
from consumer.core.batcher import Batcher, BatchLimits
from consumer.core.carry import CarryForward
from consumer.core.model import TopicPartition
from consumer.core.validate import to_update

assert batcher_module.__file__.startswith(str(Path(sys.argv[1]).resolve())), batcher_module.__file__
events = make_events(200_000)
rng = random.Random(3)
for e in events:  # sparse mix: some events carry rarer attributes
    if rng.random() < 0.3:
        e["attributes"] = {k: v for k, v in e["attributes"].items() if rng.random() < 0.5} or {
            "x": "1"
        }
tp = TopicPartition("t", 0)
updates = [u for i, e in enumerate(events) if (u := to_update(e, tp, i)) is not None]
best = None
for _ in range(3):
    batcher = Batcher(BatchLimits(500_000, 40_000_000, 1e9), CarryForward(100_000))
    t = time.process_time()
    for u in updates:
        batcher.add(u, 0.0)
    took = time.process_time() - t
    best = took if best is None else min(best, took)
print(f"{sys.argv[1]}: {best / len(updates) * 1e6:.2f} us/event (best of 3)")
