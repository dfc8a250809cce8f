"""Every credential-bearing value stays out of check-config, logs and metrics (issue 17,
item 8; guarantee 12 in docs/guarantees.md).

Each secret below is a distinct marker, so a leak of any form is found by a plain grep.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.integration.conftest import Stack
from tests.integration.events import event
from tests.integration.service import wait_for

REPO = Path(__file__).resolve().parents[2]

SASL_PASSWORD = "leak-sasl-7Qp"
OAUTH_EXTENSION = "leak-oauth-3Vd"
URL_PASSWORD = "leak-urlpw-9Kc"
REGISTRY_URL_PASSWORD = "leak-srurl-2Hb"
REGISTRY_USER_INFO = "leak-srinfo-5Tn"
TOKEN = "leak-token-8Wm"
AFTER_NEWLINE = "leak-afternl-4Rz"

SECRETS = (
    SASL_PASSWORD,
    OAUTH_EXTENSION,
    URL_PASSWORD,
    REGISTRY_URL_PASSWORD,
    REGISTRY_USER_INFO,
    TOKEN,
    AFTER_NEWLINE,
)


def _check(**env: str) -> subprocess.CompletedProcess[str]:
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


def _secret_env() -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISMS": "PLAIN",
        "KAFKA_SASL_USERNAME": "api-key",
        "KAFKA_SASL_PASSWORD": SASL_PASSWORD,
        "KAFKA_SASL_OAUTHBEARER_CONFIG": f"principal=svc extension_x={OAUTH_EXTENSION}",
        "PROFILE_SYNC_TARGET_URL": f"https://user:{URL_PASSWORD}@acme.tt.omtrdc.net",
        "PROFILE_SYNC_TARGET_CLIENT": "acme",
        "PROFILE_SYNC_TARGET_TOKEN": TOKEN,
        "PROFILE_SYNC_SCHEMA_REGISTRY_URL": f"https://sr:{REGISTRY_URL_PASSWORD}@registry:8081",
        "PROFILE_SYNC_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": f"sr:{REGISTRY_USER_INFO}",
    }


def test_check_config_redacts_every_secret_form() -> None:
    for as_json in ((), ("--json",)):
        base = {
            k: v for k, v in os.environ.items() if not k.startswith(("PROFILE_SYNC_", "KAFKA_"))
        }
        done = subprocess.run(
            [sys.executable, "-m", "consumer", "check-config", *as_json],
            env={**base, **_secret_env()},
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        out = done.stdout + done.stderr
        assert "acme.tt.omtrdc.net" in out and "registry:8081" in out
        for secret in SECRETS:
            assert secret not in out, f"{secret} printed by check-config"


def test_a_token_with_a_line_break_is_a_configuration_error_that_shows_nothing(
    tmp_path: Path,
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(f"{TOKEN}\n{AFTER_NEWLINE}\n")
    for how in (
        {"PROFILE_SYNC_TARGET_TOKEN_FILE": str(token_file)},
        {"PROFILE_SYNC_TARGET_TOKEN": f"{TOKEN}\n{AFTER_NEWLINE}"},
    ):
        env = {**_secret_env(), **how}
        if "PROFILE_SYNC_TARGET_TOKEN_FILE" in how:
            del env["PROFILE_SYNC_TARGET_TOKEN"]
        done = _check(**env)
        assert done.returncode == 2, done.stdout
        key = next(iter(how))
        assert key in done.stderr and "line break" in done.stderr
        for secret in SECRETS:
            assert secret not in done.stdout + done.stderr


def test_a_token_over_plain_http_is_warned_about() -> None:
    env = {**_secret_env(), "PROFILE_SYNC_TARGET_URL": "http://acme.example"}
    done = _check(**env)
    assert done.returncode == 0, done.stderr
    assert "plain http://" in done.stderr


def test_the_running_service_keeps_every_secret_out_of_logs_and_metrics(
    stack: Callable[..., Stack], tmp_path: Path
) -> None:
    s = stack(partitions=1, topics=1)
    url = s.emulator.url.replace("http://", f"http://user:{URL_PASSWORD}@")
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    s.produce([event("crm-1", {"loyaltyTier": "gold"}, 1_700_000_000_000)])
    service = s.start(
        PROFILE_SYNC_TARGET_URL=url,
        PROFILE_SYNC_TARGET_TOKEN_FILE=str(token_file),
        KAFKA_SASL_OAUTHBEARER_CONFIG=f"principal=svc extension_x={OAUTH_EXTENSION}",
        PROFILE_SYNC_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO=f"sr:{REGISTRY_USER_INFO}",
    )
    s.wait_for_state({("thirdPartyId", "crm-1"): {"loyaltyTier": "gold"}})
    # A rotated token with a line break is refused, named, and not quoted.
    token_file.write_text(f"{TOKEN}\n{AFTER_NEWLINE}")
    s.produce([event("crm-2", {"loyaltyTier": "silver"}, 1_700_000_000_001)])
    wait_for(
        lambda: any("token file rejected" in str(e.get("event")) for e in service.log_events()),
        30,
        "the rejected token to be logged",
    )
    metrics = httpx.get(f"{service.url}/metrics", timeout=5).text
    service.signal(15)
    assert service.wait(30) == 0
    logs = service.log_path.read_text(errors="replace")
    for secret in SECRETS:
        assert secret not in logs, f"{secret} in the service log"
        assert secret not in metrics, f"{secret} in /metrics"
