"""Configuration as an operator meets it: env and YAML, bad keys named, no secret shown."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from consumer.config import SETTINGS, Secret, Settings, load
from consumer.errors import ConfigError

REQUIRED = {
    "PROFILE_SYNC_TARGET_URL": "http://127.0.0.1:8080",
    "PROFILE_SYNC_TARGET_CLIENT": "acmeretail",
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19092",
}
PASSWORD = "pw-9f3Kq!sasl"
TOKEN = "tok-7Zx2#target"
REGISTRY = "sr-user:sr-4Lm8$pass"


def load_env(**env: str) -> Settings:
    return load({**REQUIRED, **env})


def problems(env: dict[str, str], **kwargs: bool) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load(env, **kwargs)
    # The message an operator reads names every bad key.
    for key in info.value.problems:
        assert key in str(info.value)
    return info.value.problems


# -- defaults


def test_every_default_parses_and_is_the_effective_value() -> None:
    settings = load({}, require_target=False, require_kafka=False)
    for s in SETTINGS:
        assert getattr(settings, s.attr) == s.parse(s.default), s.key
    assert settings.batch_max_rows == 500_000
    assert settings.batch_max_bytes == 16_000_000
    assert settings.topics == ("pos.profile-changes", "crm.profile-changes")
    assert settings.kafka == {}


def test_target_and_kafka_are_required_to_run() -> None:
    no_kafka = {k: v for k, v in REQUIRED.items() if not k.startswith("KAFKA_")}
    assert set(problems(no_kafka)) == {"KAFKA_BOOTSTRAP_SERVERS"}
    assert "PROFILE_SYNC_TARGET_URL" in problems({})
    assert "PROFILE_SYNC_TARGET_CLIENT" in problems({})
    assert load(no_kafka, require_kafka=False).kafka == {}  # profile get needs no Kafka
    settings = load_env()
    assert settings.target_url == "http://127.0.0.1:8080"
    assert settings.target_client == "acmeretail"


# -- bad values name their key and say why


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("BATCH_MAX_ROWS", "600000", "500,000"),
        ("BATCH_MAX_ROWS", "0", "between 1 and 500,000"),
        ("BATCH_MAX_ROWS", "lots", "whole number"),
        ("BATCH_MAX_BYTES", "50000000", "49,999,999"),
        ("BATCH_LINGER_SECONDS", "0", "between"),
        ("BATCH_LINGER_SECONDS", "soon", "expected a number"),
        ("SINGLE_QUOTA_PER_DAY", "1000001", "1,000,000"),
        ("SINGLE_ENABLED", "maybe", "true or false"),
        ("LOG_LEVEL", "verbose", "debug, info, warning, error"),
        ("ON_REJECTED", "ignore", "dlq, stop"),
        ("TARGET_URL", "ftp://target.example", "http"),
        ("TOPICS", " , ", "at least one topic"),
        ("HTTP_PORT", "65536", "65,535"),
        ("WRITER_SCHEMA", "/nonexistent/schema.avsc", "file not found"),
    ],
)
def test_a_bad_value_names_its_key_and_why(key: str, value: str, why: str) -> None:
    found = problems({**REQUIRED, f"PROFILE_SYNC_{key}": value})
    assert set(found) == {f"PROFILE_SYNC_{key}"}
    assert why in found[f"PROFILE_SYNC_{key}"]


def test_every_problem_is_reported_at_once() -> None:
    found = problems(
        {
            **REQUIRED,
            "PROFILE_SYNC_BATCH_MAX_ROWS": "600000",
            "PROFILE_SYNC_LOG_FORMAT": "xml",
            "PROFILE_SYNC_BATCH_MAX_ROW": "5",
        }
    )
    assert set(found) == {
        "PROFILE_SYNC_BATCH_MAX_ROWS",
        "PROFILE_SYNC_LOG_FORMAT",
        "PROFILE_SYNC_BATCH_MAX_ROW",
    }


def test_an_unknown_profile_sync_variable_is_rejected() -> None:
    found = problems({**REQUIRED, "PROFILE_SYNC_LINGER_SECONDS": "5"})
    assert "unknown setting" in found["PROFILE_SYNC_LINGER_SECONDS"]


def test_settings_that_contradict_each_other_are_rejected() -> None:
    found = problems(
        {
            **REQUIRED,
            "PROFILE_SYNC_RETRY_INITIAL_SECONDS": "10",
            "PROFILE_SYNC_RETRY_MAX_SECONDS": "5",
            "PROFILE_SYNC_DLQ_TOPIC": "crm.profile-changes",
            "PROFILE_SYNC_TARGET_TOKEN_FILE": "/nonexistent/token",
        }
    )
    assert set(found) == {
        "PROFILE_SYNC_RETRY_MAX_SECONDS",
        "PROFILE_SYNC_DLQ_TOPIC",
        "PROFILE_SYNC_TARGET_TOKEN_FILE",
    }


def test_values_are_parsed_leniently_where_people_differ() -> None:
    settings = load_env(
        PROFILE_SYNC_BATCH_MAX_ROWS=" 100_000 ",
        PROFILE_SYNC_SINGLE_ENABLED="OFF",
        PROFILE_SYNC_LOG_LEVEL="DEBUG",
        PROFILE_SYNC_TOPICS="a, b,,c",
        PROFILE_SYNC_TARGET_URL="https://acme.tt.omtrdc.net/",
    )
    assert settings.batch_max_rows == 100_000
    assert settings.single_enabled is False
    assert settings.log_level == "debug"
    assert settings.topics == ("a", "b", "c")
    assert settings.target_url == "https://acme.tt.omtrdc.net"


# -- KAFKA_* pass-through


def test_kafka_variables_become_librdkafka_properties() -> None:
    settings = load_env(
        KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
        KAFKA_SASL_USERNAME="svc-profile-sync",
        KAFKA_GROUP_ID="my-group",
    )
    assert settings.librdkafka() == {
        "bootstrap.servers": "127.0.0.1:19092",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "svc-profile-sync",
        "group.id": "my-group",
    }
    consumer = settings.consumer_config()
    assert consumer["bootstrap.servers"] == "127.0.0.1:19092"
    assert consumer["group.id"] == "my-group"  # the user's value beats our default
    producer = settings.producer_config()
    assert producer["security.protocol"] == "SASL_SSL"
    assert "group.id" not in producer
    assert producer["acks"] == "all"


@pytest.mark.parametrize(
    "name",
    [
        "KAFKA_PORT",
        "KAFKA_PORT_9092_TCP",
        "KAFKA_PORT_9092_TCP_ADDR",
        "KAFKA_SERVICE_HOST",
        "KAFKA_SERVICE_PORT",
        "KAFKA_HEAP_OPTS",
        "KAFKA_OPTS",
        "KAFKA_JMX_OPTS",
    ],
)
def test_kubernetes_service_and_jvm_variables_are_not_client_properties(name: str) -> None:
    settings = load_env(**{name: "tcp://10.96.0.12:9092"})
    assert settings.librdkafka() == {"bootstrap.servers": "127.0.0.1:19092"}


def test_automatic_offset_storing_can_never_be_turned_on() -> None:
    settings = load_env(KAFKA_ENABLE_AUTO_OFFSET_STORE="true")
    assert settings.consumer_config()["enable.auto.offset.store"] == "false"
    assert load_env().consumer_config()["enable.auto.offset.store"] == "false"


# -- secrets


def _secret_env() -> dict[str, str]:
    return {
        **REQUIRED,
        "KAFKA_SASL_PASSWORD": PASSWORD,
        "PROFILE_SYNC_TARGET_TOKEN": TOKEN,
        "PROFILE_SYNC_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": REGISTRY,
    }


def test_secrets_never_print() -> None:
    settings = load(_secret_env())
    assert isinstance(settings.kafka["sasl.password"], Secret)
    assert isinstance(settings.target_token, Secret)
    shown = repr(settings) + str(settings) + repr(settings.redacted()) + repr(settings.kafka)
    for secret in (PASSWORD, TOKEN, REGISTRY):
        assert secret not in shown
    redacted = settings.redacted()
    assert redacted["KAFKA_SASL_PASSWORD"] == "***"
    assert redacted["PROFILE_SYNC_TARGET_TOKEN"] == "***"
    assert redacted["PROFILE_SYNC_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"] == "***"
    assert redacted["PROFILE_SYNC_BATCH_MAX_ROWS"] == 500_000  # the rest is shown as is
    # Revealed only where the client needs it.
    assert settings.consumer_config()["sasl.password"] == PASSWORD
    assert settings.producer_config()["sasl.password"] == PASSWORD
    assert settings.target_token.reveal() == TOKEN


def test_a_configuration_error_never_shows_a_secret() -> None:
    env = {**_secret_env(), "PROFILE_SYNC_BATCH_MAX_ROWS": "600000"}
    del env["PROFILE_SYNC_TARGET_URL"]
    with pytest.raises(ConfigError) as info:
        load(env)
    text = str(info.value) + repr(info.value.problems)
    assert "PROFILE_SYNC_BATCH_MAX_ROWS" in text
    for secret in (PASSWORD, TOKEN, REGISTRY):
        assert secret not in text


def test_an_empty_secret_is_shown_as_unset() -> None:
    assert load_env().redacted()["PROFILE_SYNC_TARGET_TOKEN"] == ""


# -- the YAML file


def _yaml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "profile-sync.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_a_yaml_file_sets_values_and_the_environment_wins(tmp_path: Path) -> None:
    config = _yaml(
        tmp_path,
        "batch_max_rows: 1000\n"
        "batch_linger_seconds: 2.5\n"
        "single_enabled: false\n"
        "topics: [pos.a, crm.b]\n"
        "kafka:\n"
        "  bootstrap.servers: yaml-host:9092\n"
        "  client.id: from-yaml\n"
        f"  sasl.password: {PASSWORD}\n",
    )
    settings = load(
        {
            **REQUIRED,
            "PROFILE_SYNC_CONFIG": config,
            "PROFILE_SYNC_BATCH_MAX_ROWS": "2000",
        }
    )
    assert settings.batch_max_rows == 2000  # environment over file
    assert settings.batch_linger_seconds == 2.5
    assert settings.single_enabled is False
    assert settings.topics == ("pos.a", "crm.b")
    assert settings.kafka["bootstrap.servers"] == "127.0.0.1:19092"  # environment over file
    assert settings.kafka["client.id"] == "from-yaml"
    assert isinstance(settings.kafka["sasl.password"], Secret)
    assert PASSWORD not in repr(settings)


def test_yaml_mistakes_name_the_file_and_the_key(tmp_path: Path) -> None:
    config = _yaml(tmp_path, "batch_max_rows: 600000\nlinger: 5\n")
    found = problems({**REQUIRED, "PROFILE_SYNC_CONFIG": config})
    assert "500,000" in found["PROFILE_SYNC_BATCH_MAX_ROWS"]
    assert found[f"{config}: linger"] == "unknown setting"


@pytest.mark.parametrize(
    ("text", "why"),
    [("- just\n- a list\n", "mapping"), ("a: [unclosed\n", "not valid YAML")],
)
def test_an_unusable_yaml_file_is_reported_as_the_config_setting(
    tmp_path: Path, text: str, why: str
) -> None:
    found = problems({**REQUIRED, "PROFILE_SYNC_CONFIG": _yaml(tmp_path, text)})
    assert why in found["PROFILE_SYNC_CONFIG"]


def test_a_missing_yaml_file_is_reported(tmp_path: Path) -> None:
    found = problems({**REQUIRED, "PROFILE_SYNC_CONFIG": str(tmp_path / "absent.yaml")})
    assert "cannot read" in found["PROFILE_SYNC_CONFIG"]


def test_a_broken_yaml_file_does_not_echo_its_secrets(tmp_path: Path) -> None:
    config = _yaml(tmp_path, f"target_token: {TOKEN}\nkafka:\n  sasl.password: '{PASSWORD}\n")
    with pytest.raises(ConfigError) as info:
        load({**REQUIRED, "PROFILE_SYNC_CONFIG": config})
    assert "not valid YAML" in str(info.value)
    assert TOKEN not in str(info.value) and PASSWORD not in str(info.value)


def test_every_field_of_settings_is_declared_in_the_catalogue() -> None:
    # A field added without setting()/secret() would have no env name, default or help.
    declared = {s.attr for s in SETTINGS}
    assert {f.name for f in dataclasses.fields(Settings)} == declared | {"kafka"}
    assert len({s.env for s in SETTINGS}) == len(SETTINGS)
    settings = load_env()
    for s in SETTINGS:
        assert isinstance(getattr(settings, s.attr), Secret) == s.secret, s.key
