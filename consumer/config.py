"""Configuration: one frozen ``Settings`` built once at start-up.

Sources, later wins: built-in defaults, the YAML file named by ``PROFILE_SYNC_CONFIG``,
then environment variables. Service settings use the prefix ``PROFILE_SYNC_``; every
``KAFKA_*`` variable passes through to librdkafka untouched apart from its name
(``KAFKA_BOOTSTRAP_SERVERS`` -> ``bootstrap.servers``), the convention of Confluent's images.

Every setting is declared once in ``SETTINGS`` with its default and meaning; the README's
configuration table and ``profile-sync check-config`` are both read from it. Validation
collects every problem and raises one ``ConfigError`` that names each bad key.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from consumer.errors import ConfigError

ENV_PREFIX = "PROFILE_SYNC_"
KAFKA_PREFIX = "KAFKA_"

# Target's documented limits: a batch file under 50 MB and at most 500,000 rows.
TARGET_MAX_BATCH_ROWS = 500_000
TARGET_MAX_BATCH_BYTES = 50_000_000
# Target's single-update quota per tenant per rolling 24 hours.
TARGET_SINGLE_QUOTA = 1_000_000

# KAFKA_* variables that are not client properties: the JVM launcher's own variables, and
# the ones Kubernetes injects for a Service named "kafka" (KAFKA_PORT=tcp://..., ...).
_KAFKA_NOT_CLIENT = (
    "KAFKA_HEAP_OPTS",
    "KAFKA_OPTS",
    "KAFKA_JMX_OPTS",
    "KAFKA_LOG4J_OPTS",
    "KAFKA_HOME",
    "KAFKA_VERSION",
    "KAFKA_STATE_DIR",
    "KAFKA_CONTROLLER_PORT",
    # deploy/local/kafka.sh's own settings
    "KAFKA_START_TIMEOUT",
    "KAFKA_STOP_TIMEOUT",
    "KAFKA_OWNER_PID",
    "KAFKA_PYTHON",
)
_KAFKA_NOT_CLIENT_PREFIXES = ("KAFKA_PORT", "KAFKA_SERVICE_")
# librdkafka properties whose values are secrets.
_SECRET_KAFKA_KEYS = frozenset(
    {
        "sasl.password",
        "ssl.key.password",
        "ssl.keystore.password",
        "ssl.key.pem",
        "sasl.oauthbearer.client.secret",
        "ssl_key",
        "basic.auth.user.info",
    }
)
# What Kubernetes injects for a Service named "profile-sync" (PROFILE_SYNC_SERVICE_HOST,
# PROFILE_SYNC_PORT_8000_TCP, ...): not settings of ours.
_SERVICE_LINK_PREFIXES = ("SERVICE_", "PORT")
_PACKAGE = Path(__file__).resolve().parent
# In a wheel the schemas sit inside the package; in a source checkout beside it.
SCHEMA_DIR = (
    _PACKAGE / "schemas" if (_PACKAGE / "schemas").is_dir() else _PACKAGE.parent / "schemas"
)
DEFAULT_WRITER_SCHEMA = SCHEMA_DIR / "profile_change.avsc"


class Secret:
    """A string that never prints. Call ``reveal()`` at the one place that needs the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


# ---- value parsers: take the raw string, return the value or raise ValueError(why) ----


def _int_range(lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip().replace("_", ""))
        except ValueError:
            raise ValueError(f"expected a whole number, got {raw!r}") from None
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo:,} and {hi:,}, got {value:,}")
        return value

    return parse


def _float_range(lo: float, hi: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"expected a number, got {raw!r}") from None
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo:g} and {hi:g}, got {value:g}")
        return value

    return parse


def _choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {raw!r}")
        return value

    return parse


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


def _topics(raw: str) -> tuple[str, ...]:
    topics = tuple(t.strip() for t in raw.split(",") if t.strip())
    if not topics:
        raise ValueError("needs at least one topic")
    return topics


def _url(raw: str) -> str:
    value = raw.strip().rstrip("/")
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"must be an http:// or https:// URL, got {raw!r}")
    return value


def _optional_url(raw: str) -> str:
    return _url(raw) if raw.strip() else ""


def _nonempty(raw: str) -> str:
    if not raw.strip():
        raise ValueError("must not be empty")
    return raw.strip()


def _path(raw: str) -> str:
    return raw.strip()


def _existing_file(raw: str) -> str:
    path = raw.strip()
    if path and not Path(path).is_file():
        raise ValueError(f"file not found: {path}")
    return path


