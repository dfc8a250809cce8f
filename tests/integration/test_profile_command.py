"""``profile-sync profile get``: the operators' read-back, against the emulator over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def _run(emulator: Any, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PROFILE_SYNC_", "KAFKA_"))}
    base.update(
        PROFILE_SYNC_TARGET_URL=emulator.url, PROFILE_SYNC_TARGET_CLIENT=emulator.client, **env
    )
    return subprocess.run(
        [sys.executable, "-m", "consumer", "profile", "get", *args],
        env=base,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _upload(emulator: Any, body: str, token: str | None = None) -> None:
    import httpx

    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    response = httpx.post(
        f"{emulator.url}/m2/{emulator.client}/v2/profile/batchUpdate",
        content=body.encode(),
        headers=headers,
    )
    assert "<success>true</success>" in response.text


def test_profile_get_prints_what_target_holds(emulator_server: Callable[..., Any]) -> None:
    emulator = emulator_server()
    _upload(emulator, "batch=thirdPartyId,loyaltyTier,city\ncrm-7,gold,S%C3%A3o%20Paulo\n")
    _upload(emulator, "batch=pcId,segment\nabc.12_0,vip\n")

    found = _run(emulator, "--third-party-id", "crm-7")
    assert found.returncode == 0, found.stderr
    profile = json.loads(found.stdout)
    assert profile["profileAttributes"]["loyaltyTier"]["value"] == "gold"
    assert profile["profileAttributes"]["city"]["value"] == "São Paulo"

    by_pc_id = _run(emulator, "--pc-id", "abc.12_0")
    assert json.loads(by_pc_id.stdout)["profileAttributes"]["segment"]["value"] == "vip"

    missing = _run(emulator, "--third-party-id", "crm-404")
    assert missing.returncode == 1
    assert "no profile" in missing.stderr


def test_profile_get_uses_the_token_and_never_prints_it(
    emulator_server: Callable[..., Any], tmp_path: Path
) -> None:
    token = "s3cr3t-profile-token"
    token_file = tmp_path / "token"
    token_file.write_text(token)
    emulator = emulator_server(token=token)
    _upload(emulator, "batch=thirdPartyId,tier\ncrm-1,gold\n", token=token)

    ok = _run(emulator, "--third-party-id", "crm-1", PROFILE_SYNC_TARGET_TOKEN_FILE=str(token_file))
    assert ok.returncode == 0, ok.stderr

    token_file.write_text("wrong-token")
    denied = _run(
        emulator, "--third-party-id", "crm-1", PROFILE_SYNC_TARGET_TOKEN_FILE=str(token_file)
    )
    assert denied.returncode == 3
    assert "401" in denied.stderr
    assert token not in denied.stderr + denied.stdout
    assert "wrong-token" not in denied.stderr + denied.stdout
