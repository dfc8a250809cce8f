"""The compiled hot path is used only when it is current, and says what runs.

A build that no longer matches its sources must never run: the modules of one build call
one another in C, so an edited source with an old extension beside it would run code
nobody reads. These tests fake a build's files in a temporary tree (a real build takes a
minute; `make test` runs the suite on one).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import consumer
from consumer import compiled
from consumer.commands import run as run_command
from consumer.config import load
from consumer.errors import ConfigError

REPO = Path(consumer.__file__).resolve().parent.parent


def fake_build(root: Path) -> None:
    """Every listed source, an (empty) extension beside each and a manifest of both."""
    sources = {}
    for module in compiled.MODULES:
        path = compiled.source(module, root)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# {module}\n")
        path.with_suffix(compiled.extension_suffix()).write_bytes(b"")
        sources[module] = compiled.digest(path)
    manifest = {"python": compiled.extension_suffix(), "sources": sources}
    (root / "consumer" / "_compiled.json").write_text(json.dumps(manifest))


def test_a_current_build_is_used(tmp_path: Path) -> None:
    fake_build(tmp_path)
    assert compiled.check(tmp_path) == ""


def test_no_build_runs_interpreted_and_says_how_to_build(tmp_path: Path) -> None:
    assert "profile-sync compiled build" in compiled.check(tmp_path)


def test_an_edited_source_makes_the_whole_build_stale_and_is_named(tmp_path: Path) -> None:
    fake_build(tmp_path)
    edited = compiled.source("consumer.core.batcher", tmp_path)
    edited.write_text(edited.read_text() + "x = 1\n")
    problem = compiled.check(tmp_path)
    assert "consumer/core/batcher.py changed since the build" in problem


def test_a_missing_extension_or_another_interpreter_is_not_used(tmp_path: Path) -> None:
    fake_build(tmp_path)
    manifest = tmp_path / "consumer" / "_compiled.json"
    recorded = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**recorded, "python": ".cpython-312-x86_64-linux-gnu.so"}))
    assert "cpython-312" in compiled.check(tmp_path)
    manifest.write_text(json.dumps(recorded))
    ext = compiled.source("consumer.core.loop", tmp_path).with_suffix(compiled.extension_suffix())
    ext.unlink()
    assert "loop.py: its extension is missing" in compiled.check(tmp_path)
    manifest.write_text("{not json")
    assert "unreadable build manifest" in compiled.check(tmp_path)


def test_a_build_of_another_module_list_is_not_used(tmp_path: Path) -> None:
    fake_build(tmp_path)
    manifest = tmp_path / "consumer" / "_compiled.json"
    recorded = json.loads(manifest.read_text())
    del recorded["sources"]["consumer.core.ledger"]
    manifest.write_text(json.dumps(recorded))
    assert "another list of modules" in compiled.check(tmp_path)


def test_every_listed_module_exists() -> None:
    for module in compiled.MODULES:
        assert compiled.source(module).is_file(), module


def _loaded_from(env: dict[str, str]) -> tuple[str, str]:
    """Where a fresh interpreter loads the batcher from, and what it says runs."""
    code = (
        "import consumer.core.batcher as b, consumer.compiled as c; "
        "print(b.__file__); print(c.State.describe())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return out[0], out[1]


def test_off_loads_every_module_from_its_source() -> None:
    path, state = _loaded_from({compiled.ENV: "off"})
    assert path.endswith("batcher.py")
    assert state == f"interpreted: {compiled.ENV}=off"


def test_what_runs_is_what_the_state_says() -> None:
    path, state = _loaded_from({compiled.ENV: "auto"})
    if state.startswith("compiled"):
        assert path.endswith(compiled.extension_suffix())
    else:
        assert path.endswith("batcher.py")


def test_a_bad_choice_is_named_with_the_allowed_values() -> None:
    env = {
        "PROFILE_SYNC_TARGET_URL": "http://127.0.0.1:8080",
        "PROFILE_SYNC_TARGET_CLIENT": "acmeretail",
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19092",
    }
    load({**env, compiled.ENV: "REQUIRE"})  # any case
    with pytest.raises(ConfigError) as info:
        load({**env, compiled.ENV: "yes"})
    assert info.value.problems == {compiled.ENV: "must be one of auto, off, require"}


def test_require_refuses_to_run_interpreted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in list(os.environ):  # only this test's settings (CI sets others)
        if name.startswith(("PROFILE_SYNC_", "KAFKA_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PROFILE_SYNC_TARGET_URL", "http://127.0.0.1:8080")
    monkeypatch.setenv("PROFILE_SYNC_TARGET_CLIENT", "acmeretail")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    monkeypatch.setenv(compiled.ENV, "require")
    monkeypatch.setattr(compiled.State, "compiled", False)
    monkeypatch.setattr(compiled.State, "reason", "not built (profile-sync compiled build)")
    args = argparse.Namespace(exit_when_idle=0.0, summary=False)
    assert run_command.run(args) == run_command.EXIT_CONFIG
    err = capsys.readouterr().err
    assert "PROFILE_SYNC_COMPILED=require" in err
    assert "interpreted: not built" in err
