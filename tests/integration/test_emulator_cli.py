"""``profile-sync emulator`` as a process: start-up line, serving, clean stop on signals."""

from __future__ import annotations

import re
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
_BIN = Path(sys.executable).with_name("profile-sync")
COMMAND = [str(_BIN)] if _BIN.exists() else [sys.executable, "-m", "consumer"]
START_TIMEOUT = 30.0


class Process:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [*COMMAND, "emulator", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=REPO,
        )
        self.first_line = ""

    def wait_for_url(self) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], START_TIMEOUT)
        assert ready, ("no start-up line", self.stop())
        # The line is written whole and flushed, so once readable it can be read at once.
        self.first_line = self.proc.stdout.readline().decode()
        match = re.fullmatch(r"emulator listening on (http://127\.0\.0\.1:\d+)\n", self.first_line)
        assert match, (self.first_line, self.stop())
        return match.group(1)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.kill()
        _, err = self.proc.communicate(timeout=10)
        return err.decode()


@pytest.fixture
def process() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for p in started:
        p.stop()


def start(process: list[Process], *args: str) -> tuple[Process, str]:
    p = Process(*args)
    process.append(p)
    return p, p.wait_for_url()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serves_and_stops_cleanly_on_signal(process: list[Process], sig: signal.Signals) -> None:
    p, url = start(process, "--port", "0", "--client", "globex", "--bulk-apply-delay", "0")
    response = httpx.post(
        f"{url}/m2/globex/v2/profile/batchUpdate",
        content=b"batch=thirdPartyId,a\np1,x\n",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    assert "<success>true</success>" in response.text
    fetched = httpx.get(f"{url}/rest/v1/profiles/thirdPartyId/p1?client=globex", timeout=10)
    assert fetched.json()["profileAttributes"]["a"]["value"] == "x"
    # Keep an idle keep-alive connection open: stopping must not wait for it.
    with httpx.Client(timeout=10) as idle:
        idle.get(f"{url}/_emulator/stats")
        p.proc.send_signal(sig)
        assert p.proc.wait(timeout=15) == 0
    err = p.stop()
    assert "emulator stopped" in err and "Traceback" not in err


def test_token_never_printed(process: list[Process]) -> None:
    p, url = start(process, "--port", "0", "--token", "very-secret-value")
    assert httpx.get(f"{url}/rest/v1/profiles/p?client=acme", timeout=10).status_code == 401
    p.proc.send_signal(signal.SIGTERM)
    p.proc.wait(timeout=15)
    err = p.stop()
    assert "auth=on" in err
    assert "very-secret-value" not in err + p.first_line


def test_bad_options_exit_with_an_error() -> None:
    done = subprocess.run(
        [*COMMAND, "emulator", "--override-mode", "sometimes"],
        capture_output=True,
        timeout=30,
        cwd=REPO,
    )
    assert done.returncode == 2 and b"--override-mode" in done.stderr
    done = subprocess.run(
        [*COMMAND, "emulator", "--port", "0", "--max-batch-rows", "0"],
        capture_output=True,
        timeout=30,
        cwd=REPO,
    )
    assert done.returncode == 2 and b"max_batch_rows must be >= 1" in done.stderr


def test_port_in_use_is_reported(process: list[Process]) -> None:
    _, url = start(process, "--port", "0")
    port = url.rsplit(":", 1)[1]
    done = subprocess.run(
        [*COMMAND, "emulator", "--port", port], capture_output=True, timeout=30, cwd=REPO
    )
    assert done.returncode == 1 and b"cannot listen" in done.stderr
