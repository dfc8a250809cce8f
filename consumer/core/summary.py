"""What a run did, for the demo and for the log line at exit (``--summary``)."""

from __future__ import annotations

from typing import Any

from consumer.clock import Clock


class Summary:
    """Counters the intake and the outcomes add to; times from the injected clock."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.events_consumed = 0
        self.events_bulk = 0
        self.events_skipped = 0
        self.events_poison = 0
        self.events_mapping_skipped = 0  # filtered, Debezium deletes and tombstones
        self.single_queued = 0
        self.batches_accepted = 0
        self.rows_accepted = 0
        self.batches_rejected = 0
        self.dead_letters = 0
        self.started_at = clock.monotonic()
        self.first_record_at: float | None = None
        self.last_record_at = 0.0

    def as_dict(self) -> dict[str, Any]:
        elapsed = max(1e-9, self._clock.monotonic() - self.started_at)
        first = self.first_record_at if self.first_record_at is not None else self.started_at
        active = max(1e-9, self.last_record_at - first)
        return {
            "events_consumed": self.events_consumed,
            "events_to_bulk": self.events_bulk,
            "events_skipped_empty": self.events_skipped,
            "events_poison": self.events_poison,
            "events_skipped_by_mapping": self.events_mapping_skipped,
            "single_updates_queued": self.single_queued,
            "batches_accepted": self.batches_accepted,
            "rows_accepted": self.rows_accepted,
            "batches_rejected": self.batches_rejected,
            "dead_letters": self.dead_letters,
            "elapsed_seconds": round(elapsed, 3),
            # From the first record consumed to the last: start-up and idle time excluded.
            "consuming_seconds": round(active, 3),
            "events_per_second": round(self.events_consumed / active, 1),
        }
