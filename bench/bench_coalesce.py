"""CPU time of ``Batcher.add`` alone over 200,000 updates (50,000 profiles), carry-forward on.

``.venv/bin/python bench/bench_coalesce.py TREE`` imports the batcher from TREE (a checkout,
say ``git archive main | tar -x -C /tmp/main``); run it for two trees alternately in one
sitting to compare them. Numbers, not a test.

``BENCH_STREAM=sample`` adds a second stream: the sampler's events (the service benches'
stream), POS and CRM from two partitions, so that POS events uploaded late arrive older than
what a row holds (the out-of-order merge), as in the service (chunks of 10,000 of
each topic in turn).
"""

import os
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


def hotpath_stream() -> list:
    events = make_events(200_000)
    rng = random.Random(3)
    for e in events:  # sparse mix: some events carry rarer attributes
        if rng.random() < 0.3:
            e["attributes"] = {k: v for k, v in e["attributes"].items() if rng.random() < 0.5} or {
                "x": "1"
            }
    tp = TopicPartition("t", 0)
    return [u for i, e in enumerate(events) if (u := to_update(e, tp, i)) is not None]


def sample_stream() -> list:
    from sampler.events import generate_events

    tps = {"POS": TopicPartition("pos", 0), "CRM": TopicPartition("crm", 0)}
    events = generate_events(200_000, 50_000, 0.0, 0.1, 0.5, 14, 1_790_000_000_000)
    topics: dict[str, list] = {"POS": [], "CRM": []}
    for i, e in enumerate(events):
        if u := to_update(e, tps[e["source"]], i):
            topics[e["source"]].append(u)
    # Consumed as the service reads a backlog of two topics: chunks of each in turn.
    pos, crm = topics["POS"], topics["CRM"]
    chunk = int(os.environ.get("BENCH_CHUNK", "10000"))
    return [
        u for at in range(0, max(len(pos), len(crm)), chunk)
        for u in (*pos[at : at + chunk], *crm[at : at + chunk])
    ]  # fmt: skip


def measure(name: str, updates: list) -> None:
    best = None
    for _ in range(3):
        batcher = Batcher(BatchLimits(500_000, 40_000_000, 1e9), CarryForward(100_000))
        t = time.process_time()
        for u in updates:
            batcher.add(u, 0.0)
        took = time.process_time() - t
        best = took if best is None else min(best, took)
    print(f"{sys.argv[1]} ({name}): {best / len(updates) * 1e6:.2f} us/event (best of 3)")


measure("hotpath stream", hotpath_stream())
if os.environ.get("BENCH_STREAM") == "sample":
    measure("sample stream", sample_stream())
