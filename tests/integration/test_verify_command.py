"""``profile-sync verify`` against the real broker and the emulator over HTTP.

The oracle is the fold of the produced events (tests/utils.py ``fold``, written from the
documented rules) compared with what the emulator stores, not the command's own fold.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from tests.integration.conftest import Stack
from tests.integration.events import random_events
from tests.integration.service import REPO

ID_TYPES = {"THIRD_PARTY_ID": "thirdPartyId", "PC_ID": "pcId"}


def verify(stack: Stack, *args: str) -> tuple[int, list[dict[str, Any]], dict[str, Any]]:
    env = stack.env(PROFILE_SYNC_AUDIT_READS_PER_SECOND="1000")
    proc = subprocess.run(
        [sys.executable, "-m", "consumer", "verify", "--format", "json", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines and "summary" in lines[-1], proc.stdout + proc.stderr
    return proc.returncode, lines[:-1], lines[-1]["summary"]


def test_clean_run_all_match_and_exit_0(stack: Callable[..., Stack]) -> None:
    s = stack()
    events = random_events(400, 80, seed=11)
    s.produce(events)
    s.run_to_idle(PROFILE_SYNC_AUDIT_SAMPLE_SHARE="0")
    s.wait_for_state(s.expected())
    code, differences, summary = verify(s, "--sample", "1000")
    assert code == 0, (differences, summary)
    assert differences == []
    assert summary["profiles"] == len(s.expected())
    expected_attrs = sum(len(attrs) for attrs in s.expected().values())
    assert summary["attributes"]["match"] == expected_attrs


def test_silent_drop_names_profiles_and_attributes_and_exits_1(
    stack: Callable[..., Stack],
) -> None:
    s = stack(bulk_loss_rate=0.05, bulk_loss_seed=7)
    events = random_events(600, 200, seed=12)
    s.produce(events)
    s.run_to_idle(PROFILE_SYNC_AUDIT_SAMPLE_SHARE="0")
    assert s.emulator.control.lost(), "the emulator lost no row: the test proves nothing"
    expected, held = s.expected(), s.target_state()
    missing = {
        (key, name)
        for key, attrs in expected.items()
        for name, value in attrs.items()
        if held.get(key, {}).get(name) != value
    }
    assert missing, "every lost row was overwritten later: choose another seed"
    ids = sorted({key for key, _ in missing})
    ids_file = s._log_dir / "ids.txt"
    ids_file.write_text("".join(f"{t}:{i}\n" for t, i in ids), encoding="utf-8")
    code, differences, summary = verify(s, "--ids-file", str(ids_file))
    assert code == 1
    named = {((d["id_type"], d["id"]), d["attribute"]) for d in differences}
    assert named == missing
    assert {d["status"] for d in differences} <= {"lost", "not_found"}
    for d in differences:
        assert d["kafka"] == expected[(d["id_type"], d["id"])][d["attribute"]]
    assert sorted(summary["profiles_lost"]) == sorted({i for _, i in ids})
