"""Worker threads that never die silently.

The bulk senders, the batch-status tracker and the single-update workers run on threads.
An exception nobody expected (a library raising something new, a bug) must not leave a
batch "in flight" forever behind a healthy-looking process. So:

- each job runs under ``Crashes.guard``: an unexpected exception is logged (JSON, with
  its traceback), counted in ``profile_sync_worker_errors_total{worker}``, and the worker
  carries on with its next attempt or job;
- each thread's body runs under ``Crashes.thread``: if the loop itself dies, that is
  logged and counted the same way and the process stops being live (``/livez`` fails),
  so Kubernetes restarts it and nothing is left half-done behind a 200.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from consumer.metrics import Metrics

log = logging.getLogger("profile_sync.workers")


class Crashes:
    """Where unexpected worker exceptions go. One per process; thread-safe."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self._metrics = metrics
        self._lock = threading.Lock()
        self.dead: str | None = None
        self._on_death: list[Callable[[str], None]] = []

    def on_death(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(reason)`` when a worker thread died (at once if one already has)."""
        with self._lock:
            self._on_death.append(callback)
            dead = self.dead
        if dead is not None:
            callback(dead)

    def caught(self, worker: str, exc: BaseException) -> None:
        """An unexpected exception in ``worker``'s job; the worker carries on."""
        if self._metrics is not None:
            self._metrics.worker_errors.labels(worker).inc()
        log.error(
            "unexpected error in a worker, it carries on",
            exc_info=exc,
            extra={"fields": {"worker": worker, "error": f"{type(exc).__name__}: {exc}"}},
        )

    def thread(self, worker: str, body: Callable[[], None], name: str = "") -> threading.Thread:
        """A daemon thread running ``body``; if ``body`` raises, the process is not live.

        ``worker`` is the kind (the metric label: bulk, status, single); ``name`` the
        thread's own name (default: the kind)."""

        def run() -> None:
            try:
                body()
            except BaseException as exc:
                self._died(worker, exc)

        return threading.Thread(target=run, name=name or worker, daemon=True)

    def _died(self, worker: str, exc: BaseException) -> None:
        if self._metrics is not None:
            self._metrics.worker_errors.labels(worker).inc()
        reason = f"worker {worker} died: {type(exc).__name__}"
        log.critical(
            "a worker thread died; the process is no longer live",
            exc_info=exc,
            extra={"fields": {"worker": worker, "error": f"{type(exc).__name__}: {exc}"}},
        )
        with self._lock:
            self.dead = reason
            callbacks = list(self._on_death)
        for callback in callbacks:
            callback(reason)
