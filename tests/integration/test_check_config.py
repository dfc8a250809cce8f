"""``profile-sync check-config``: the operator's first command on a new deployment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _check(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PROFILE_SYNC_", "KAFKA_"))}
    base.update(env)
    return subprocess.run(
        [sys.executable, "-m", "consumer", "check-config"],
        env=base,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_valid_configuration_is_printed_with_secrets_redacted(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("tok-123-secret")
    done = _check(
        tmp_path,
        KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9",
        KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        KAFKA_SASL_MECHANISMS="PLAIN",
        KAFKA_SASL_USERNAME="api-key",
        KAFKA_SASL_PASSWORD="hunter2-password",
        PROFILE_SYNC_TARGET_URL="https://acme.tt.omtrdc.net",
        PROFILE_SYNC_TARGET_CLIENT="acme",
        PROFILE_SYNC_TARGET_TOKEN_FILE=str(token),
        PROFILE_SYNC_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO="user:registry-secret",
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "PROFILE_SYNC_BATCH_MAX_ROWS" in out and "500000" in out
    assert "KAFKA_SASL_PASSWORD" in out and "***" in out
    for secret in ("hunter2-password", "registry-secret", "tok-123-secret"):
        assert secret not in out + done.stderr


def test_every_bad_key_is_named(tmp_path: Path) -> None:
    done = _check(
        tmp_path,
        PROFILE_SYNC_BATCH_MAX_ROWS="600000",
        PROFILE_SYNC_UPLOAD_FORM="ftp",
        PROFILE_SYNC_BATCH_LINGER="5",
        PROFILE_SYNC_TARGET_URL="acme.tt.omtrdc.net",
        KAFKA_SASL_PASSWORD="hunter2-password",
    )
    assert done.returncode == 2
    err = done.stderr
    for key in (
        "PROFILE_SYNC_BATCH_MAX_ROWS",
        "PROFILE_SYNC_UPLOAD_FORM",
        "PROFILE_SYNC_BATCH_LINGER",
        "PROFILE_SYNC_TARGET_URL",
        "PROFILE_SYNC_TARGET_CLIENT",
        "KAFKA_BOOTSTRAP_SERVERS",
    ):
        assert key in err, f"{key} not named in:\n{err}"
    assert "hunter2-password" not in err + done.stdout


def test_an_unknown_librdkafka_property_names_its_variable(tmp_path: Path) -> None:
    done = _check(
        tmp_path,
        KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9",
        KAFKA_FETCH_MAX_BYTEZ="1",
        PROFILE_SYNC_TARGET_URL="http://127.0.0.1:9",
        PROFILE_SYNC_TARGET_CLIENT="acme",
    )
    assert done.returncode == 2
    assert "KAFKA_FETCH_MAX_BYTEZ" in done.stderr


def test_the_mode_and_the_internal_topics_are_reported(tmp_path: Path) -> None:
    base = {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
        "KAFKA_GROUP_ID": "sync-eu",
        "PROFILE_SYNC_TARGET_URL": "https://acme.tt.omtrdc.net",
        "PROFILE_SYNC_TARGET_CLIENT": "acme",
    }
    one = _check(tmp_path, **base, PROFILE_SYNC_TOPICS="crm.profile-changes")
    assert one.returncode == 0, one.stderr
    assert "mode: direct (one source topic keyed by profile id)" in one.stdout
    assert "sync-eu.repartition" not in one.stdout

    mapped = _check(
        tmp_path,
        **base,
        PROFILE_SYNC_TOPICS="pos.purchases",
        PROFILE_SYNC_MAPPING_FILE=str(REPO / "schemas/examples/pos_purchase.mapping.yaml"),
        PROFILE_SYNC_REPARTITION_PARTITIONS="24",
    )
    assert mapped.returncode == 0, mapped.stderr
    assert "mode: repartition (topic pos.purchases is not keyed by profile id)" in mapped.stdout
    assert "sync-eu.repartition: 24 partitions, cleanup.policy=delete" in mapped.stdout
    assert "sync-eu.changelog: 24 partitions, cleanup.policy=compact" in mapped.stdout

    two = _check(tmp_path, **base, PROFILE_SYNC_REPARTITION="never")
    assert "mode: direct (PROFILE_SYNC_REPARTITION=never)" in two.stdout
