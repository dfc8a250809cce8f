"""The consumer's environment against the catalogue of settings (consumer/config/).

Every name is a setting or a ``KAFKA_*`` librdkafka property, no secret sits in a
ConfigMap, the whole environment loads with ``consumer.config.load`` and librdkafka
accepts the pass-through properties.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from consumer import compiled, config
from consumer.config.kafka import SECRET_PROPERTIES
from deploy.checks import Problems
from deploy.checks.yamldoc import find, get, name_of

# Where an operator looks up the settings.
SETTINGS_SOURCE = "consumer/config/settings.py"
# Kept out of ConfigMaps: the service's secret properties, and the SASL user name too.
SECRET_KAFKA_KEYS = SECRET_PROPERTIES | {"sasl.username"}
# Environment names that look like ours but are not settings: the YAML file's name, and
# the switch of the compiled hot path (read at import, before the settings: compiled.py).
EXTRA_ENV = frozenset({config.ENV_PREFIX + "CONFIG", compiled.ENV})


def known_env(name: str) -> bool:
    """True if ``name`` is a setting of the service or a KAFKA_* librdkafka property."""
    if name in EXTRA_ENV or name in {s.env for s in config.SETTINGS}:
        return True
    if name.startswith(config.KAFKA_PREFIX) and len(name) > len(config.KAFKA_PREFIX):
        return config.kafka_property(name) is not None
    return False


def check_no_secret_in_configmaps(
    docs: list[dict[str, Any]], where: str, problems: Problems
) -> None:
    secret_settings = {s.env for s in config.SETTINGS if s.secret}
    for cm in find(docs, "ConfigMap"):
        for key in cm.get("data") or {}:
            prop = config.kafka_property(key) if key.startswith(config.KAFKA_PREFIX) else None
            if key in secret_settings or prop in SECRET_KAFKA_KEYS:
                problems.add(
                    f"{where}: ConfigMap {name_of(cm)}", f"{key} is a secret: use a Secret"
                )


def container_env(
    container: Mapping[str, Any],
    docs: list[dict[str, Any]],
    where: str,
    problems: Problems,
) -> tuple[dict[str, str], set[str]]:
    """The container's environment as the pod would see it, and the names fed by Secrets."""
    configmaps = {name_of(d): d for d in find(docs, "ConfigMap")}
    env: dict[str, str] = {}
    from_secrets: set[str] = set()
    for src in container.get("envFrom") or []:
        if "configMapRef" in src:
            name = src["configMapRef"].get("name")
            cm = configmaps.get(name)
            if cm is None:
                problems.add(where, f"envFrom ConfigMap {name!r} is not part of the overlay")
                continue
            for key, value in (cm.get("data") or {}).items():
                env[key] = str(value)
        else:
            problems.add(where, "envFrom other than a ConfigMap cannot be checked; use env")
    for item in container.get("env") or []:
        name = item.get("name", "")
        if "value" in item:
            env[name] = str(item["value"])
        elif get(item, "valueFrom", "secretKeyRef"):
            from_secrets.add(name)
            # An optional Secret may be absent: the pod must work without it.
            if not item["valueFrom"]["secretKeyRef"].get("optional"):
                env[name] = "stand-in-from-secret"
        elif get(item, "valueFrom", "configMapKeyRef"):
            ref = item["valueFrom"]["configMapKeyRef"]
            cm = configmaps.get(ref.get("name"))
            value = get(cm, "data", ref.get("key", "")) if cm else None
            if value is None and not ref.get("optional"):
                problems.add(where, f"env {name}: ConfigMap key {ref} not found")
            if value is not None:
                env[name] = str(value)
        else:
            env[name] = "stand-in"
    return env, from_secrets


def load_settings(env: Mapping[str, str], where: str, problems: Problems) -> Any:
    """``config.load`` on ``env`` with the files it names made to exist; None on failure."""
    from consumer.errors import ConfigError

    with tempfile.TemporaryDirectory() as tmp:
        # Unknown names are reported by the caller; leave them out so the rest is checked.
        env = {k: v for k, v in env.items() if known_env(k)}
        # The token file and the writer schema are mounted at run time; their paths are
        # checked against the mounts separately.
        for key in ("TARGET_TOKEN_FILE", "WRITER_SCHEMA"):
            name = config.ENV_PREFIX + key
            if env.get(name):
                stand_in = Path(tmp) / key.lower()
                stand_in.write_text("stand-in\n" if key == "TARGET_TOKEN_FILE" else "{}")
                env[name] = str(stand_in)
        try:
            settings = config.load(env)
        except ConfigError as exc:
            for key, why in sorted(exc.problems.items()):
                problems.add(where, f"{key}: {why}")
            return None
    check_librdkafka(settings, where, problems)
    return settings


def check_librdkafka(settings: Any, where: str, problems: Problems) -> None:
    """librdkafka accepts the KAFKA_* properties (a client without brokers: no sockets)."""
    from confluent_kafka import Consumer, KafkaException

    props = settings.consumer_config()
    props.pop("bootstrap.servers", None)
    # Secrets come from Kubernetes Secrets at run time; stand-ins make SASL configs complete.
    if props.get("security.protocol", "").upper().startswith("SASL"):
        props.setdefault("sasl.username", "stand-in")
        props.setdefault("sasl.password", "stand-in")
    props["log_level"] = "3"  # errors only: no configuration warnings on stderr
    try:
        Consumer(props).close()
    except KafkaException as exc:
        problems.add(where, f"librdkafka rejects the KAFKA_* settings: {exc.args[0].str()}")
