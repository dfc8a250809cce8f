"""The built image in a pod's shoes: what deploy/image/test.sh runs after the build.

Runs the image with podman on the host network, against the real Kafka broker test.sh
started, the way Kubernetes runs it (read-only root filesystem, the image's non-root user,
every capability dropped, no privilege escalation, writable mounts only at /tmp and the
state directory, the token as a read-only file), and checks, each with a deadline:

1. the image: non-root user, size within budget, no compiler, pip, mypy, setuptools,
   package cache or tests; its hot path runs compiled (`profile-sync compiled status`),
   and the same command tells interpreted apart (PROFILE_SYNC_COMPILED=off);
2. the emulator runs from the same image and answers;
3. `produce-sample` from the image puts a seeded batch of events into two fresh topics;
4. the consumer, started with PROFILE_SYNC_COMPILED=require (it refuses to start
   interpreted), becomes ready (/readyz), says hot_path="compiled" in
   profile_sync_build_info and consumes every event; with a long linger and a small row
   limit, some batches reach the emulator and the rest stays buffered;
5. SIGTERM to the container (the service is its PID 1) makes it flush, upload, commit and
   exit 0 within PROFILE_SYNC_SHUTDOWN_TIMEOUT_SECONDS; afterwards the consumer group's
   committed offsets are the topics' end offsets and the emulator holds every profile
   that was produced.

Uses only third-party libraries of the project's virtualenv (httpx, confluent-kafka,
prometheus-client), never the project's own modules, so it checks the image and not the
checkout. Exit status 0 when every check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypeVar

import httpx
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client.parser import text_string_to_metric_families

# The budget: what the engine reports unpacked, and the filesystem gzip-compressed at level
# 1 (what a registry stores is compressed at least that well), which is what a node pulls.
SIZE_BUDGET_MB = 200
PULL_BUDGET_MB = 75

USER = "10001:10001"
CLIENT = "acme"
TOKEN = "image-test-token"
TOKEN_DIR = "/var/run/secrets/target-profile-sync/target"
STATE_DIR = "/var/lib/target-profile-sync"
SHUTDOWN_TIMEOUT = 25.0  # the service's default PROFILE_SYNC_SHUTDOWN_TIMEOUT_SECONDS
EVENTS = 1500
PROFILES = 4000
SEED = 16
MAX_ROWS = 200  # a batch is cut at this many rows; the linger never cuts one in the test

# What must not be in the image, by path inside it.
FORBIDDEN = {
    "compiler or linker": re.compile(
        r"(^|/)s?bin/(cc|c\+\+|cpp|gcc|g\+\+|clang|ld|as)(-[0-9.]+)?$"
        r"|(^|/)s?bin/x86_64-linux-gnu-(gcc|g\+\+|cpp|ld|as)"
        r"|^usr/lib/gcc/[^/]+/[^/]+/cc1"
    ),
    "pip": re.compile(
        r"(^|/)(site|dist)-packages/pip/|(^|/)bin/pip[0-9.]*$|ensurepip/_bundled/.+\.whl$"
    ),
    # What the build stage compiles the hot path with (the `compile` extra).
    "mypy or setuptools": re.compile(
        r"(^|/)(site|dist)-packages/(mypy|mypyc|setuptools|pkg_resources|_distutils_hack)/"
        r"|(^|/)bin/(mypy|mypyc|dmypy)$"
    ),
    "package cache": re.compile(
        r"^var/cache/apt/.+\.(deb|bin)$|^var/lib/apt/lists/[^/]+$|(^|/)\.cache/"
    ),
    "tests": re.compile(
        r"(^|/)(tests|_tests)/|^usr/lib/python3[.0-9]*/test/.|(^|/)test_[^/]*\.py$|^src/"
    ),
}
APT_LISTS_ALLOWED = re.compile(r"^var/lib/apt/lists/(lock|partial)$")
# Paths each rule must catch, and paths of a good image it must let through: a pattern that
# matched nothing at all would pass every image.
FORBIDDEN_EXAMPLES = {
    "compiler or linker": ["usr/bin/gcc-12", "usr/bin/cc", "usr/lib/gcc/x86_64-linux-gnu/12/cc1"],
    "pip": [
        "opt/profile-sync/lib/python3.11/site-packages/pip/__init__.py",
        "usr/lib/python3/dist-packages/pip/__init__.py",
        "opt/profile-sync/bin/pip3",
    ],
    "mypy or setuptools": [
        "opt/profile-sync/lib/python3.11/site-packages/mypy/__init__.py",
        "opt/profile-sync/lib/python3.11/site-packages/mypyc/build.py",
        "opt/profile-sync/lib/python3.11/site-packages/setuptools/__init__.py",
        "usr/lib/python3/dist-packages/pkg_resources/__init__.py",
    ],
    "package cache": [
        "var/cache/apt/archives/python3_3.11.2-1_amd64.deb",
        "var/lib/apt/lists/deb.example_dists_bookworm_InRelease",
        "root/.cache/pip/http/a",
    ],
    "tests": [
        "opt/profile-sync/lib/python3.11/site-packages/certifi/tests/__init__.py",
        "usr/lib/python3.11/test/__init__.py",
        "opt/profile-sync/lib/python3.11/site-packages/consumer/test_batcher.py",
    ],
}
ALLOWED_EXAMPLES = [
    "usr/lib/python3.11/pipes.py",
    "usr/lib/x86_64-linux-gnu/security/pam_wheel.so",
    "opt/profile-sync/lib/python3.11/site-packages/cffi/setuptools_ext.py",
    # The compiled hot path: the shared library mypyc makes, and a module's extension.
    "opt/profile-sync/lib/python3.11/site-packages/profile_sync__mypyc.cpython-311-x86_64-linux-gnu.so",
    "opt/profile-sync/lib/python3.11/site-packages/consumer/core/loop.cpython-311-x86_64-linux-gnu.so",
    "usr/lib/python3.11/unittest/case.py",
    "usr/bin/python3.11",
    "var/lib/apt/lists/lock",
    "var/cache/debconf/config.dat",
]


def check_rules() -> None:
    for what, paths in FORBIDDEN_EXAMPLES.items():
        missed = [p for p in paths if not FORBIDDEN[what].search(p)]
        if missed:
            raise Failed(f"the rule for {what} does not catch {missed}")
    for path in ALLOWED_EXAMPLES:
        hit = [w for w, rule in FORBIDDEN.items() if rule.search(path)]
        if hit and not APT_LISTS_ALLOWED.match(path):
            raise Failed(f"the rule for {hit} rejects {path}, part of a good image")


T = TypeVar("T")


def say(text: str) -> None:
    print(f"smoke: {text}", flush=True)


class Failed(Exception):
    """A check failed; the message says which and why."""


PASSED: list[str] = []


def check(ok: bool, what: str) -> None:
    if not ok:
        raise Failed(f"not so: {what}")
    PASSED.append(what)
    say(f"ok: {what}")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float) -> T:
    """Call probe until it returns something other than None, or fail after timeout."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        try:
            value = probe()
        except (httpx.HTTPError, OSError) as exc:
            last_error = f" (last error: {exc})"
            value = None
        if value is not None:
            return value
        time.sleep(0.2)
    raise Failed(f"{what}: not within {timeout:.0f} s{last_error}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- podman


def podman(*args: str, timeout: float = 120) -> str:
    proc = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise Failed(f"podman {' '.join(args[:2])} failed: {proc.stderr.strip()[-2000:]}")
    return proc.stdout.strip()


# How Kubernetes runs the pod (deploy/k8s/base/deployment.yaml): read-only root, no
# capabilities, no privilege escalation, writable only where volumes are mounted. The
# image's own user is kept (no --user): that is what is being checked.
POD_SHOES = [
    "--network",
    "host",
    "--read-only",
    "--read-only-tmpfs=false",
    "--tmpfs",
    "/tmp:rw,nosuid,nodev,size=64m",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
]


@dataclass
class Containers:
    image: str
    run_id: str
    names: list[str] = field(default_factory=list)

    def start(
        self,
        role: str,
        *command: str,
        options: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> str:
        name = f"profile-sync-{role}-{self.run_id}"
        env_args = [a for k, v in (env or {}).items() for a in ("--env", f"{k}={v}")]
        self.names.append(name)
        podman(
            "run",
            "--detach",
            "--name",
            name,
            *POD_SHOES,
            *options,
            *env_args,
            self.image,
            *command,
        )
        return name

    def remove_all(self, log_dir: Path) -> None:
        for name in self.names:
            logs = subprocess.run(
                ["podman", "logs", name], capture_output=True, text=True, check=False
            )
            (log_dir / f"{name}.log").write_text(logs.stdout + logs.stderr)
            subprocess.run(
                ["podman", "rm", "--force", "--time", "5", name], capture_output=True, check=False
            )


# ---------------------------------------------------------------- the image itself


class _Tee:
    """A read-only stream that feeds what is read through it to a zlib compressor."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.zip = zlib.compressobj(1, zlib.DEFLATED, 31)  # gzip format, level 1
        self.compressed = 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.compressed += len(self.zip.compress(data))
        return data

    def close(self) -> int:
        self.compressed += len(self.zip.flush())
        return self.compressed


def image_files(image: str) -> tuple[list[tuple[str, bool]], int]:
    """Every path in the image's filesystem (and whether it is a directory), and the
    filesystem's size gzip-compressed at level 1, in bytes."""
    ctr = podman("create", image)
    try:
        with subprocess.Popen(["podman", "export", ctr], stdout=subprocess.PIPE) as proc:
            assert proc.stdout is not None
            tee = _Tee(proc.stdout)
            with tarfile.open(fileobj=tee, mode="r|") as tar:  # type: ignore[call-overload]
                members = [(m.name.removeprefix("./"), m.isdir()) for m in tar]
            while tee.read(1 << 20):
                pass
            compressed = tee.close()
        if proc.returncode != 0:
            raise Failed(f"podman export {image} failed")
    finally:
        podman("rm", ctr)
    return members, compressed


def check_image(image: str) -> dict[str, object]:
    check_rules()
    info = json.loads(podman("image", "inspect", image))[0]
    config = info["Config"]
    check(config.get("User") == USER, f"the image runs as {USER}, not root")
    check(
        config.get("Entrypoint") == ["profile-sync"] and config.get("Cmd") == ["run"],
        "its entry point is `profile-sync run`, in exec form (the service is PID 1)",
    )
    size_mb = info["Size"] / 1e6
    members, compressed = image_files(image)
    names = [name for name, _ in members]
    files = [name for name, is_dir in members if not is_dir]
    pull_mb = compressed / 1e6
    say(
        f"image {image}: {size_mb:.1f} MB unpacked, {pull_mb:.1f} MB compressed, "
        f"{len(files)} files and links, {len(names) - len(files)} directories"
    )
    check(size_mb <= SIZE_BUDGET_MB, f"unpacked size {size_mb:.1f} MB <= {SIZE_BUDGET_MB} MB")
    check(pull_mb <= PULL_BUDGET_MB, f"compressed size {pull_mb:.1f} MB <= {PULL_BUDGET_MB} MB")
    for what, pattern in FORBIDDEN.items():
        found = [n for n in names if pattern.search(n) and not APT_LISTS_ALLOWED.match(n)]
        check(not found, f"no {what} in the image" + (f": {found[:5]}" if found else ""))
    check(
        "opt/profile-sync/sbom/python-packages.txt" in names,
        "the image carries its SBOM (/opt/profile-sync/sbom)",
    )
    return {"size_mb": round(size_mb, 1), "compressed_mb": round(pull_mb, 1), "files": len(files)}


def compiled_status(image: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env_args = [a for k, v in env.items() for a in ("--env", f"{k}={v}")]
    return subprocess.run(
        ["podman", "run", "--rm", *POD_SHOES, *env_args, image, "compiled", "status"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def check_compiled(image: str) -> None:
    """The image's hot path runs compiled, and the status command can tell when not."""
    status = compiled_status(image, {})
    said = (status.stdout + status.stderr).strip()
    check(
        status.returncode == 0 and said.startswith("compiled"),
        f"`profile-sync compiled status` in the image: {said!r} (exit {status.returncode})",
    )
    # The same command on the same image, told to ignore the build: the check above could
    # fail, it is not a constant.
    off = compiled_status(image, {"PROFILE_SYNC_COMPILED": "off"})
    said = (off.stdout + off.stderr).strip()
    check(
        off.returncode == 1 and said.startswith("interpreted"),
        f"with PROFILE_SYNC_COMPILED=off it says {said!r} (exit {off.returncode})",
    )


# ---------------------------------------------------------------- the services


def metrics(url: str) -> dict[str, float]:
    """Sum of every sample of each metric family, by sample name."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + float(sample.value)
    return totals


def build_info(url: str) -> dict[str, str]:
    """The labels of profile_sync_build_info (version, hot_path)."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "profile_sync_build_info":
                return dict(sample.labels)
    raise Failed("/metrics has no profile_sync_build_info")


def expected_ids(dump: Path) -> set[tuple[str, str]]:
    """(id type, id) of every profile the events set at least one attribute of."""
    header = {"THIRD_PARTY_ID": "thirdPartyId", "PC_ID": "pcId"}
    ids = set()
    for line in dump.read_text(encoding="utf-8").splitlines():
        if line.strip():
            event = json.loads(line)["event"]
            if any(v not in (None, "") for v in event["attributes"].values()):
                ids.add((header[event["profile"]["id_type"]], event["profile"]["id"]))
    return ids


def committed_lag(bootstrap: str, group: str, topics: list[str]) -> dict[str, int]:
    """End offset minus the group's committed offset, per partition (0 everywhere: all done)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    meta = admin.list_topics(timeout=10)
    parts = [TopicPartition(t, p) for t in topics for p in meta.topics[t].partitions]
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
    )
    try:
        lag = {}
        for tp in consumer.committed(parts, timeout=10):
            _, high = consumer.get_watermark_offsets(tp, timeout=10)
            lag[f"{tp.topic}[{tp.partition}]"] = high - max(tp.offset, 0)
        return lag
    finally:
        consumer.close()


@contextmanager
def workspace(root: Path) -> Iterator[Path]:
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix="smoke-") as tmp:
        path = Path(tmp)
        # The containers' user writes the event dump here and reads the token.
        path.chmod(0o777)
        yield path


def run(image: str, bootstrap: str, log_dir: Path) -> dict[str, object]:
    report = check_image(image)
    check_compiled(image)
    run_id = uuid.uuid4().hex[:8]
    ctrs = Containers(image, run_id)
    topics = [f"image-test.pos.{run_id}", f"image-test.crm.{run_id}"]
    group = f"image-test-{run_id}"
    with workspace(log_dir) as work:
        token = work / "token"
        token.write_text(TOKEN + "\n")
        token.chmod(0o444)
        state = work / "state"
        state.mkdir()
        state.chmod(0o777)
        try:
            # -- the emulator, from the same image
            emu_port = free_port()
            target = f"http://127.0.0.1:{emu_port}"
            ctrs.start(
                "emulator",
                "emulator",
                "--host",
                "127.0.0.1",
                "--port",
                str(emu_port),
                "--client",
                CLIENT,
                "--token",
                TOKEN,
                "--bulk-apply-delay",
                "0.2",
            )
            wait_for(
                "the emulator answers",
                lambda: httpx.get(f"{target}/_emulator/stats", timeout=2).json(),
                60,
            )
            say("ok: the emulator runs from the image")

            # -- a seeded batch of events, produced from the image
            started = time.monotonic()
            produced = subprocess.run(
                [
                    "podman",
                    "run",
                    "--rm",
                    *POD_SHOES,
                    "--volume",
                    f"{work}:/work",
                    image,
                    "produce-sample",
                    "--bootstrap-servers",
                    bootstrap,
                    "--topic-pos",
                    topics[0],
                    "--topic-crm",
                    topics[1],
                    "--count",
                    str(EVENTS),
                    "--profiles",
                    str(PROFILES),
                    "--seed",
                    str(SEED),
                    "--create-topics",
                    "3",
                    "--dump",
                    "/work/events.jsonl",
                ],
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
            )
            check(
                produced.returncode == 0,
                f"produce-sample from the image delivered {EVENTS} events "
                f"({time.monotonic() - started:.1f} s){produced.stderr[-1500:]}",
            )
            ids = expected_ids(work / "events.jsonl")

            # -- the consumer, as in a pod
            http_port = free_port()
            service = f"http://127.0.0.1:{http_port}"
            name = ctrs.start(
                "consumer",
                options=(
                    "--volume",
                    f"{token}:{TOKEN_DIR}/token:ro",
                    # The pod's emptyDir for the single-update quota's state.
                    "--volume",
                    f"{state}:{STATE_DIR}:rw",
                ),
                env={
                    "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                    "KAFKA_GROUP_ID": group,
                    "PROFILE_SYNC_TOPICS": ",".join(topics),
                    "PROFILE_SYNC_DLQ_TOPIC": f"image-test.dlq.{run_id}",
                    "PROFILE_SYNC_TARGET_URL": target,
                    "PROFILE_SYNC_TARGET_CLIENT": CLIENT,
                    "PROFILE_SYNC_TARGET_TOKEN_FILE": f"{TOKEN_DIR}/token",
                    "PROFILE_SYNC_SINGLE_QUOTA_STATE_FILE": f"{STATE_DIR}/single-quota.json",
                    "PROFILE_SYNC_HTTP_HOST": "127.0.0.1",
                    "PROFILE_SYNC_HTTP_PORT": str(http_port),
                    "PROFILE_SYNC_BATCH_MAX_ROWS": str(MAX_ROWS),
                    # The emulator has no visitors for the v1 default to update: v2 creates.
                    "PROFILE_SYNC_PCID_BULK_VERSION": "v2",
                    "PROFILE_SYNC_BATCH_LINGER_SECONDS": "3600",
                    "PROFILE_SYNC_STATUS_POLL_INITIAL_SECONDS": "0.5",
                    "PROFILE_SYNC_LOG_FORMAT": "json",
                    # Exit 2 at start-up rather than run the hot path interpreted.
                    "PROFILE_SYNC_COMPILED": "require",
                },
            )
            pid = int(podman("inspect", "--format", "{{.State.Pid}}", name))
            status = Path(f"/proc/{pid}/status").read_text()
            uid = re.search(r"^Uid:\s+(\d+)", status, re.M)
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            check(
                uid is not None and uid.group(1) == USER.split(":")[0],
                f"the container's PID 1 runs as uid {uid.group(1) if uid else '?'}",
            )
            check(
                any(b"profile-sync" in part for part in cmdline) and b"run" in cmdline,
                f"PID 1 is the service itself, no shell: {cmdline}",
            )

            def ready() -> str | None:
                r = httpx.get(f"{service}/readyz", timeout=2)
                return r.text.strip() if r.status_code == 200 else None

            check(
                bool(wait_for("/readyz answers 200", ready, 90)),
                "/readyz answers 200 on a read-only root, as uid 10001",
            )
            info = build_info(service)
            check(
                info.get("hot_path") == "compiled",
                f"PROFILE_SYNC_COMPILED=require and running: build_info says {info}",
            )

            def consumed() -> dict[str, float] | None:
                m = metrics(service)
                done = m.get("profile_sync_events_consumed_total", 0) >= EVENTS
                return m if done else None

            wait_for(f"the consumer consumes all {EVENTS} events", consumed, 120)

            def some_landed() -> dict[str, object] | None:
                stats: dict[str, object] = httpx.get(f"{target}/_emulator/stats", timeout=5).json()
                accepted = stats.get("batches_accepted", 0)
                return stats if isinstance(accepted, int) and accepted >= 1 else None

            landed = wait_for(
                "a first batch (cut at the row limit) reaches the emulator", some_landed, 60
            )
            say(f"ok: {landed['batches_accepted']} batches in the emulator before SIGTERM")
            buffered = metrics(service).get("profile_sync_buffer_rows", 0)
            check(
                buffered > 0,
                f"{buffered:.0f} rows still buffered (linger 3600 s): only a clean "
                "shutdown can deliver them",
            )

            # -- SIGTERM: flush, upload, commit, exit 0, all within the shutdown timeout
            started = time.monotonic()
            podman("kill", "--signal", "TERM", name)
            code = int(podman("wait", name, timeout=SHUTDOWN_TIMEOUT + 30))
            took = time.monotonic() - started
            check(code == 0, f"SIGTERM: the consumer exited with {code}")
            check(
                took <= SHUTDOWN_TIMEOUT,
                f"SIGTERM to exit took {took:.1f} s (shutdown timeout {SHUTDOWN_TIMEOUT:.0f} s)",
            )
            lag = committed_lag(bootstrap, group, topics)
            check(
                all(v == 0 for v in lag.values()),
                f"offsets committed up to the end of every partition: {lag}",
            )

            def applied() -> dict[str, object] | None:
                stats: dict[str, object] = httpx.get(f"{target}/_emulator/stats", timeout=5).json()
                return stats if stats.get("pending_batches") == 0 else None

            stats = wait_for("the emulator applies every batch", applied, 60)
            stored = httpx.get(f"{target}/_emulator/profiles", timeout=30).json()
            got = {(t, pid) for t, table in stored.items() for pid in table}
            check(
                got == ids,
                f"the emulator holds every produced profile ({len(got)} of {len(ids)}; "
                f"{stats.get('batches_accepted')} batches, {stats.get('rows_received')} rows)",
            )
            report.update(events=EVENTS, profiles=len(ids), shutdown_seconds=round(took, 1))

            # -- the emulator stops on SIGTERM too
            emulator = ctrs.names[0]
            podman("kill", "--signal", "TERM", emulator)
            code = int(podman("wait", emulator, timeout=30))
            check(code == 0, f"SIGTERM: the emulator exited with {code}")
        finally:
            ctrs.remove_all(log_dir)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True)
    parser.add_argument("--bootstrap", required=True, help="Kafka at 127.0.0.1:PORT")
    parser.add_argument(
        "--log-dir", type=Path, required=True, help="where the containers' logs are kept"
    )
    args = parser.parse_args()
    started = time.monotonic()
    try:
        report = run(args.image, args.bootstrap, args.log_dir)
    except Failed as exc:
        say(f"FAILED: {exc} (container logs: {args.log_dir})")
        print(f"smoke: {len(PASSED)} passed, 1 failed", flush=True)
        return 1
    report["seconds"] = round(time.monotonic() - started, 1)
    say(f"all checks passed: {json.dumps(report)}")
    print(f"smoke: {len(PASSED)} passed, 0 failed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
