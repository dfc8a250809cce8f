"""Build ``Settings`` from defaults, the YAML file and the environment, or say what is wrong.

Sources, later wins: the defaults of the catalogue, the YAML file named by
``PROFILE_SYNC_CONFIG``, then environment variables. Validation collects every problem
and raises one ``ConfigError`` that names each bad key; a secret's value is never echoed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from consumer import compiled
from consumer.config.kafka import KAFKA_PREFIX, kafka_property, wrap_secrets
from consumer.config.settings import ENV_PREFIX, SETTINGS, Settings
from consumer.config.values import Secret, bearer_problem
from consumer.errors import ConfigError

CONFIG_FILE_ENV = ENV_PREFIX + "CONFIG"


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
    props: dict[str, str | Secret] = {}
    problems: dict[str, str] = {}
    known = {s.key for s in SETTINGS}

    config_file = env.get(CONFIG_FILE_ENV, "").strip()
    if config_file:
        for name, value in _read_yaml(config_file).items():
            if str(name).lower() == "kafka" and isinstance(value, dict):
                for k, v in value.items():
                    props[str(k)] = str(v)
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
            if key == "COMPILED":  # read at import (consumer/compiled.py), checked here
                if value.strip().lower() not in compiled.CHOICES:
                    problems[name] = f"must be one of {', '.join(compiled.CHOICES)}"
                continue
            if key not in known:
                problems[name] = "unknown setting (check the spelling)"
                continue
            raw[key] = value
        elif name.startswith(KAFKA_PREFIX):
            prop = kafka_property(name)
            if prop:
                props[prop] = value

    values: dict[str, Any] = {}
    for s in SETTINGS:
        try:
            values[s.attr] = s.parse(raw[s.key])
        except ValueError as exc:
            # Never echo a secret's value back.
            problems[s.env] = "invalid value" if s.secret else str(exc)

    problems.update(_missing(values, props, require_target=require_target, kafka=require_kafka))
    problems.update(_inconsistent(values))
    if problems:
        raise ConfigError(problems)
    return Settings(kafka=wrap_secrets(props), **values)


def _missing(
    values: Mapping[str, Any], props: Mapping[str, object], *, require_target: bool, kafka: bool
) -> dict[str, str]:
    """Settings a command needs that are not given (checked on the valid values only)."""
    problems: dict[str, str] = {}
    if require_target:
        if "target_url" in values and not values["target_url"]:
            problems[ENV_PREFIX + "TARGET_URL"] = "required: the base URL of Target (or emulator)"
        if "target_client" in values and not values["target_client"]:
            problems[ENV_PREFIX + "TARGET_CLIENT"] = "required: the Target client code"
    if kafka and "bootstrap.servers" not in props:
        problems["KAFKA_BOOTSTRAP_SERVERS"] = "required: host:port of the Kafka brokers"
    token_file = values.get("target_token_file")
    if token_file and not Path(token_file).is_file():
        problems[ENV_PREFIX + "TARGET_TOKEN_FILE"] = f"file not found: {token_file}"
    problems.update(_token_problems(values))
    return problems


def _token_problems(values: Mapping[str, Any]) -> dict[str, str]:
    """A token that cannot be an HTTP header value is a configuration error, not a retry."""
    problems: dict[str, str] = {}
    token = values.get("target_token")
    if isinstance(token, Secret) and token.reveal():
        why = bearer_problem(token.reveal().strip())
        if why:
            problems[ENV_PREFIX + "TARGET_TOKEN"] = f"the token {why}"
    token_file = values.get("target_token_file")
    if token_file and Path(token_file).is_file():
        try:
            content = Path(token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            problems[ENV_PREFIX + "TARGET_TOKEN_FILE"] = f"cannot read {token_file}: {exc}"
        else:
            why = bearer_problem(content) if content else None
            if why:
                problems[ENV_PREFIX + "TARGET_TOKEN_FILE"] = f"the token in {token_file} {why}"
    return problems


def warnings(settings: Settings) -> list[str]:
    """Valid but risky: printed by ``check-config`` and logged at start-up."""
    out = []
    if settings.target_url.startswith("http://") and (
        settings.target_token.reveal() or settings.target_token_file
    ):
        out.append(
            "PROFILE_SYNC_TARGET_URL is plain http:// but a token is configured: the token "
            "crosses the network in clear (use https:// outside a test set-up)"
        )
    return out


def _inconsistent(values: Mapping[str, Any]) -> dict[str, str]:
    """Pairs of valid settings that contradict each other."""
    problems: dict[str, str] = {}

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
    return problems


def _read_yaml(path: str) -> dict[str, Any]:
    import yaml  # only when a file is named: keeps `check-config` and start-up quick

    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    except OSError as exc:
        raise ConfigError({CONFIG_FILE_ENV: f"cannot read {path}: {exc.strerror}"}) from exc
    except yaml.YAMLError as exc:
        raise ConfigError({CONFIG_FILE_ENV: f"{path} is not valid YAML: {exc}"}) from exc
    if not isinstance(data, dict):
        raise ConfigError({CONFIG_FILE_ENV: f"{path} must hold a mapping of settings"})
    return data


def _yaml_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