def _secret(raw: str) -> Secret:
    return Secret(raw)


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


SETTINGS: tuple[Setting, ...] = (
    # -- Kafka side
    Setting(
        "TOPICS",
        "topics",
        "pos.profile-changes,crm.profile-changes",
        _topics,
        "Comma-separated topics to consume ProfileChange events from.",
    ),
    Setting(
        "DLQ_TOPIC",
        "dlq_topic",
        "profile-sync.dlq",
        _nonempty,
        "Dead-letter topic for poison events and rejected rows (with reason headers).",
    ),
    Setting(
        "WRITER_SCHEMA",
        "writer_schema",
        "",
        _existing_file,
        "Avro schema file the producers write plain (unframed) Avro with. "
        "Empty: the bundled schemas/profile_change.avsc.",
    ),
    Setting(
        "SCHEMA_REGISTRY_URL",
        "schema_registry_url",
        "",
        _optional_url,
        "When set, values are Confluent wire format and writer schemas are fetched by id.",
    ),
    Setting(
        "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO",
        "schema_registry_user_info",
        "",
        _secret,
        "USER:PASSWORD for the Schema Registry (secret).",
        secret=True,
    ),
    Setting(
        "CONSUME_BATCH_SIZE",
        "consume_batch_size",
        "5000",
        _int_range(1, 100_000),
        "Messages taken from librdkafka per consume() call.",
    ),
    # -- Target
    Setting(
        "TARGET_URL",
        "target_url",
        "",
        _optional_url,
        "Base URL of the Target edge, e.g. https://CLIENT.tt.omtrdc.net (or the emulator).",
    ),
    Setting(
        "TARGET_CLIENT", "target_client", "", _path, "Target client code (tenant), e.g. acmeretail."
    ),
    Setting(
        "TARGET_TOKEN_FILE",
        "target_token_file",
        "",
        _path,
        "File holding the profile authentication token; re-read when it changes or on a 401.",
    ),
    Setting(
        "TARGET_TOKEN",
        "target_token",
        "",
        _secret,
        "The token itself, when not given as a file (secret; cannot rotate).",
        secret=True,
    ),
    Setting(
        "TARGET_TIMEOUT_SECONDS",
        "target_timeout_seconds",
        "30",
        _float_range(0.1, 600),
        "Timeout of one HTTP call to Target.",
    ),
    Setting(
        "PCID_BULK_VERSION",
        "pcid_bulk_version",
        "v2",
        _choice("v1", "v2"),
        "Bulk API version for pcId batches (v1 for Target set-ups that use ECID).",
    ),
    Setting(
        "UPLOAD_FORM",
        "upload_form",
        "raw",
        _choice("raw", "multipart"),
        "raw: the batch file is the form body; multipart: a form field named 'file'.",
    ),
    Setting(
        "ON_REJECTED",
        "on_rejected",
        "dlq",
        _choice("dlq", "stop"),
        "A batch Target rejects permanently: its rows go to the DLQ, or the service stops.",
    ),
    # -- batching and flow control
    Setting(
        "BATCH_MAX_ROWS",
        "batch_max_rows",
        "500000",
        _int_range(1, TARGET_MAX_BATCH_ROWS),
        "Most profile rows in one batch file (Target: 500,000).",
    ),
    Setting(
        "BATCH_MAX_BYTES",
        "batch_max_bytes",
        "16000000",
        _int_range(1_000_000, TARGET_MAX_BATCH_BYTES - 1),
        "Batch file size the cut stays under (Target: under 50 MB).",
    ),
    Setting(
        "BATCH_LINGER_SECONDS",
        "batch_linger_seconds",
        "10",
        _float_range(0.05, 3600),
        "Longest an event waits in the buffer before its batch is cut.",
    ),
    Setting(
        "MAX_IN_FLIGHT_BATCHES",
        "max_in_flight_batches",
        "2",
        _int_range(1, 64),
        "Cut batches waiting or being sent (one upload at a time per id type, in order); "
        "more pauses consumption.",
    ),
    Setting(
        "BUFFER_MAX_BYTES",
        "buffer_max_bytes",
        "64000000",
        _int_range(1_000_000, 2**40),
        "Encoded bytes buffered (both id types) before consumption pauses.",
    ),
    Setting(
        "RETRY_INITIAL_SECONDS",
        "retry_initial_seconds",
        "0.5",
        _float_range(0.001, 600),
        "First retry delay; doubles per attempt (full jitter).",
    ),
    Setting(
        "RETRY_MAX_SECONDS",
        "retry_max_seconds",
        "60",
        _float_range(0.001, 3600),
        "Cap of the retry delay. Retryable failures are retried for as long as it takes.",
    ),
    Setting(
        "REVOKE_TIMEOUT_SECONDS",
        "revoke_timeout_seconds",
        "10",
        _float_range(0.1, 600),
        "On partition revocation, how long to wait for their rows to settle.",
    ),
    Setting(
        "SHUTDOWN_TIMEOUT_SECONDS",
        "shutdown_timeout_seconds",
        "25",
        _float_range(0.1, 3600),
        "SIGTERM to exit; keep it below the pod's terminationGracePeriodSeconds.",
    ),
    # -- urgent path
    Setting(
        "SINGLE_ENABLED",
        "single_enabled",
        "true",
        _bool,
        "Send URGENT events through the Single Profile Update API too.",
    ),
    Setting(
        "SINGLE_QUOTA_PER_DAY",
        "single_quota_per_day",
        "200000",
        _int_range(0, TARGET_SINGLE_QUOTA),
        "This replica's budget of single updates per rolling 24 hours.",
    ),
    Setting(
        "SINGLE_QUOTA_STATE_FILE",
        "single_quota_state_file",
        "",
        _path,
        "File where the quota spending is kept across restarts (empty: memory only).",
    ),
    Setting(
        "SINGLE_CONCURRENCY",
        "single_concurrency",
        "4",
        _int_range(1, 64),
        "Single-update calls in flight at once.",
    ),
    Setting(
        "SINGLE_MAX_ATTEMPTS",
        "single_max_attempts",
        "3",
        _int_range(1, 20),
        "Attempts per single update before it is left to the bulk path.",
    ),
    Setting(
        "SINGLE_QUEUE_MAX",
        "single_queue_max",
        "10000",
        _int_range(1, 10_000_000),
        "Urgent events waiting for a single call; past it they keep only the bulk path.",
    ),
    # -- carry-forward and batch status
    Setting(
        "CARRY_FORWARD_ENABLED",
        "carry_forward_enabled",
        "true",
        _bool,
        "Carry attributes of not-yet-complete batches into later rows of the same profile.",
    ),
    Setting(
        "CARRY_FORWARD_MAX_PROFILES",
        "carry_forward_max_profiles",
        "50000",
        _int_range(0, 100_000_000),
        "Profiles remembered for carry-forward; past it the oldest are evicted (counted).",
    ),
    Setting(
        "STATUS_POLL_INITIAL_SECONDS",
        "status_poll_initial_seconds",
        "5",
        _float_range(0.01, 3600),
        "First batch-status poll after acceptance; backs off.",
    ),
    Setting(
        "STATUS_POLL_MAX_SECONDS",
        "status_poll_max_seconds",
        "300",
        _float_range(0.01, 86400),
        "Longest interval between batch-status polls.",
    ),
    Setting(
        "STATUS_MAX_AGE_SECONDS",
        "status_max_age_seconds",
        "86400",
        _float_range(0.1, 7 * 86400),
        "A batch not complete after this long is treated like a stuck one.",
    ),
    Setting(
        "STATUS_MAX_RESUBMITS",
        "status_max_resubmits",
        "2",
        _int_range(0, 100),
        "Resubmissions of a stuck batch before its rows go to the DLQ (batch_stuck).",
    ),
    Setting(
        "STATUS_RETAIN_MAX_BYTES",
        "status_retain_max_bytes",
        "128000000",
        _int_range(0, 2**40),
        "Bytes of accepted batch files kept for resubmission; oldest dropped past it.",
    ),
    # -- operations
    Setting(
        "HTTP_HOST",
        "http_host",
        "0.0.0.0",
        _nonempty,
        "Address of the /metrics, /livez, /readyz server.",
    ),
    Setting(
        "HTTP_PORT",
        "http_port",
        "8000",
        _int_range(0, 65535),
        "Port of the /metrics, /livez, /readyz server (0: any free port).",
    ),
    Setting(
        "LIVENESS_TIMEOUT_SECONDS",
        "liveness_timeout_seconds",
        "60",
        _float_range(1, 3600),
        "/livez fails when the loop has not turned for this long.",
    ),
    Setting(
        "METRICS_ENABLED",
        "metrics_enabled",
        "true",
        _bool,
        "Export Prometheus metrics (turn off only to measure their cost).",
    ),
    Setting(
        "LOG_LEVEL", "log_level", "INFO", _choice("debug", "info", "warning", "error"), "Log level."
    ),
    Setting(
        "LOG_FORMAT",
        "log_format",
        "auto",
        _choice("auto", "json", "text"),
        "json lines, human text, or auto (text on a TTY, else json).",
    ),
)


