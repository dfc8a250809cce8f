"""The librdkafka pass-through: ``KAFKA_*`` variables become dotted client properties.

``KAFKA_BOOTSTRAP_SERVERS`` -> ``bootstrap.servers``, the convention of Confluent's images.
Variables that only look like client properties (the JVM launcher's, the ones Kubernetes
injects for a Service named "kafka", deploy/local/kafka.sh's own) are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from consumer.config.values import Secret

KAFKA_PREFIX = "KAFKA_"

# KAFKA_* variables that are not client properties: the JVM launcher's own variables, and
# the ones Kubernetes injects for a Service named "kafka" (KAFKA_PORT=tcp://..., ...).
_NOT_CLIENT = (
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
_NOT_CLIENT_PREFIXES = ("KAFKA_PORT", "KAFKA_SERVICE_")
# librdkafka properties whose values are secrets.
SECRET_PROPERTIES = frozenset(
    {
        "sasl.password",
        "ssl.key.password",
        "ssl.keystore.password",
        "ssl.key.pem",
        "sasl.oauthbearer.client.secret",
        "sasl.oauthbearer.config",
        "ssl_key",
        "basic.auth.user.info",
    }
)
# Our consumer defaults; the user's KAFKA_* values override all but the offset store.
_CONSUMER_DEFAULTS = {
    "group.id": "target-profile-sync",
    "partition.assignment.strategy": "cooperative-sticky",
    "enable.auto.commit": "true",
    "enable.auto.offset.store": "false",
    "auto.offset.reset": "earliest",
    # The default of 1000 ms stalls fetching under a backlog.
    "fetch.queue.backoff.ms": "10",
    "statistics.interval.ms": "15000",
}
# Properties only a consumer understands: left out of the DLQ producer's configuration.
_CONSUMER_ONLY = (
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


def kafka_property(env_name: str) -> str | None:
    """The librdkafka property a ``KAFKA_*`` variable sets, or None if it sets none."""
    if env_name in _NOT_CLIENT or env_name.startswith(_NOT_CLIENT_PREFIXES):
        return None
    return env_name[len(KAFKA_PREFIX) :].lower().replace("_", ".")


def env_name(prop: str) -> str:
    """The ``KAFKA_*`` variable that sets the librdkafka property ``prop``."""
    return KAFKA_PREFIX + prop.upper().replace(".", "_")


def wrap_secrets(props: Mapping[str, str | Secret]) -> dict[str, str | Secret]:
    """``props`` with the values of secret properties wrapped in ``Secret``."""
    return {
        k: Secret(str(v)) if k in SECRET_PROPERTIES and not isinstance(v, Secret) else v
        for k, v in props.items()
    }


def revealed(props: Mapping[str, str | Secret]) -> dict[str, str]:
    return {k: v.reveal() if isinstance(v, Secret) else v for k, v in props.items()}


def consumer_properties(props: Mapping[str, str | Secret]) -> dict[str, str]:
    """Our safe defaults, then the user's values; offsets are stored only when settled."""
    config = {**_CONSUMER_DEFAULTS, **revealed(props)}
    # Never let a user setting turn on automatic offset storage: it would commit
    # events that are not settled yet.
    config["enable.auto.offset.store"] = "false"
    return config


def producer_properties(props: Mapping[str, str | Secret]) -> dict[str, str]:
    """The DLQ producer's properties: the user's connection settings, safe producer defaults."""
    config = {k: v for k, v in revealed(props).items() if not k.startswith(_CONSUMER_ONLY)}
    config.setdefault("acks", "all")
    config.setdefault("enable.idempotence", "true")
    config.setdefault("linger.ms", "20")
    # librdkafka's default queue holds up to 1 GiB; a full queue only makes produce() wait
    # (both producers serve deliveries and try again), so bound it (docs/deploy.md, Sizing).
    config.setdefault("queue.buffering.max.kbytes", "32768")
    return config


def librdkafka_problem(message: str) -> dict[str, str]:
    """Turn librdkafka's complaint about a property into {environment variable: why}."""
    match = re.search(r'"([a-z0-9_.]+)"', message)
    key = env_name(match.group(1)) if match else "KAFKA_*"
    return {key: f"rejected by librdkafka: {message}"}
