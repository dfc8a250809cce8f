"""Audit reads: Target's profile fetch API on a worker thread of its own, at a bounded rate.

Reads never share the uploads' connections or threads, and never run on the loop's
thread, so a slow or failing fetch API cannot delay an upload. Target does not count
profile fetches in the bulk APIs' 50 calls a minute, but they still cost the tenant, so
they go through their own rate (``reads_per_second``). The loop offers rows with
``submit`` (at most ``capacity()``) and drains ``next_result``.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from consumer.core.audit import AuditRow
from consumer.core.model import IdType
from consumer.errors import TargetError

FetchProfile = Callable[[IdType, str], "dict[str, Any] | None"]

# Rows handed to the worker but not read yet: enough for a few seconds at a small rate,
# and little enough that a stop leaves few reads undone.
_QUEUE_SECONDS = 2.0
_MIN_QUEUE = 4


@dataclass(frozen=True, slots=True)
class ReadResult:
    row: AuditRow
    profile: dict[str, Any] | None  # Target's JSON; None when the profile does not exist
    error: str = ""  # why the read failed; empty when it did not


class ProfileReader:
    """One thread that fetches profiles, no faster than ``reads_per_second``."""

    def __init__(
        self,
        fetch: FetchProfile,
        reads_per_second: float,
        on_close: Callable[[], None] = lambda: None,
    ) -> None:
        """``on_close`` runs once the thread stopped (closes the reads' HTTP client)."""
        self._fetch = fetch
        self._on_close = on_close
        self._interval = 1.0 / reads_per_second
        self._room = max(_MIN_QUEUE, int(reads_per_second * _QUEUE_SECONDS))
        self._todo: queue.Queue[AuditRow] = queue.Queue()
        self._done: queue.Queue[ReadResult] = queue.Queue()
        self._queued = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audit-reads", daemon=True)
        self._thread.start()

    def capacity(self) -> int:
        """How many more rows ``submit`` takes now."""
        with self._lock:
            return max(0, self._room - self._queued)

    def submit(self, row: AuditRow) -> None:
        with self._lock:
            self._queued += 1
        self._todo.put(row)

    def next_result(self) -> ReadResult | None:
        try:
            return self._done.get_nowait()
        except queue.Empty:
            return None

    def close(self) -> None:
        """Stop reading; rows not read yet are dropped (an audit is a sample, not a duty)."""
        self._stop.set()
        self._thread.join(timeout=10.0)
        self._on_close()

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                row = self._todo.get(timeout=0.2)
            except queue.Empty:
                continue
            wait = next_at - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                return
            next_at = max(next_at, time.monotonic()) + self._interval
            try:
                result = ReadResult(row, self._fetch(row.id_type, row.profile_id))
            except (TargetError, ValueError) as exc:  # ValueError: an answer that is not JSON
                result = ReadResult(row, None, str(exc) or type(exc).__name__)
            with self._lock:
                self._queued -= 1
            self._done.put(result)