@dataclass(frozen=True, slots=True)
class Settings:
    topics: tuple[str, ...]
    dlq_topic: str
    writer_schema: str
    schema_registry_url: str
    schema_registry_user_info: Secret
    consume_batch_size: int
    target_url: str
    target_client: str
    target_token_file: str
    target_token: Secret
    target_timeout_seconds: float
    pcid_bulk_version: str
    upload_form: str
    on_rejected: str
    batch_max_rows: int
    batch_max_bytes: int
    batch_linger_seconds: float
    max_in_flight_batches: int
    buffer_max_bytes: int
    retry_initial_seconds: float
    retry_max_seconds: float
    revoke_timeout_seconds: float
    shutdown_timeout_seconds: float
    single_enabled: bool
    single_quota_per_day: int
    single_quota_state_file: str
    single_concurrency: int
    single_max_attempts: int
    single_queue_max: int
    carry_forward_enabled: bool
    carry_forward_max_profiles: int
    status_poll_initial_seconds: float
    status_poll_max_seconds: float
    status_max_age_seconds: float
    status_max_resubmits: int
    status_retain_max_bytes: int
    http_host: str
    http_port: int
    liveness_timeout_seconds: float
    metrics_enabled: bool
    log_level: str
    log_format: str
    kafka: Mapping[str, str | Secret] = field(default_factory=dict)

    @property
    def writer_schema_path(self) -> Path:
        return Path(self.writer_schema) if self.writer_schema else DEFAULT_WRITER_SCHEMA

    def librdkafka(self) -> dict[str, str]:
        """The pass-through client properties, dotted keys, secrets revealed."""
        return {k: v.reveal() if isinstance(v, Secret) else v for k, v in self.kafka.items()}

    def consumer_config(self) -> dict[str, str]:
        """librdkafka consumer properties: our safe defaults, then the user's KAFKA_* values.

        Offsets are stored by us, only when settled (``enable.auto.offset.store=false``).
        """
        config = {
            "group.id": "target-profile-sync",
            "partition.assignment.strategy": "cooperative-sticky",
            "enable.auto.commit": "true",
            "enable.auto.offset.store": "false",
            "auto.offset.reset": "earliest",
            # The default of 1000 ms stalls fetching under a backlog.
            "fetch.queue.backoff.ms": "10",
            "statistics.interval.ms": "15000",
        }
        config.update(self.librdkafka())
        # Never let a user setting turn on automatic offset storage: it would commit
        # events that are not settled yet.
        config["enable.auto.offset.store"] = "false"
        return config

    def producer_config(self) -> dict[str, str]:
        """librdkafka producer properties for the DLQ: the user's connection settings."""
        consumer_only = (
            "group.",
            "partition.assignment",
            "enable.auto",
            "auto.offset",
            "fetch.",
            "session.timeout",
            "heartbeat.",
            "max.poll",
            "isolation.",
            "group.instance",
            "statistics.interval",
            "auto.commit",
        )
        config = {k: v for k, v in self.librdkafka().items() if not k.startswith(consumer_only)}
        config.setdefault("acks", "all")
        config.setdefault("enable.idempotence", "true")
        config.setdefault("linger.ms", "20")
        return config

    def redacted(self) -> dict[str, Any]:
        """Every effective setting by its environment name, secrets shown as ***."""
        out: dict[str, Any] = {}
        for s in SETTINGS:
            value = getattr(self, s.attr)
            if isinstance(value, Secret):
                value = "***" if value.reveal() else ""
            elif isinstance(value, tuple):
                value = ",".join(value)
            out[s.env] = value
        for key, value in sorted(self.kafka.items()):
            env = KAFKA_PREFIX + key.upper().replace(".", "_")
            out[env] = "***" if isinstance(value, Secret) else value
        return out

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def librdkafka_problem(message: str) -> dict[str, str]:
    """Turn librdkafka's complaint about a property into {environment variable: why}."""
    match = re.search(r'"([a-z0-9_.]+)"', message)
    key = KAFKA_PREFIX + match.group(1).upper().replace(".", "_") if match else "KAFKA_*"
    return {key: f"rejected by librdkafka: {message}"}


