"""Hand freed heap memory back to the operating system now and then (glibc only).

librdkafka fetches into buffers its own threads allocate, and the intake churns through
short-lived Python objects; glibc keeps what they free in its arenas, so resident memory
stays at its high-water mark long after the data is gone (bench/bench_memory.py: ~1,700
bytes per buffered profile on top of the buffer itself). ``malloc_trim(0)`` returns those
free pages. A daemon thread calls it every ``interval`` seconds, off the loop's thread; it
does nothing where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from collections.abc import Callable

log = logging.getLogger("profile_sync.memory")

TRIM_INTERVAL_SECONDS = 5.0


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return None
    return trim


def start_trimming(stop: threading.Event, interval: float = TRIM_INTERVAL_SECONDS) -> bool:
    """Trim every ``interval`` seconds until ``stop`` is set; False when it cannot trim."""
    trim = _malloc_trim()
    if trim is None:
        log.info("malloc_trim is not available: freed memory is left to the C library")
        return False

    def run() -> None:
        while not stop.wait(interval):
            trim(0)

    threading.Thread(target=run, name="malloc-trim", daemon=True).start()
    return True
