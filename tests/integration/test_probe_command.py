"""``profile-sync probe`` against the emulator over HTTP, under both cell-decoding readings."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def _probe(emulator: Any, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROFILE_SYNC_", "KAFKA_"))}
    env.update(PROFILE_SYNC_TARGET_URL=emulator.url, PROFILE_SYNC_TARGET_CLIENT=emulator.client)
    return subprocess.run(
        [sys.executable, "-m", "consumer", "probe", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("reading", ["A", "B"])
def test_the_probe_reports_the_reading_the_tenant_follows(
    emulator_server: Callable[..., Any], reading: str
) -> None:
    # Limit on: the probe's upload and polls must fit the tenant's budget too.
    emulator = emulator_server(decoding=reading, bulk_apply_delay=1.5, bulk_rate_limit=50)

    done = _probe(emulator, "--profile-id", "probe-1", "--timeout", "60")

    assert done.returncode == 0, done.stderr
    assert f"set PROFILE_SYNC_TARGET_CELL_DECODING={reading}" in done.stdout
    table = {line.split()[0]: line.split()[-1] for line in done.stdout.splitlines()[1:10]}
    if reading == "A":
        assert set(table.values()) == {"yes"}, done.stdout
    else:
        assert table["probeComma"] == "NO" and table["probeSentinel"] == "NO", done.stdout
    stats = emulator.control.stats()
    assert stats["bulk_rate"]["refused_503"] == 0
    uploads = [r for r in emulator.control.requests() if r["api"] == "bulk"]
    assert len(uploads) == 1  # one tiny batch, whatever the reading


def test_the_probe_says_so_when_the_batch_never_applies(
    emulator_server: Callable[..., Any],
) -> None:
    emulator = emulator_server()
    emulator.control.inject({"api": "bulk", "stuck": True, "count": 1})

    done = _probe(emulator, "--timeout", "5")

    assert done.returncode == 1
    assert "stuck" in done.stderr