def _kafka_key(env_name: str) -> str | None:
    if env_name in _KAFKA_NOT_CLIENT or env_name.startswith(_KAFKA_NOT_CLIENT_PREFIXES):
        return None
    return env_name[len(KAFKA_PREFIX) :].lower().replace("_", ".")


def _read_yaml(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    except OSError as exc:
        raise ConfigError({ENV_PREFIX + "CONFIG": f"cannot read {path}: {exc.strerror}"}) from exc
    except yaml.YAMLError as exc:
        raise ConfigError({ENV_PREFIX + "CONFIG": f"{path} is not valid YAML: {exc}"}) from exc
    if not isinstance(data, dict):
        raise ConfigError({ENV_PREFIX + "CONFIG": f"{path} must hold a mapping of settings"})
    return data


def load(
    environ: Mapping[str, str] | None = None,
    *,
    require_target: bool = True,
    require_kafka: bool = True,
) -> Settings:
    """Build ``Settings`` from the environment (and the YAML file it names).

    Raises ``ConfigError`` naming every bad key. ``require_target`` makes TARGET_URL and
    TARGET_CLIENT mandatory, ``require_kafka`` KAFKA_BOOTSTRAP_SERVERS (``run`` needs both;
    ``profile get`` needs no Kafka).
    """
    env = dict(os.environ if environ is None else environ)
    raw: dict[str, str] = {s.key: s.default for s in SETTINGS}
    kafka: dict[str, str | Secret] = {}
    problems: dict[str, str] = {}
    known = {s.key for s in SETTINGS}

    config_file = env.get(ENV_PREFIX + "CONFIG", "").strip()
    if config_file:
        for name, value in _read_yaml(config_file).items():
            if str(name).lower() == "kafka" and isinstance(value, dict):
                for k, v in value.items():
                    kafka[str(k)] = str(v)
                continue
            key = str(name).upper()
            if key not in known:
                problems[f"{config_file}: {name}"] = "unknown setting"
                continue
            raw[key] = ",".join(map(str, value)) if isinstance(value, list) else _yaml_str(value)

    for name, value in env.items():
        if name.startswith(ENV_PREFIX):
            key = name[len(ENV_PREFIX) :]
            if key == "CONFIG":
                continue
            if key not in known:
                problems[name] = "unknown setting (check the spelling)"
                continue
            raw[key] = value
        elif name.startswith(KAFKA_PREFIX):
            kafka_key = _kafka_key(name)
            if kafka_key:
                kafka[kafka_key] = value

    values: dict[str, Any] = {}
    for s in SETTINGS:
        try:
            values[s.attr] = s.parse(raw[s.key])
        except ValueError as exc:
            # Never echo a secret's value back.
            problems[s.env] = "invalid value" if s.secret else str(exc)

    for key in list(kafka):
        if key in _SECRET_KAFKA_KEYS:
            kafka[key] = Secret(str(kafka[key]))

    # Checks of single settings first (each independent), then of pairs of valid ones.
    if require_target:
        if "target_url" in values and not values["target_url"]:
            problems[ENV_PREFIX + "TARGET_URL"] = "required: the base URL of Target (or emulator)"
        if "target_client" in values and not values["target_client"]:
            problems[ENV_PREFIX + "TARGET_CLIENT"] = "required: the Target client code"
    if require_kafka and "bootstrap.servers" not in kafka:
        problems["KAFKA_BOOTSTRAP_SERVERS"] = "required: host:port of the Kafka brokers"
    token_file = values.get("target_token_file")
    if token_file and not Path(token_file).is_file():
        problems[ENV_PREFIX + "TARGET_TOKEN_FILE"] = f"file not found: {token_file}"

    def both(*attrs: str) -> bool:
        return all(a in values for a in attrs)

    if (
        both("retry_max_seconds", "retry_initial_seconds")
        and values["retry_max_seconds"] < values["retry_initial_seconds"]
    ):
        problems[ENV_PREFIX + "RETRY_MAX_SECONDS"] = "must be >= RETRY_INITIAL_SECONDS"
    if (
        both("status_poll_max_seconds", "status_poll_initial_seconds")
        and values["status_poll_max_seconds"] < values["status_poll_initial_seconds"]
    ):
        problems[ENV_PREFIX + "STATUS_POLL_MAX_SECONDS"] = "must be >= STATUS_POLL_INITIAL_SECONDS"
    if both("dlq_topic", "topics") and values["dlq_topic"] in values["topics"]:
        problems[ENV_PREFIX + "DLQ_TOPIC"] = "must not be one of PROFILE_SYNC_TOPICS"
    if problems:
        raise ConfigError(problems)
    return Settings(kafka=kafka, **values)


def _yaml_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
