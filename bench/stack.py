"""What the service benchmarks share: a broker, the emulator, a backlog, the service's env.

The broker is ``BENCH_BOOTSTRAP`` when set (any running Kafka), otherwise a local one
started with deploy/local/kafka.sh on ``BENCH_KAFKA_PORT`` and stopped at the end.
Not a benchmark itself (no ``bench_`` prefix, so `make bench` does not run it).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

from emulator.app import EmulatorApp
from emulator.config import EmulatorConfig
from emulator.server import EmulatorServer

REPO = Path(__file__).resolve().parents[1]
KAFKA = REPO / "deploy" / "local" / "kafka.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def broker(default_port: int) -> Iterator[str]:
    given = os.environ.get("BENCH_BOOTSTRAP")
    if given:
        yield given
        return
    port = int(os.environ.get("BENCH_KAFKA_PORT", str(default_port)))
    env = {**os.environ, "KAFKA_PORT": str(port)}
    subprocess.run([str(KAFKA), "start"], env=env, check=True, stdout=subprocess.DEVNULL)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(KAFKA), "stop"], env=env, check=False, stdout=subprocess.DEVNULL)


@contextlib.contextmanager
def emulator() -> Iterator[str]:
    server = EmulatorServer(
        EmulatorApp(EmulatorConfig(bulk_rate_limit=0, status_retention_count=0)), port=0
    )
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def create_topics(
    bootstrap: str, names: list[str], partitions: int, config: dict[str, str] | None = None
) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [NewTopic(n, partitions, 1, config=config or {}) for n in names]
    for future in admin.create_topics(topics).values():
        future.result()


def produce_sample(
    bootstrap: str,
    topics: list[str],
    count: int,
    profiles: int,
    *extra: str,
    wait: bool = True,
    nice: int = 0,
) -> subprocess.Popen[bytes]:
    """``profile-sync produce-sample`` into ``topics`` (pos, crm), created beforehand;
    ``nice``: its scheduling niceness (a load generator that must not take the service's
    CPU on a small machine)."""
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "consumer", "produce-sample",
            "--bootstrap-servers", bootstrap,
            "--topic-pos", topics[0], "--topic-crm", topics[1],
            "--count", str(count), "--profiles", str(profiles), "--seed", "14", "--quiet",
            *extra,
        ],
        cwd=REPO,
        preexec_fn=(lambda: os.nice(nice)) if nice else None,
    )  # fmt: skip
    if wait and proc.wait() != 0:
        raise RuntimeError("produce-sample failed")
    return proc


def new_topics(prefix: str) -> list[str]:
    run_id = uuid.uuid4().hex[:6]
    return [f"{prefix}.pos.{run_id}", f"{prefix}.crm.{run_id}", f"{prefix}.dlq.{run_id}"]


def service_env(
    bootstrap: str, topics: list[str], target_url: str, **settings: str
) -> dict[str, str]:
    """The environment of one ``profile-sync run``: a fresh consumer group each time."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "PROFILE_SYNC_"))}
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KAFKA_GROUP_ID": f"bench-{uuid.uuid4().hex[:8]}",
            "PROFILE_SYNC_TOPICS": ",".join(topics[:2]),
            "PROFILE_SYNC_DLQ_TOPIC": topics[2],
            "PROFILE_SYNC_TARGET_URL": target_url,
            "PROFILE_SYNC_TARGET_CLIENT": "acme",
            "PROFILE_SYNC_HTTP_HOST": "127.0.0.1",
            "PROFILE_SYNC_HTTP_PORT": str(free_port()),
            "PROFILE_SYNC_LOG_LEVEL": "warning",
        }
    )
    env.update({f"PROFILE_SYNC_{k.upper()}": v for k, v in settings.items()})
    return env


def metrics_text(port: str | int) -> str:
    """The service's /metrics page ("" when it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())
    except OSError:
        return ""


def scrape(port: str | int, name: str) -> float:
    """Sum of every series of metric ``name`` on the service's /metrics (0 when absent)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return 0.0
    total = 0.0
    for line in text.splitlines():
        if re.match(rf"{name}(\{{| )", line):
            total += float(line.rsplit(" ", 1)[1])
    return total


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def wait_for(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())
