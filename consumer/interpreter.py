"""How the service asks the interpreter to schedule: garbage collection and the GIL.

Both are about pauses every thread sees, the urgent path's (consumer/target/urgent.py)
first: an URGENT event waits for the loop thread to read it and for a single-update
worker to get the interpreter, and neither runs while the collector does.

- **Full collections on a timer.** The heap is mostly long-lived containers: buffered rows,
  the carry-forward's entries, pending batches. CPython's automatic generation-2
  collection scans all of them each time the long-lived set grew by a quarter: at 10,000
  events/s a 120-300 ms pause every few seconds (bench/bench_urgent.py, measured with a
  trace of the loop). They are strings, tuples, dicts and slotted objects without
  reference cycles (reference counting frees them), so the young generations stay
  automatic (they find the short-lived cycles: exceptions with their frames, and so on)
  and a full collection runs every ``FULL_COLLECT_SECONDS`` instead, one pause per period
  in place of many.
- **What start-up built is frozen** (``gc.freeze``): modules, the mapping's code,
  settings. It is never garbage; automatic collections skip it.
- **What a turn leaves behind is frozen too, and the young generation is larger.** What
  outlives a loop turn is the buffer's rows, the carry-forward's entries, the ledger's
  runs: data that lives for seconds to minutes and that reference counting frees. With
  CPython's generation-0 threshold (700 allocations) a consumed batch of 1,000 records set
  off a dozen young collections a turn, and every object that outlived its turn was
  traced twice (generations 0 and 1): 0.4 s of CPU for 300,000 events, 8% of the
  service's (docs/performance.md, compiled); one young collection per turn still traced
  each once (0.3 s). Frozen untraced at the end of each turn (``after_turn``:
  ``gc.freeze``, constant time), they are never traced by the automatic collections, and
  a threshold of ``THRESHOLDS[0]`` lets a turn finish before the next young collection:
  0.03 s for the same events. This relies on the service making next to no reference
  cycles: httpx made one per request (~40 objects), now cut where the response is read
  (consumer/target/client.py); what cycles remain (an exception and its frames, in any
  thread) are collected by the timed full collection, which unfreezes everything first.
- **A shorter GIL switch interval.** A thread waiting for the interpreter asks the
  running one to let go after ``sys.getswitchinterval()`` (5 ms by default); a single
  update takes the GIL several times (send, receive, count), so under a busy loop each
  wait adds up. 1 ms bounds each wait by 1 ms, at the cost of more switches.
"""

from __future__ import annotations

import gc
import sys

# A full collection at most this often (from ``after_turn``).
FULL_COLLECT_SECONDS = 300.0
# Automatic collections: generation 0 after 20,000 allocations (CPython: 700), generation 1
# as CPython's default; generation 2 never in practice (it would wait for this many
# generation-1 collections, months at full load).
THRESHOLDS = (20_000, 10, 1_000_000_000)
SWITCH_INTERVAL_SECONDS = 0.001


class Collector:
    """Applies the policy at start-up and runs the timed full collections."""

    def __init__(self, now: float) -> None:
        self._next_full = now + FULL_COLLECT_SECONDS

    def start(self) -> None:
        """Call once everything that lives for the whole run is built."""
        gc.collect()  # garbage made at start-up is not frozen with the rest
        gc.freeze()
        gc.set_threshold(*THRESHOLDS)
        sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)

    def after_turn(self, now: float) -> bool:
        """Once per loop turn: what the turn left is frozen, or, once the period is over,
        everything is collected (True when a full collection ran)."""
        if now < self._next_full:
            gc.freeze()
            return False
        self._next_full = now + FULL_COLLECT_SECONDS
        gc.unfreeze()  # start-up's objects too: a few ms more, once a period
        gc.collect()
        gc.freeze()
        return True
