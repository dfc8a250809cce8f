"""The catalogue of settings: each one declared once, as a field of ``Settings``.

A declaration gives the field's name and type, its default as an operator would write it,
the parser that checks the raw string, and the help text. The setting's KEY is the name in
upper case unless ``key=`` says otherwise: ``PROFILE_SYNC_KEY`` in the environment,
``key`` in the YAML file. ``secret(...)`` declares a value that lives in a
``Secret`` and is never shown. ``SETTINGS``, the README's configuration table,
``profile-sync check-config`` and deploy/validate_manifests.py are all read from here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from consumer.config import kafka
from consumer.config import values as v
from consumer.config.values import Secret

ENV_PREFIX = "PROFILE_SYNC_"

# Target's documented limits: a batch file under 50 MB and at most 500,000 rows.
TARGET_MAX_BATCH_ROWS = 500_000
TARGET_MAX_BATCH_BYTES = 50_000_000
# Target's single-update quota per tenant per rolling 24 hours.
TARGET_SINGLE_QUOTA = 1_000_000

_PACKAGE = Path(__file__).resolve().parents[1]
# In a wheel the schemas sit inside the package; in a source checkout beside it.
SCHEMA_DIR = (
    _PACKAGE / "schemas" if (_PACKAGE / "schemas").is_dir() else _PACKAGE.parent / "schemas"
)
DEFAULT_WRITER_SCHEMA = SCHEMA_DIR / "profile_change.avsc"


@dataclass(frozen=True, slots=True)
class Setting:
    """One PROFILE_SYNC_ setting: ``KEY`` in the environment, ``key`` in the YAML file."""

    key: str
    attr: str
    default: str
    parse: Callable[[str], Any]
    help: str
    secret: bool = False

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.key


_DECLARED = "profile_sync.setting"


def setting(default: str, parse: Callable[[str], Any], help: str, *, key: str = "") -> Any:
    """Declare a field of ``Settings`` (the value always comes from ``load``)."""
    return field(metadata={_DECLARED: (key, default, parse, help, False)})


def secret(help: str, *, key: str = "") -> Any:
    """Declare a secret field: empty by default, wrapped in ``Secret``, never echoed."""
    return field(metadata={_DECLARED: (key, "", Secret, help, True)})


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of the service, built by ``load``; each field is its one declaration."""

    # -- Kafka side
    topics: tuple[str, ...] = setting(
        "pos.profile-changes,crm.profile-changes",
        v.topics,
        "Comma-separated topics to consume ProfileChange events from.",
    )
    dlq_topic: str = setting(
        "profile-sync.dlq",
        v.nonempty,
        "Dead-letter topic for poison events and rejected rows (with reason headers).",
    )
    writer_schema: str = setting(
        "",
        v.existing_file,
        "Avro schema file the producers write plain (unframed) Avro with. "
        "Empty: the bundled schemas/profile_change.avsc.",
    )
    schema_registry_url: str = setting(
        "",
        v.optional_url,
        "When set, values are Confluent wire format and writer schemas are fetched by id.",
    )
    # (RUF009 cannot know ``secret`` declares a field, not a shared mutable default.)
    schema_registry_user_info: Secret = secret(  # noqa: RUF009
        "USER:PASSWORD for the Schema Registry (secret).",
        key="SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO",
    )
    consume_batch_size: int = setting(
        "1000",
        v.int_range(1, 100_000),
        "Messages taken from librdkafka per consume() call. An urgent event waits, at "
        "worst, for the intake of the others of its call (~35 ms for 1,000).",
    )
    mapping_file: str = setting(
        "",
        v.existing_file,
        "Mapping file: how each topic's records become profile updates (docs/mapping.md). "
        "Empty: every topic carries the ProfileChange contract.",
    )
    max_future_skew_seconds: float = setting(
        "86400",
        v.float_range(0, 365 * 86400),
        "An event whose occurred_at is further in the future than this goes to the DLQ "
        "(invalid_occurred_at): it would outrank every later real update.",
    )
    repartition: str = setting(
        "auto",
        v.choice("auto", "always", "never"),
        "Route every update through the repartition topic so one replica owns each profile "
        "(docs/repartition.md). auto: when more than one topic, or a topic not keyed by "
        "profile id, is consumed; never: direct mode.",
    )
    repartition_topic: str = setting(
        "",
        v.text,
        "Internal topic of the repartition mode. Empty: <KAFKA_GROUP_ID>.repartition.",
    )
    changelog_topic: str = setting(
        "",
        v.text,
        "Compacted internal topic of the owner's memory. Empty: <KAFKA_GROUP_ID>.changelog.",
    )
    repartition_partitions: int = setting(
        "12",
        v.int_range(1, 10_000),
        "Partitions of both internal topics when the service creates them (at most that "
        "many replicas share the sync stage).",
    )
    repartition_retention_ms: int = setting(
        "604800000",
        v.int_range(3_600_000, 2**62),
        "retention.ms of the repartition topic it creates: outlast the longest Target outage.",
    )
    changelog_write_version: int = setting(
        "2",
        v.int_range(1, 2),
        "Format of the changelog records written: 2 carries value sizes (the 64 KB rule "
        "after a take-over); 1 for the first rollout from a release that reads only 1.",
    )
    changelog_restore_timeout_seconds: float = setting(
        "240",
        v.float_range(1, 3600),
        "Longest a new owner may take to restore its changelog partitions before it stops.",
    )

    # -- Target
    target_url: str = setting(
        "",
        v.optional_url,
        "Base URL of the Target edge, e.g. https://CLIENT.tt.omtrdc.net (or the emulator).",
    )
    target_client: str = setting(
        "",
        v.text,
        "Target client code (tenant), e.g. acmeretail.",
    )
    target_token_file: str = setting(
        "",
        v.text,
        "File holding the profile authentication token; re-read when it changes or on a 401.",
    )
    target_token: Secret = secret(  # noqa: RUF009
        "The token itself, when not given as a file (secret; cannot rotate)."
    )
    target_timeout_seconds: float = setting(
        "30",
        v.float_range(0.1, 600),
        "Timeout of one HTTP call to Target.",
    )
    pcid_bulk_version: str = setting(
        "v1",
        v.choice("v1", "v2"),
        "Bulk API version for pcId batches: v1 (right for set-ups that use ECID), or v2 "
        "only for set-ups without ECID. thirdPartyId batches always use v2.",
    )
    upload_form: str = setting(
        "raw",
        v.choice("raw", "multipart"),
        "raw: the batch file is the form body; multipart: a form field named 'file'.",
    )
    on_rejected: str = setting(
        "dlq",
        v.choice("dlq", "stop"),
        "A batch Target rejects permanently: its rows go to the DLQ, or the service stops.",
    )
    target_calls_per_minute: int = setting(
        "40",
        v.int_range(1, 10_000),
        "The tenant's bulk-API calls a minute (uploads and status polls) that the whole "
        "consumer group may spend (Target: 50, shared with the customer's other tools).",
    )
    target_cell_decoding: str = setting(
        "A",
        v.choice("a", "b"),
        "How the tenant decodes batch cells (profile-sync probe finds out): A, split then "
        "decode; B, decode then split (values with a comma or line break go to the DLQ).",
    )

    # -- batching and flow control
    batch_max_rows: int = setting(
        "500000",
        v.int_range(1, TARGET_MAX_BATCH_ROWS),
        "Most profile rows in one batch file (Target: 500,000).",
    )
    batch_max_bytes: int = setting(
        "16000000",
        v.int_range(1_000_000, TARGET_MAX_BATCH_BYTES - 1),
        "Batch file size the cut stays under (Target: under 50 MB).",
    )
    batch_linger_seconds: float = setting(
        "10",
        v.float_range(0.05, 3600),
        "Longest an event waits in the buffer before its batch is cut.",
    )
    max_in_flight_batches: int = setting(
        "2",
        v.int_range(1, 64),
        "Cut batches waiting or being sent (one upload at a time per id type, in order); "
        "more pauses consumption.",
    )
    buffer_max_bytes: int = setting(
        "64000000",
        v.int_range(1_000_000, 2**40),
        "Encoded bytes buffered (both id types) before consumption pauses.",
    )
    retry_initial_seconds: float = setting(
        "0.5",
        v.float_range(0.001, 600),
        "First retry delay; doubles per attempt (full jitter).",
    )
    retry_max_seconds: float = setting(
        "60",
        v.float_range(0.001, 3600),
        "Cap of the retry delay. Retryable failures are retried for as long as it takes.",
    )
    revoke_timeout_seconds: float = setting(
        "10",
        v.float_range(0.1, 600),
        "On partition revocation, how long to wait for their rows to settle.",
    )
    shutdown_timeout_seconds: float = setting(
        "25",
        v.float_range(0.1, 3600),
        "SIGTERM to exit; keep it below the pod's terminationGracePeriodSeconds.",
    )

    # -- urgent path
    single_enabled: bool = setting(
        "true",
        v.boolean,
        "Send URGENT events through the Single Profile Update API too.",
    )
    single_quota_per_day: int = setting(
        "200000",
        v.int_range(0, TARGET_SINGLE_QUOTA),
        "This replica's budget of single updates per rolling 24 hours.",
    )
    single_quota_state_file: str = setting(
        "",
        v.text,
        "File where the quota spending is kept across restarts (empty: memory only).",
    )
    single_concurrency: int = setting(
        "4",
        v.int_range(1, 64),
        "Single-update calls in flight at once.",
    )
    single_max_attempts: int = setting(
        "3",
        v.int_range(1, 20),
        "Attempts per single update before it is left to the bulk path.",
    )
    single_queue_max: int = setting(
        "10000",
        v.int_range(1, 10_000_000),
        "Urgent events waiting for a single call; past it they keep only the bulk path.",
    )
    single_queue_max_bytes: int = setting(
        "16000000",
        v.int_range(100_000, 2**34),
        "Bytes of urgent events waiting for a single call, counted as their encoded "
        "parameters plus a fixed cost per event and attribute; past it they keep only the "
        "bulk path. 16 MB: the 10,000 events of the count bound at up to ~1.6 KB each, or ~260 "
        "at the 60 KB cap; ~20 MB of memory where a count alone allowed ~640 MB.",
    )

    # -- carry-forward and batch status
    carry_forward_enabled: bool = setting(
        "true",
        v.boolean,
        "Carry attributes of not-yet-complete batches into later rows of the same profile.",
    )
    carry_forward_max_profiles: int = setting(
        "50000",
        v.int_range(0, 100_000_000),
        "Profiles remembered for carry-forward; past it the oldest are evicted (counted).",
    )
    carry_forward_max_bytes: int = setting(
        "128000000",
        v.int_range(1_000_000, 2**40),
        "Memory of carry-forward (and the owner's memory), counted as the encoded values "
        "and names it keeps plus a fixed cost per profile and attribute; past it the oldest "
        "complete profiles are evicted (counted), pending ones wait: consumption pauses.",
    )
    status_poll_initial_seconds: float = setting(
        "5",
        v.float_range(0.01, 3600),
        "First batch-status poll after acceptance; backs off.",
    )
    status_poll_max_seconds: float = setting(
        "300",
        v.float_range(0.01, 86400),
        "Longest interval between batch-status polls.",
    )
    status_max_age_seconds: float = setting(
        "86400",
        v.float_range(0.1, 7 * 86400),
        "A batch not complete after this long is treated like a stuck one.",
    )
    status_max_resubmits: int = setting(
        "2",
        v.int_range(0, 100),
        "Resubmissions of a stuck batch before its rows go to the DLQ (batch_stuck).",
    )
    status_retain_max_bytes: int = setting(
        "128000000",
        v.int_range(0, 2**40),
        "Bytes of accepted batch files kept for resubmission; oldest dropped past it.",
    )
    status_unknown_release_seconds: float = setting(
        "3600",
        v.float_range(0, 7 * 86400),
        "A batch whose status Target no longer answers is carried forward this long after "
        "its acceptance, then released (never resent on that ground).",
    )

    # -- read-back audit (docs/operations.md "Read-back audit")
    audit_sample_share: float = setting(
        "0.01",
        v.float_range(0, 1),
        "Share of profiles read back from Target after their batch completed (0: none, 1: all).",
    )
    audit_reads_per_second: float = setting(
        "10",
        v.float_range(0.01, 1000),
        "Most profile fetches per second for the audit (its own budget, never the uploads').",
    )
    audit_settle_seconds: float = setting(
        "600",
        v.float_range(0, 86400),
        "Wait after a batch completes before reading its rows back (Target may apply late).",
    )
    audit_max_repairs: int = setting(
        "3",
        v.int_range(0, 100),
        "Times a lost row is sent again; then its lost attributes go to the DLQ (audit_lost).",
    )
    audit_max_pending: int = setting(
        "100000",
        v.int_range(1, 10_000_000),
        "Rows waiting for their read back; past it rows are not sampled (counted).",
    )

    # -- operations
    http_host: str = setting(
        "0.0.0.0",
        v.nonempty,
        "Address of the /metrics, /livez, /readyz server.",
    )
    http_port: int = setting(
        "8000",
        v.int_range(0, 65535),
        "Port of the /metrics, /livez, /readyz server (0: any free port).",
    )
    liveness_timeout_seconds: float = setting(
        "60",
        v.float_range(1, 3600),
        "/livez fails when the loop has not turned for this long.",
    )
    heap_trim_seconds: float = setting(
        "5",
        v.float_range(0, 3600),
        "Give freed heap back to the system at most this often, in an idle turn after "
        "consuming (glibc malloc_trim; 0: never). docs/performance.md.",
    )
    metrics_enabled: bool = setting(
        "true",
        v.boolean,
        "Export Prometheus metrics (turn off only to measure their cost).",
    )
    log_level: str = setting(
        "INFO",
        v.choice("debug", "info", "warning", "error"),
        "Log level.",
    )
    log_format: str = setting(
        "auto",
        v.choice("auto", "json", "text"),
        "json lines, human text, or auto (text on a TTY, else json).",
    )

    # -- the librdkafka pass-through (KAFKA_* variables, the YAML file's kafka: mapping)
    kafka: Mapping[str, str | Secret] = field(default_factory=dict)

    @property
    def writer_schema_path(self) -> Path:
        return Path(self.writer_schema) if self.writer_schema else DEFAULT_WRITER_SCHEMA

    def librdkafka(self) -> dict[str, str]:
        """The pass-through client properties, dotted keys, secrets revealed."""
        return kafka.revealed(self.kafka)

    def consumer_config(self) -> dict[str, str]:
        """librdkafka consumer properties: our safe defaults, then the user's KAFKA_* values.

        Offsets are stored by us, only when settled (``enable.auto.offset.store=false``).
        """
        return kafka.consumer_properties(self.kafka)

    def producer_config(self) -> dict[str, str]:
        """librdkafka producer properties for the DLQ: the user's connection settings."""
        return kafka.producer_properties(self.kafka)

    def redacted(self) -> dict[str, Any]:
        """Every effective setting by its environment name, secrets shown as ***."""
        out: dict[str, Any] = {}
        for s in SETTINGS:
            value = getattr(self, s.attr)
            if isinstance(value, Secret):
                value = "***" if value.reveal() else ""
            elif isinstance(value, tuple):
                value = ",".join(value)
            elif s.attr.endswith("_url") and isinstance(value, str):
                value = v.redact_url(value)
            out[s.env] = value
        for prop, value in sorted(self.kafka.items()):
            out[kafka.env_name(prop)] = "***" if isinstance(value, Secret) else value
        return out


def _catalogue() -> tuple[Setting, ...]:
    out = []
    for f in fields(Settings):
        if _DECLARED in f.metadata:
            key, default, parse, help_text, is_secret = f.metadata[_DECLARED]
            out.append(Setting(key or f.name.upper(), f.name, default, parse, help_text, is_secret))
    return tuple(out)


SETTINGS: tuple[Setting, ...] = _catalogue()


def markdown_table() -> str:
    """The README's configuration table, one row per setting in declaration order."""
    rows = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for s in SETTINGS:
        default = f" `{s.default}` " if s.default else " "
        rows.append(f"| `{s.env}` |{default}| {s.help} |")
    return "\n".join(rows) + "\n"
