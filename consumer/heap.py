"""Giving freed heap back to the system once a burst of consumption is over (glibc only).

Consuming a backlog frees far more C heap than the service keeps: librdkafka's fetch
buffers, the consumed messages, the intake's short-lived objects. glibc keeps that freed
memory in its arenas, so without help resident memory stays at its peak (bench_memory.py:
~1,500 of ~2,400 bytes of RSS per buffered profile were such freed memory;
docs/performance.md). ``malloc_trim(0)`` returns it (the free pages inside the heap too,
not only its top).

A trim holds each arena's lock while it walks it (~20 ms for a 250 MB heap), and a
thread that allocates meanwhile waits; an urgent event consumed meanwhile waits too. So it
runs on the loop's thread only, in a turn that consumed nothing (the stream is idle at
that moment), only after a burst (``MIN_RECORDS`` consumed since the last trim: a trickle
of urgent events frees little and is never made to wait), and at most every ``interval``
seconds (``PROFILE_SYNC_HEAP_TRIM_SECONDS``; 0 turns it off). Elsewhere than glibc (musl,
macOS) there is no ``malloc_trim`` and this does nothing.

A burst often has idle turns in the middle (the loop catches up with the producers), so
its trim may come before its end; what the rest of the burst frees (fewer than
``MIN_RECORDS`` records) would stay resident: 40-90 bytes per buffered profile in
bench_memory.py's busier runs (docs/performance.md). So a trim with records consumed
after it is followed by one more, once the stream has been quiet for ``QUIET_SECONDS``
(and the interval has passed): one extra trim per burst at most, never while records
keep coming, and none when nothing came after the trim.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import time
from collections.abc import Callable

log = logging.getLogger("profile_sync.heap")

# Records consumed since the last trim before an idle turn trims: a backlog or a busy
# period, not a trickle (50 urgent events/s take 200 s to reach it).
MIN_RECORDS = 10_000
# How long the stream must have been quiet before the follow-up trim of a burst's tail.
QUIET_SECONDS = 1.0


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        # CDLL, not PyDLL: the GIL is released during the call, other threads run on.
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class IdleTrim:
    """Call ``after_turn`` once per loop turn with how many records it consumed."""

    def __init__(self, interval: float, trim: Callable[[int], int] | None = None) -> None:
        self.interval = interval
        self._trim = trim if trim is not None else (_malloc_trim() if interval > 0 else None)
        self._consumed_since = 0
        self._last = float("-inf")
        self._last_consumed = float("-inf")
        # The last trim came after a burst: records consumed after it get one more trim.
        self._tail = False
        self.trims = 0

    @property
    def enabled(self) -> bool:
        return self._trim is not None and self.interval > 0

    def after_turn(self, consumed: int, now: float) -> bool:
        """Trim when this turn was idle after a burst and the last trim is old enough."""
        if consumed:
            self._consumed_since += consumed
            self._last_consumed = now
            return False
        if not self.enabled:
            return False
        quiet = now - self._last_consumed >= QUIET_SECONDS
        if quiet and not self._consumed_since:
            self._tail = False  # the burst ended before its trim: nothing left over
        if now - self._last < self.interval:
            return False
        if self._consumed_since >= MIN_RECORDS:
            self._tail = True
        elif self._tail and quiet:  # the rest of the burst its last trim came too early for
            self._tail = False
        else:
            return False
        assert self._trim is not None
        started = time.perf_counter()
        self._trim(0)
        self._last = now
        self._consumed_since = 0
        self.trims += 1
        log.debug(
            "heap trimmed",
            extra={"fields": {"seconds": round(time.perf_counter() - started, 4)}},
        )
        return True
