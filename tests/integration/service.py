"""Running ``profile-sync run`` as a real subprocess in integration tests.

The service is started exactly as an operator would start it: environment variables in,
logs out, signals to stop it. ``Service`` adds what tests need around that: a free HTTP
port for /metrics, the log file, waiting on conditions with deadlines.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Service:
    """One ``profile-sync run`` process."""

    def __init__(self, env: dict[str, str], log_path: Path, args: list[str]) -> None:
        self.env = env
        self.log_path = log_path
        self.http_port = int(env["PROFILE_SYNC_HTTP_PORT"])
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in wait()/kill()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "consumer", "run", *args],
            env=env,
            cwd=REPO,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float) -> int:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"service did not exit within {timeout}s; log tail:\n{self.log_tail()}"
            ) from None
        self._log.close()
        return self.proc.returncode

    def signal(self, sig: int) -> None:
        if self.alive():
            self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        if not self._log.closed:
            self._log.close()

    def summary(self) -> dict[str, Any]:
        """The JSON summary ``--summary`` prints at exit (the one line that is not a log)."""
        summaries = [e for e in self.log_events() if "event" not in e and "events_consumed" in e]
        assert summaries, f"no summary printed; log tail:\n{self.log_tail()}"
        return summaries[-1]

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def log_events(self) -> Iterator[dict[str, Any]]:
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    yield json.loads(line)
                except ValueError:
                    continue

    def metrics(self) -> dict[str, float]:
        """Current samples as {'name{label="v",...}': value} ({} if not reachable yet)."""
        try:
            text = httpx.get(f"{self.url}/metrics", timeout=2).text
        except httpx.HTTPError:
            return {}
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
        return samples

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        total = 0.0
        for key, value in self.metrics().items():
            base, _, rest = key.partition("{")
            if base != name:
                continue
            if all(f'{k}="{v}"' in rest for k, v in labels.items()):
                total += value
        return total


def service_env(
    bootstrap: str,
    target_url: str,
    client: str,
    topics: list[str],
    dlq_topic: str,
    group: str,
    **overrides: str,
) -> dict[str, str]:
    """The environment of a service under test: fast linger, local ports, JSON logs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROFILE_SYNC_", "KAFKA_"))}
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KAFKA_GROUP_ID": group,
            "KAFKA_SESSION_TIMEOUT_MS": "10000",
            "KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
            "KAFKA_AUTO_COMMIT_INTERVAL_MS": "500",
            "KAFKA_TOPIC_METADATA_REFRESH_INTERVAL_MS": "2000",
            "PROFILE_SYNC_TOPICS": ",".join(topics),
            "PROFILE_SYNC_DLQ_TOPIC": dlq_topic,
            "PROFILE_SYNC_TARGET_URL": target_url,
            "PROFILE_SYNC_TARGET_CLIENT": client,
            "PROFILE_SYNC_BATCH_LINGER_SECONDS": "1",
            "PROFILE_SYNC_RETRY_INITIAL_SECONDS": "0.05",
            "PROFILE_SYNC_RETRY_MAX_SECONDS": "0.5",
            "PROFILE_SYNC_STATUS_POLL_INITIAL_SECONDS": "0.2",
            "PROFILE_SYNC_STATUS_POLL_MAX_SECONDS": "1",
            "PROFILE_SYNC_HTTP_HOST": "127.0.0.1",
            "PROFILE_SYNC_HTTP_PORT": str(free_port()),
            "PROFILE_SYNC_LOG_FORMAT": "json",
            "PROFILE_SYNC_SHUTDOWN_TIMEOUT_SECONDS": "15",
            "PROFILE_SYNC_REVOKE_TIMEOUT_SECONDS": "5",
            # pcIds default to the v1 API, which only updates existing visitors; the
            # emulator starts with none, so tests let v2 create them.
            "PROFILE_SYNC_PCID_BULK_VERSION": "v2",
            # Today's suite runs the direct mode (tests of the repartition mode override
            # it: tests/integration/test_repartition.py).
            "PROFILE_SYNC_REPARTITION": "never",
        }
    )
    env.update(overrides)
    return env
