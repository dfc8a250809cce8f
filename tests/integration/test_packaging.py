"""The install the container image performs, done for real (no Docker engine runs here).

Same steps as the Dockerfile's build stage: ``pip wheel --no-deps`` of the source tree,
a fresh virtualenv without pip, ``pip --python VENV install`` of that wheel (dependencies
from the package index), then the installed ``profile-sync`` run from a directory outside
the repository, so nothing can be imported from the source tree by accident. Catches what
only a packaged install shows: files missing from the wheel (the bundled Avro schema),
undeclared dependencies, a broken entry point.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
# Wheel build and install: the first run fetches the dependencies' wheels.
INSTALL_TIMEOUT = 600
RUN_TIMEOUT = 60


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    workdir: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PROFILE_SYNC_", "KAFKA_", "PYTHON"))
        }
        return subprocess.run(
            [str(self.venv / "bin" / "profile-sync"), *args],
            env={**base, **(env or {})},
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )


def _pip(*args: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        check=False,
    )
    offline = "Could not find a version" in proc.stderr or "NewConnectionError" in proc.stderr
    if proc.returncode != 0 and offline and os.environ.get("CI") != "true":
        # Without the package index (offline laptop) this cannot run; CI must.
        pytest.skip(f"package index unreachable: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("packaging")
    dist = root / "dist"
    _pip("wheel", "--no-deps", "--wheel-dir", str(dist), str(REPO))
    wheels = list(dist.glob("target_profile_sync-*.whl"))
    assert len(wheels) == 1, wheels
    venv = root / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    _pip("--python", str(venv / "bin" / "python"), "install", "--compile", str(wheels[0]))
    workdir = root / "work"
    workdir.mkdir()
    yield Installed(wheels[0], venv, workdir)


def test_wheel_carries_the_packages_the_schema_and_the_entry_point(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as whl:
        names = set(whl.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = whl.read(entry_points).decode()
    for schema in (REPO / "schemas").glob("*.avsc"):
        assert f"consumer/schemas/{schema.name}" in names
    for module in (REPO / "consumer").glob("*.py"):
        assert f"consumer/{module.name}" in names
    for module in (REPO / "emulator").glob("*.py"):
        assert f"emulator/{module.name}" in names
    assert "profile-sync = consumer.cli:main" in scripts


def test_installed_cli_answers_help_and_version(installed: Installed) -> None:
    helped = installed.run("--help")
    assert helped.returncode == 0, helped.stderr
    for command in ("run", "check-config", "emulator", "profile"):
        assert command in helped.stdout
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    shown = installed.run("--version")
    assert shown.returncode == 0 and version in shown.stdout, shown


def test_every_subcommand_imports_from_the_wheel(installed: Installed) -> None:
    # `--help` of a subcommand imports its module, and with it everything the module needs.
    for command in ("run", "check-config", "profile"):
        proc = installed.run(command, "--help")
        assert proc.returncode == 0, f"{command}: {proc.stderr[-2000:]}"
    if any(p.name == "server.py" for p in (REPO / "emulator").glob("*.py")):
        proc = installed.run("emulator", "--help")
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "--port" in proc.stdout


def test_bundled_schema_is_found_inside_the_installed_package(installed: Installed) -> None:
    code = (
        "import consumer, consumer.config as c, consumer.core.decode as d;"
        "d.load_schema(c.DEFAULT_WRITER_SCHEMA);"
        "print(consumer.__file__); print(c.DEFAULT_WRITER_SCHEMA)"
    )
    proc = subprocess.run(
        [str(installed.python), "-c", code],
        cwd=installed.workdir,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    package_file, schema = proc.stdout.split()
    # Loaded from the virtualenv, never from the checkout.
    assert Path(package_file).is_relative_to(installed.venv)
    assert Path(schema).is_relative_to(installed.venv) and Path(schema).is_file()


def test_check_config_validates_and_redacts_like_in_a_pod(installed: Installed) -> None:
    token = installed.workdir / "token"
    token.write_text("the-token-value\n")
    env = {
        # Nothing is contacted: check-config builds a client and closes it at once.
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISMS": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "svc-profile-sync",
        "KAFKA_SASL_PASSWORD": "kafka-password-value",
        "PROFILE_SYNC_TARGET_URL": "https://acmeretail.tt.omtrdc.net",
        "PROFILE_SYNC_TARGET_CLIENT": "acmeretail",
        "PROFILE_SYNC_TARGET_TOKEN_FILE": str(token),
        "PROFILE_SYNC_SCHEMA_REGISTRY_URL": "https://psrc-x.eu-west-1.aws.confluent.cloud",
        "PROFILE_SYNC_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "key:registry-secret-value",
        "PROFILE_SYNC_SINGLE_QUOTA_PER_DAY": "37500",
    }
    proc = installed.run("check-config", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert '"PROFILE_SYNC_SINGLE_QUOTA_PER_DAY": 37500' in proc.stdout
    assert '"KAFKA_SASL_MECHANISMS": "SCRAM-SHA-512"' in proc.stdout
    for secret in ("kafka-password-value", "registry-secret-value", "the-token-value"):
        assert secret not in proc.stdout + proc.stderr

    bad = installed.run("check-config", env={**env, "PROFILE_SYNC_SINGLE_QUOTA_PER_DAY": "2000000"})
    assert bad.returncode == 2
    assert "PROFILE_SYNC_SINGLE_QUOTA_PER_DAY" in bad.stderr
    assert "kafka-password-value" not in bad.stdout + bad.stderr
