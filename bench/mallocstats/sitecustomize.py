"""Loaded by the service under ``BENCH_MALLOCSTATS=1`` (bench_memory.py puts this folder on
its PYTHONPATH): on SIGUSR1 the service writes what its allocators hold to the file named
by ``BENCH_MALLOCSTATS_FILE`` (glibc's ``mallinfo2`` on the first line, then
``sys._debugmallocstats()``: pymalloc's size classes and arenas). A benchmark's probe only:
the service never loads it otherwise.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from types import FrameType

_FIELDS = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
           "fordblks", "keepcost")  # fmt: skip


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in _FIELDS]


def _write(signum: int, frame: FrameType | None) -> None:
    path = os.environ["BENCH_MALLOCSTATS_FILE"]
    mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    with open(path + ".part", "w") as fh:
        fh.write(" ".join(f"{n}={getattr(info, n)}" for n in _FIELDS) + "\n")
        fh.flush()
        stderr = os.dup(2)
        os.dup2(fh.fileno(), 2)  # _debugmallocstats writes to the C stderr
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(stderr, 2)
            os.close(stderr)
    os.replace(path + ".part", path)


if os.environ.get("BENCH_MALLOCSTATS_FILE"):
    signal.signal(signal.SIGUSR1, _write)
