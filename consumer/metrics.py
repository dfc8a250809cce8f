"""Every metric the service exports, defined once, on an injected registry.

Names are a contract with the Grafana dashboard and the alert rules in deploy/: prefix
``profile_sync_``, base units, counters end in ``_total``. Labels stay low-cardinality
(topic, partition, id_type, api, status class, reason...), never a profile id.
The pipeline updates them once per consumed batch of messages, not per message.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from consumer import __version__
from consumer.compiled import State

# Batch rows: from a handful (linger cuts at night) up to Target's 500,000.
_ROW_BUCKETS = (1, 10, 100, 1_000, 5_000, 10_000, 50_000, 100_000, 250_000, 500_000)
# Batch bytes: up to Target's 50 MB.
_BYTE_BUCKETS = (1e3, 1e4, 1e5, 5e5, 1e6, 5e6, 1e7, 2.5e7, 5e7)
# Target API latency: tens of milliseconds for a single update, seconds for a big upload.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Urgent event to Target accepting its single update: the target is under 50 ms, so the
# buckets resolve a few milliseconds up to a second; retries after failures go beyond.
_URGENT_BUCKETS = (
    0.002, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5,
    1, 2.5, 10, 60,
)  # fmt: skip
# Event to acceptance: linger (seconds) plus outages (minutes to hours).
_DELAY_BUCKETS = (0.5, 1, 2.5, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)


class Metrics:
    """The service's metrics. Build one per process (tests: one per test, fresh registry)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        p = "profile_sync_"

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(p + name, doc, labels, registry=registry)

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(p + name, doc, labels, registry=registry)

        def histogram(
            name: str, doc: str, buckets: tuple[float, ...], labels: tuple[str, ...] = ()
        ) -> Histogram:
            return Histogram(p + name, doc, labels, buckets=buckets, registry=registry)

        self.build_info = Info(
            p + "build",
            "Version of the running service, and whether its hot path runs compiled.",
            registry=registry,
        )
        self.build_info.info(
            {"version": __version__, "hot_path": "compiled" if State.compiled else "interpreted"}
        )

        # -- intake
        self.events_consumed = counter(
            "events_consumed_total", "Kafka records consumed.", ("topic", "source")
        )
        self.events_routed = counter(
            "events_routed_total",
            "Valid events by route: bulk (every valid event), single (also sent at once).",
            ("route",),
        )
        self.events_skipped = counter(
            "events_skipped_total", "Events with no non-empty attribute (nothing to send)."
        )
        self.poison_events = counter(
            "poison_events_total",
            "Records that failed decoding or validation, by stage and reason.",
            ("stage", "reason"),
        )
        self.dead_letters = counter(
            "dead_letters_total",
            "Records written to the dead-letter topic (delivery confirmed).",
            ("stage", "reason"),
        )
        self.dead_letter_failures = counter(
            "dead_letter_failures_total",
            "Dead-letter writes that failed; their offsets are held back and retried.",
        )
        self.dead_letters_truncated = counter(
            "dead_letters_truncated_total",
            "Dead letters too large for the DLQ topic, written cut (original size and hash "
            "in headers).",
        )
        self.dead_letter_blocked = gauge(
            "dead_letter_blocked",
            "1 while dead-letter writes have failed for longer than 5 minutes (not ready).",
        )
        self.mapping_skips = counter(
            "mapping_skipped_total",
            "Records a mapping skips on purpose, settled without an update: filtered "
            "(skip_when), deleted and tombstone (Debezium). Failures are poison_events_total "
            "with reason mapping_failed.",
            ("reason",),
        )

        # -- buffer and batches
        self.buffer_rows = gauge("buffer_rows", "Profile rows buffered.", ("id_type",))
        self.buffer_bytes = gauge("buffer_bytes", "Encoded batch-file bytes buffered.")
        self.oldest_pending_age = gauge(
            "oldest_pending_event_age_seconds", "Age of the oldest buffered event."
        )
        self.batches_flushed = counter(
            "batches_flushed_total",
            "Batches cut, by id type and trigger (rows, bytes, linger, width, revoke, shutdown).",
            ("id_type", "trigger"),
        )
        self.batch_rows = histogram(
            "batch_rows", "Rows per batch file.", _ROW_BUCKETS, ("id_type",)
        )
        self.batch_bytes = histogram(
            "batch_bytes", "Bytes per batch file.", _BYTE_BUCKETS, ("id_type",)
        )
        self.batch_events = counter(
            "batch_events_total", "Events coalesced into cut batches.", ("id_type",)
        )
        self.batches_in_flight = gauge(
            "batches_in_flight", "Batches cut and not yet settled (sending or retrying)."
        )
        self.batches = counter(
            "batches_total",
            "Batch outcomes: accepted, rejected (to DLQ), cancelled (revoked before settling).",
            ("id_type", "outcome"),
        )
        self.end_to_end_delay = histogram(
            "end_to_end_delay_seconds",
            "From the oldest event's occurred_at to Target accepting its batch.",
            _DELAY_BUCKETS,
        )

        # -- Target API
        self.target_requests = counter(
            "target_requests_total",
            "HTTP calls to Target by API (bulk, single, status, fetch) and status class.",
            ("api", "status_class"),
        )
        self.target_latency = histogram(
            "target_request_duration_seconds",
            "Latency of HTTP calls to Target.",
            _LATENCY_BUCKETS,
            ("api",),
        )
        self.target_retries = counter(
            "target_retries_total",
            "Retries of calls to Target after a retryable failure.",
            ("api",),
        )
        self.token_reloads = counter(
            "token_reloads_total", "Times the Target token file was (re)read."
        )

        # -- Kafka
        self.partitions_assigned = gauge("partitions_assigned", "Partitions assigned.")
        self.partitions_paused = gauge(
            "partitions_paused", "Assigned partitions paused by backpressure."
        )
        self.offsets_committed = counter(
            "offsets_committed_total", "Partition offsets committed (one per partition per commit)."
        )
        self.commit_failures = counter("commit_failures_total", "Failed offset commits.")
        self.consumer_lag = gauge(
            "consumer_lag",
            "Messages behind the partition end (librdkafka statistics).",
            ("topic", "partition"),
        )
        self.rebalances = counter("rebalances_total", "Partition assignment changes.", ("kind",))
        # repartition mode (docs/repartition.md)
        self.events_forwarded = counter(
            "events_forwarded_total",
            "Source events written to the repartition topic (repartition mode).",
        )
        self.changelog_restore_seconds = histogram(
            "changelog_restore_seconds",
            "Time a new owner took to restore its changelog partitions.",
            (0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
        )
        self.changelog_restored_records = counter(
            "changelog_restored_records_total", "Changelog records read back by a new owner."
        )

        # -- urgent path
        self.single_updates = counter(
            "single_updates_total",
            "Urgent events by single-update outcome: sent, failed, or skipped_* (quota, "
            "invalid_id, too_large, queue_full, disabled); skipped ones keep the bulk path.",
            ("outcome",),
        )
        self.single_budget_remaining = gauge(
            "single_budget_remaining", "Single updates left in this replica's rolling 24 h budget."
        )
        self.single_budget_total = gauge(
            "single_budget", "This replica's single-update budget per rolling 24 hours."
        )
        self.urgent_delay = histogram(
            "single_update_delay_seconds",
            "From an urgent event's occurred_at to Target accepting its single update.",
            _URGENT_BUCKETS,
        )
        self.loop_turn = histogram(
            "loop_turn_seconds",
            "Work of one loop turn that consumed records, after taking them (intake, cut "
            "steps, uploads, settling): what a record fetched meanwhile waits, at most.",
            _URGENT_BUCKETS,
        )

        # -- carry-forward and batch status
        self.carry_forward_profiles = gauge(
            "carry_forward_profiles", "Profiles remembered from batches not yet known complete."
        )
        self.carry_forward_evictions = counter(
            "carry_forward_evictions_total", "Profiles forgotten because the memory bound was hit."
        )
        self.carry_forward_bytes = gauge(
            "carry_forward_bytes",
            "Memory carry-forward counts against PROFILE_SYNC_CARRY_FORWARD_MAX_BYTES.",
        )
        self.batch_status = counter(
            "batch_status_total",
            "Final batch-status outcomes: complete, stuck, timeout (max age), unknown (expired).",
            ("status",),
        )
        self.batch_updates = counter(
            "batch_updates_total",
            "Per-profile results reported by batch status: successful, failed, not_found.",
            ("result",),
        )
        self.batch_resubmissions = counter(
            "batch_resubmissions_total", "Stuck or timed-out batches resubmitted."
        )
        self.batches_tracked = gauge(
            "batches_tracked", "Accepted batches whose status is still being followed."
        )

        # -- the tenant's bulk-API call budget (consumer/core/budget.py, issue 11)
        self.call_budget_share = gauge(
            "call_budget_share_per_minute",
            "Bulk-API calls a minute this replica may make now (its share of the tenant's).",
        )
        self.group_members = gauge(
            "group_members", "Members of the consumer group, as Kafka describes it."
        )
        self.budget_calls = counter(
            "budget_calls_total", "Bulk-API calls spent from the budget, by api.", ("api",)
        )
        self.budget_waits = counter(
            "budget_waits_total", "Calls that had to wait for the budget, by api.", ("api",)
        )
        self.budget_throttled = counter(
            "target_throttled_total", "HTTP 503 answers of Target's bulk API, by api.", ("api",)
        )
        self.long_values = counter(
            "long_values_total",
            "Attribute values over 256 characters: sent, but Target truncates them in mboxes.",
        )
        self.unsafe_values = counter(
            "unsafe_cell_values_total",
            "Values holding a comma or line break (unsafe in a batch cell under reading B), "
            "by route: bulk (reading A), dlq.",
            ("route",),
        )
        # -- read-back audit (docs/operations.md "Read-back audit")
        self.audit_rows = counter(
            "audit_rows_total",
            "Rows read back from Target: kind sample or repair, result matching or lost.",
            ("kind", "result"),
        )
        self.audit_attributes = counter(
            "audit_attributes_total",
            "Attributes read back, by kind and verdict: matching, superseded, lost.",
            ("kind", "verdict"),
        )
        self.audit_reads = counter(
            "audit_reads_total",
            "Profile fetches for the audit: found, not_found, error.",
            ("outcome",),
        )
        self.audit_repairs = counter(
            "audit_repairs_total",
            "Lost rows sent again (sent), found whole after (succeeded), or dead-lettered.",
            ("outcome",),
        )
        self.audit_rows_dropped = counter(
            "audit_rows_dropped_total",
            "Rows not audited: memory (too many waiting), unreadable (reads failed), rebalance.",
            ("reason",),
        )
        self.audit_pending = gauge("audit_pending_rows", "Rows waiting for their read back.")

        # -- liveness
        self.loop_last_turn = gauge(
            "loop_last_turn_timestamp_seconds", "Unix time the consume loop last turned."
        )
        self.ready = gauge("ready", "1 when started and not fatal or shutting down.")
        self.worker_errors = counter(
            "worker_errors_total",
            "Unexpected exceptions in worker threads (bulk, status, single), logged with "
            "their traceback; a thread that dies also fails /livez.",
            ("worker",),
        )
        # Known label combinations start at 0, so that increase() sees a new replica's first
        # rejected or stuck batch (a series that appears at 1 has no increase).
        for id_type in ("thirdPartyId", "pcId"):
            for outcome in ("accepted", "rejected", "cancelled"):
                self.batches.labels(id_type, outcome)
        for status in ("complete", "stuck", "timeout", "unknown"):
            self.batch_status.labels(status)
        for worker in ("bulk", "status", "single"):
            self.worker_errors.labels(worker)
        for result in ("successful", "failed", "not_found"):
            self.batch_updates.labels(result)
        for api in ("upload", "poll"):
            self.budget_throttled.labels(api)
            self.budget_calls.labels(api)
            self.budget_waits.labels(api)
        for kind in ("sample", "repair"):
            for result in ("matching", "lost"):
                self.audit_rows.labels(kind, result)
            for verdict in ("matching", "superseded", "lost"):
                self.audit_attributes.labels(kind, verdict)
        for outcome in ("sent", "succeeded", "dead_lettered"):
            self.audit_repairs.labels(outcome)
        for outcome in ("found", "not_found", "error"):
            self.audit_reads.labels(outcome)
        for reason in ("memory", "unreadable", "rebalance"):
            self.audit_rows_dropped.labels(reason)
        for reason in ("filtered", "deleted", "tombstone"):
            self.mapping_skips.labels(reason)


def status_class(status: int | None) -> str:
    """'2xx', '4xx', '5xx'... or 'error' for a call that got no HTTP response."""
    return "error" if status is None else f"{status // 100}xx"
