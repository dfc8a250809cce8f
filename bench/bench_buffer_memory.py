"""In process: what the open buffer holds per profile for bench_memory.py's stream.

The sample stream of ``bench_memory.py`` (300,000 events over 100,000 profiles, seed 14:
~92,000 profiles, ~8 cells per row from ~2.5 distinct events) is generated, validated and
added to a ``Batcher`` in chunks of 10,000 events (as the intake does), nothing cut. Prints
per buffered profile: the bytes of the Python objects still allocated (tracemalloc; what
the rows are), and the process's RSS growth after ``malloc_trim`` (what the rows and the
allocator's leftovers from the chunks cost). No broker, no service: a layout change shows
here first; ``bench_memory.py`` gives the service's figure.

To compare two trees, run it with ``PYTHONPATH=<tree>`` from outside the worktree for each.
Numbers, not a test: `.venv/bin/python bench/bench_buffer_memory.py`.
"""

from __future__ import annotations

import ctypes
import gc
import os
import tracemalloc
import zlib

import consumer.core.batcher as batcher_module
from consumer.core.batcher import Batcher, BatchLimits
from consumer.core.carry import CarryForward
from consumer.core.model import TopicPartition
from consumer.core.validate import to_update
from sampler.events import generate_events

EVENTS = 300_000
PROFILES = 100_000
CHUNK = 10_000
POS = [TopicPartition("pos", i) for i in range(6)]
CRM = [TopicPartition("crm", i) for i in range(6)]


def rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def fill(traced: bool) -> tuple[int, int]:
    """(profiles buffered, bytes grown): tracemalloc's if ``traced``, else RSS."""
    libc = ctypes.CDLL("libc.so.6")
    batcher = Batcher(BatchLimits(10**9, 10**12, 1e9), CarryForward(PROFILES))
    events = generate_events(EVENTS, PROFILES, 0.0, 0.1, 0.5, 14, 1_790_000_000_000)
    gc.collect()
    libc.malloc_trim(0)
    if traced:
        tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0] if traced else rss()
    chunk = []
    for offset, event in enumerate(events):
        chunk.append((offset, event))
        if len(chunk) == CHUNK:
            for n, e in chunk:
                tps = POS if e["source"] == "POS" else CRM
                update = to_update(e, tps[zlib.crc32(e["profile"]["id"].encode()) % 6], n)
                if update is not None:
                    batcher.add(update, 0.0)
            chunk = []
    gc.collect()
    libc.malloc_trim(0)
    after = tracemalloc.get_traced_memory()[0] if traced else rss()
    tracemalloc.stop()
    return batcher.buffered_rows, after - before


def main() -> None:
    rows, grown = fill(traced=False)
    print(f"{batcher_module.__file__}: {rows:,} profiles buffered")
    print(f"  RSS after malloc_trim: {grown / rows:,.0f} bytes per profile")
    rows, grown = fill(traced=True)
    print(f"  Python objects (tracemalloc): {grown / rows:,.0f} bytes per profile")


if __name__ == "__main__":
    main()
