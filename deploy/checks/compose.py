"""deploy/compose/docker-compose.yml: structure, paths, the consumer's settings."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from deploy.checks import REPO, Problems
from deploy.checks.alerts import check_compose_monitoring
from deploy.checks.commands import check_cli_args
from deploy.checks.environment import SETTINGS_SOURCE, known_env, load_settings
from deploy.checks.yamldoc import get

REQUIRED_SERVICES = ("kafka", "emulator", "profile-sync", "prometheus", "grafana")


def _compose_env(
    service: Mapping[str, Any], base: Path, where: str, problems: Problems
) -> dict[str, str]:
    env: dict[str, str] = {}
    files = service.get("env_file") or []
    for f in [files] if isinstance(files, str) else files:
        path = base / (f if isinstance(f, str) else f.get("path", ""))
        if not path.is_file():
            problems.add(where, f"env_file {path} does not exist")
            continue
        for line in path.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, value = line.split("=", 1)
                env[key.strip()] = value
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    env.update({str(k): str(v) for k, v in raw.items()})
    return env


def check_compose(path: Path, doc: Any = None) -> Problems:
    """Check the compose file at ``path`` (or ``doc``, as if it were that file)."""
    problems = Problems()
    where = str(path.relative_to(REPO) if path.is_relative_to(REPO) else path)
    if doc is None:
        try:
            doc = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            problems.add(where, f"does not parse: {exc}")
            return problems
    base = path.parent
    services = doc.get("services") if isinstance(doc, dict) else None
    if not isinstance(services, dict):
        problems.add(where, "no services")
        return problems
    for name in REQUIRED_SERVICES:
        if name not in services:
            problems.add(where, f"service {name!r} is missing")
    declared_volumes = set((doc.get("volumes") or {}).keys())
    declared_secrets = doc.get("secrets") or {}
    for sname, secret in declared_secrets.items():
        if "file" in secret and not (base / secret["file"]).is_file():
            problems.add(where, f"secret {sname}: file {secret['file']} does not exist")
    mounted: dict[str, list[tuple[Path, str]]] = {}
    for name, svc in services.items():
        at = f"{where}: service {name}"
        if not isinstance(svc, dict):
            problems.add(at, "must be a mapping")
            continue
        if not svc.get("image") and not svc.get("build"):
            problems.add(at, "needs an image or a build")
        build = svc.get("build")
        if build:
            context = base / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = context / (
                "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            )
            if not dockerfile.is_file():
                problems.add(at, f"build: {dockerfile} does not exist")
        for dep in svc.get("depends_on") or []:
            if dep not in services:
                problems.add(at, f"depends_on {dep!r}, which is not a service")
        for s in svc.get("secrets") or []:
            sname = s if isinstance(s, str) else s.get("source")
            if sname not in declared_secrets:
                problems.add(at, f"secret {sname!r} is not declared")
        for vol in svc.get("volumes") or []:
            source, _, rest = (
                vol if isinstance(vol, str) else f"{vol.get('source')}:{vol.get('target')}"
            ).partition(":")
            target = rest.split(":")[0]
            if source.startswith((".", "/")):
                host = (base / source).resolve()
                if not host.exists():
                    problems.add(at, f"mounts {source}, which does not exist")
                mounted.setdefault(name, []).append((host, target))
            elif source not in declared_volumes:
                problems.add(at, f"volume {source!r} is not declared")
        image = str(svc.get("image", ""))
        if "build" in svc and image.startswith("target-profile-sync"):
            command = svc.get("command") or ["run"]
            args = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
            check_cli_args(args, at, problems)

    consumer = services.get("profile-sync")
    if isinstance(consumer, dict):
        at = f"{where}: service profile-sync"
        env = _compose_env(consumer, base, at, problems)
        for key in sorted(env):
            if not known_env(key):
                problems.add(at, f"env {key} is not a setting of the service ({SETTINGS_SOURCE})")
        settings = load_settings(env, at, problems)
        if settings is not None:
            from urllib.parse import urlsplit

            host = urlsplit(settings.target_url).hostname
            if host not in services:
                problems.add(at, f"PROFILE_SYNC_TARGET_URL host {host!r} is not a service")
            for server in settings.consumer_config().get("bootstrap.servers", "").split(","):
                if server.rsplit(":", 1)[0] not in services:
                    problems.add(at, f"bootstrap server {server!r} is not a service")
            token = env.get("PROFILE_SYNC_TARGET_TOKEN_FILE", "")
            secret_targets = {
                f"/run/secrets/{s if isinstance(s, str) else s.get('target', s.get('source'))}"
                for s in consumer.get("secrets") or []
            }
            if token and token not in secret_targets:
                problems.add(at, f"PROFILE_SYNC_TARGET_TOKEN_FILE {token} is not a mounted secret")
            if settings.shutdown_timeout_seconds >= _seconds(
                consumer.get("stop_grace_period", "10s")
            ):
                problems.add(
                    at, "stop_grace_period must exceed PROFILE_SYNC_SHUTDOWN_TIMEOUT_SECONDS"
                )
            ports = [str(p) for p in consumer.get("ports") or []]
            if ports and not any(p.split(":")[-1] == str(settings.http_port) for p in ports):
                problems.add(
                    at, f"no published port maps to PROFILE_SYNC_HTTP_PORT {settings.http_port}"
                )

    check_compose_monitoring(mounted, where, problems)
    kafka_image = str(get(services, "kafka", "image") or "")
    pom = REPO / "deploy" / "local" / "pom.xml"
    if pom.is_file() and kafka_image:
        match = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom.read_text())
        if match and not kafka_image.endswith(":" + match.group(1)):
            problems.add(
                where,
                f"kafka image {kafka_image} is not the Kafka {match.group(1)} the tests use",
            )
    return problems


def _seconds(value: Any) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", str(value).strip())
    if not match:
        return 0.0
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[match.group(2)]
    return float(match.group(1)) * scale
