"""The deployment files agree with the code: settings, port, probes, metrics, quota, CLI.

Pure: the kustomize base is read straight from its files (its ConfigMap generated from
``profile-sync.env`` the way kustomize does), the compose file and the Dockerfile are
parsed. Each check of ``deploy/validate_manifests.py`` is also shown to catch the mistake
it exists for, on a broken copy. The built overlays, hadolint and the Kubernetes schemas
are covered by tests/integration/test_deploy_validate.py.
"""

from __future__ import annotations

import copy
import fnmatch
import importlib.util
import json
import re
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from consumer import compiled, config

REPO = Path(__file__).resolve().parents[2]
BASE = REPO / "deploy" / "k8s" / "base"
COMPOSE = REPO / "deploy" / "compose" / "docker-compose.yml"
DEPLOY_DOC = REPO / "docs" / "deploy.md"


def _load_validator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "validate_manifests", REPO / "deploy" / "validate_manifests.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


vm = _load_validator()


def read_env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def base_docs() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        docs += vm.load_docs((BASE / resource).read_text())
    for gen in kustomization["configMapGenerator"]:
        data: dict[str, str] = {}
        for env_file in gen["envs"]:
            data.update(read_env_file(BASE / env_file))
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": gen["name"]},
                "data": data,
            }
        )
    return docs


def find(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind)


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    dep = find(docs, "Deployment")
    return next(
        c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "profile-sync"
    )


def configmap(docs: list[dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = find(docs, "ConfigMap")["data"]
    return data


def trigger(docs: list[dict[str, Any]]) -> dict[str, Any]:
    t: dict[str, Any] = find(docs, "ScaledObject")["spec"]["triggers"][0]
    return t


def check(docs: list[dict[str, Any]]) -> list[str]:
    items: list[str] = vm.check_overlay(docs, "base").items
    return items


# ---------------------------------------------------------------- the base as shipped


def test_base_passes_every_consistency_check() -> None:
    assert check(base_docs()) == []


def test_every_environment_variable_of_the_base_is_a_setting() -> None:
    docs = base_docs()
    names = set(configmap(docs)) | {e["name"] for e in container(docs).get("env", [])}
    settings = {s.env for s in config.SETTINGS} | {compiled.ENV}  # read at import
    for name in names:
        assert name in settings or (
            name.startswith("KAFKA_") and config.kafka_property(name) is not None
        ), name


def test_probes_and_ports_match_the_code() -> None:
    docs = base_docs()
    c = container(docs)
    port = int(configmap(docs).get("PROFILE_SYNC_HTTP_PORT", "8000"))
    assert [p["containerPort"] for p in c["ports"] if p["name"] == "http"] == [port]
    assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert find(docs, "ServiceMonitor")["spec"]["endpoints"][0]["path"] == "/metrics"


def test_keda_scales_on_the_consumer_group_up_to_the_partition_count() -> None:
    docs = base_docs()
    so = find(docs, "ScaledObject")
    counts = so["metadata"]["annotations"][vm.PARTITIONS_ANNOTATION]
    total = sum(int(part.split("=")[1]) for part in counts.split(","))
    assert so["spec"]["maxReplicaCount"] == total
    assert trigger(docs)["type"] == "kafka"
    assert trigger(docs)["metadata"]["consumerGroup"] == configmap(docs)["KAFKA_GROUP_ID"]


# ---------------------------------------------------------------- each check catches its mistake


def _set_env(name: str, value: str) -> Callable[[list[dict[str, Any]]], None]:
    def mutate(docs: list[dict[str, Any]]) -> None:
        configmap(docs)[name] = value

    return mutate


def _probe_path(docs: list[dict[str, Any]]) -> None:
    container(docs)["livenessProbe"]["httpGet"]["path"] = "/healthz"


def _no_readiness(docs: list[dict[str, Any]]) -> None:
    del container(docs)["readinessProbe"]


def _subpath_token(docs: list[dict[str, Any]]) -> None:
    for mount in container(docs)["volumeMounts"]:
        if mount["name"] == "target-token":
            mount["mountPath"] += "/token"
            mount["subPath"] = "token"


def _short_grace(docs: list[dict[str, Any]]) -> None:
    find(docs, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 25


def _too_many_replicas(docs: list[dict[str, Any]]) -> None:
    find(docs, "ScaledObject")["spec"]["maxReplicaCount"] = 30


def _zero_min_replicas(docs: list[dict[str, Any]]) -> None:
    find(docs, "ScaledObject")["spec"]["minReplicaCount"] = 0


def _other_group(docs: list[dict[str, Any]]) -> None:
    trigger(docs)["metadata"]["consumerGroup"] = "someone-else"


def _sasl_ssl_without_keda_auth(docs: list[dict[str, Any]]) -> None:
    configmap(docs)["KAFKA_SECURITY_PROTOCOL"] = "SASL_SSL"
    configmap(docs)["KAFKA_SASL_MECHANISMS"] = "PLAIN"


def _no_kafka_egress(docs: list[dict[str, Any]]) -> None:
    policy = find(docs, "NetworkPolicy")
    policy["spec"]["egress"] = [
        r for r in policy["spec"]["egress"] if all(p["port"] != 9092 for p in r["ports"])
    ]


def _wrong_monitor_port(docs: list[dict[str, Any]]) -> None:
    find(docs, "ServiceMonitor")["spec"]["endpoints"][0]["port"] = "metrics"


def _service_links(docs: list[dict[str, Any]]) -> None:
    del find(docs, "Deployment")["spec"]["template"]["spec"]["enableServiceLinks"]


def _writable_root(docs: list[dict[str, Any]]) -> None:
    container(docs)["securityContext"]["readOnlyRootFilesystem"] = False


def _bad_args(docs: list[dict[str, Any]]) -> None:
    container(docs)["args"] = ["run", "--exit-when-idel", "3"]


def _fixed_replicas(docs: list[dict[str, Any]]) -> None:
    find(docs, "Deployment")["spec"]["replicas"] = 3


def _wrong_target(docs: list[dict[str, Any]]) -> None:
    find(docs, "ScaledObject")["spec"]["scaleTargetRef"]["name"] = "profile-sync"


def _unquoted_threshold(docs: list[dict[str, Any]]) -> None:
    trigger(docs)["metadata"]["lagThreshold"] = 200000


def _missing_auth(docs: list[dict[str, Any]]) -> None:
    trigger(docs)["authenticationRef"] = {"name": "nowhere"}


def _unknown_metric(docs: list[dict[str, Any]]) -> None:
    find(docs, "ScaledObject")["metadata"]["annotations"]["note"] = "see profile_sync_lag_total"


def _job_relabel(docs: list[dict[str, Any]]) -> None:
    find(docs, "ServiceMonitor")["spec"]["endpoints"][0]["relabelings"] = []


def _no_resources(docs: list[dict[str, Any]]) -> None:
    del container(docs)["resources"]["limits"]


BROKEN: dict[str, tuple[Callable[[list[dict[str, Any]]], None], str]] = {
    "misspelt setting": (
        _set_env("PROFILE_SYNC_BATCH_MAX_ROW", "10"),
        "env PROFILE_SYNC_BATCH_MAX_ROW is not a setting",
    ),
    "invalid value": (_set_env("PROFILE_SYNC_UPLOAD_FORM", "zip"), "PROFILE_SYNC_UPLOAD_FORM"),
    "librdkafka rejects a property": (
        _set_env("KAFKA_AUTO_OFFSET_RESET", "sometimes"),
        "librdkafka rejects",
    ),
    "port moved, probes not": (_set_env("PROFILE_SYNC_HTTP_PORT", "9000"), "listens on 9000"),
    "loopback http host": (_set_env("PROFILE_SYNC_HTTP_HOST", "127.0.0.1"), "loopback"),
    "probe path": (_probe_path, "livenessProbe path '/healthz'"),
    "no readiness probe": (_no_readiness, "readinessProbe must be an httpGet on /readyz"),
    "token via subPath": (_subpath_token, "subPath"),
    "token in the ConfigMap": (_set_env("PROFILE_SYNC_TARGET_TOKEN", "abc"), "is a secret"),
    "SASL password in the ConfigMap": (_set_env("KAFKA_SASL_PASSWORD", "abc"), "is a secret"),
    "grace period below shutdown": (_short_grace, "terminationGracePeriodSeconds 25"),
    "longer shutdown than grace": (
        _set_env("PROFILE_SYNC_SHUTDOWN_TIMEOUT_SECONDS", "38"),
        "terminationGracePeriodSeconds 40",
    ),
    "replicas above partitions": (_too_many_replicas, "must equal the partition count 24"),
    "scale to zero": (_zero_min_replicas, "minReplicaCount must be a whole number >= 1"),
    "quota over the tenant's": (
        _set_env("PROFILE_SYNC_SINGLE_QUOTA_PER_DAY", "50000"),
        "= 1,200,000 exceeds Target's 1,000,000",
    ),
    "topics without partition counts": (
        _set_env("PROFILE_SYNC_TOPICS", "pos.profile-changes,web.profile-changes"),
        "partition counts are for",
    ),
    "KEDA watches another group": (_other_group, "consumerGroup 'someone-else'"),
    "KEDA without the pods' SASL/TLS": (_sasl_ssl_without_keda_auth, "tls must be 'enable'"),
    "no Kafka egress": (_no_kafka_egress, "egress to Kafka kafka:9092 (port 9092)"),
    "Target on another port": (
        _set_env("PROFILE_SYNC_TARGET_URL", "https://acme.tt.omtrdc.net:8443"),
        "egress to Target (port 8443)",
    ),
    "ServiceMonitor port": (_wrong_monitor_port, "endpoint port 'metrics'"),
    "service links": (_service_links, "enableServiceLinks must be false"),
    "writable root": (_writable_root, "readOnlyRootFilesystem"),
    "CLI typo": (_bad_args, "does not parse"),
    "fixed replicas": (_fixed_replicas, "spec.replicas fights the autoscaler"),
    "scale target": (_wrong_target, "not a Deployment here"),
    "unquoted KEDA metadata": (_unquoted_threshold, "metadata.lagThreshold must be a string"),
    "missing TriggerAuthentication": (_missing_auth, "not a TriggerAuthentication"),
    "unknown metric name": (_unknown_metric, "metric profile_sync_lag_total is not exported"),
    "no limits": (_no_resources, "resources.limits.memory is not set"),
    "buffer larger than the memory limit": (
        _set_env("PROFILE_SYNC_BUFFER_MAX_BYTES", "256000000"),
        "memory limit 1,536Mi is below",
    ),
    "carry-forward larger than the memory limit": (
        _set_env("PROFILE_SYNC_CARRY_FORWARD_MAX_BYTES", "600000000"),
        "memory limit 1,536Mi is below",
    ),
    "urgent queue larger than the memory limit": (
        _set_env("PROFILE_SYNC_SINGLE_QUEUE_MAX_BYTES", "600000000"),
        "memory limit 1,536Mi is below",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_manifest_is_reported(case: str) -> None:
    mutate, expected = BROKEN[case]
    docs = copy.deepcopy(base_docs())
    mutate(docs)
    problems = check(docs)
    assert any(expected in p for p in problems), problems


@pytest.mark.skipif(
    not (REPO / "deploy" / "prometheus" / "alerts.yml").is_file(), reason="no alert rules yet"
)
def test_scrape_job_must_be_the_one_the_alerts_expect() -> None:
    docs = copy.deepcopy(base_docs())
    _job_relabel(docs)
    assert any("the alert rules expect job='profile-sync'" in p for p in check(docs))


def test_kafka_pass_through_and_injected_names() -> None:
    assert vm.known_env("KAFKA_BOOTSTRAP_SERVERS")
    assert vm.known_env("KAFKA_SASL_MECHANISMS")
    assert vm.known_env("PROFILE_SYNC_CONFIG")
    # Kubernetes' service links for a Service named "kafka" are not client properties, and
    # for a Service named "profile-sync" they are not settings.
    assert not vm.known_env("KAFKA_PORT")
    assert not vm.known_env("PROFILE_SYNC_SERVICE_HOST")
    assert not vm.known_env("PROFILE_SYNC_TOKEN")


# ---------------------------------------------------------------- compose


def compose_doc() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return doc


def test_compose_file_is_consistent() -> None:
    assert vm.check_compose(COMPOSE).items == []


def test_compose_reuses_the_shared_monitoring_files() -> None:
    services = compose_doc()["services"]
    sources = [
        v.split(":")[0] for v in services["prometheus"]["volumes"] + services["grafana"]["volumes"]
    ]
    shared = [s for s in sources if s.startswith(("../prometheus/", "../grafana/"))]
    assert "../prometheus/alerts.yml" in shared
    assert any(s.startswith("../grafana/") and s.endswith(".json") for s in shared)
    for source in shared:
        assert (COMPOSE.parent / source).exists(), source


def _drop_service(name: str) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        del doc["services"][name]

    return mutate


def _compose_env(name: str, value: str) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        doc["services"]["profile-sync"].setdefault("environment", {})[name] = value

    return mutate


def _no_alerts(doc: dict[str, Any]) -> None:
    vols = doc["services"]["prometheus"]["volumes"]
    doc["services"]["prometheus"]["volumes"] = [v for v in vols if "alerts" not in v]


def _missing_file(doc: dict[str, Any]) -> None:
    doc["services"]["grafana"]["volumes"].append("../grafana/nope.json:/tmp/nope.json:ro")


def _other_kafka(doc: dict[str, Any]) -> None:
    doc["services"]["kafka"]["image"] = "apache/kafka:3.7.0"


def _short_stop(doc: dict[str, Any]) -> None:
    doc["services"]["profile-sync"]["stop_grace_period"] = "20s"


def _emulator_typo(doc: dict[str, Any]) -> None:
    doc["services"]["profile-sync"]["command"] = ["run", "--sumary"]


COMPOSE_BROKEN: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "no grafana": (_drop_service("grafana"), "service 'grafana' is missing"),
    "unknown setting": (_compose_env("PROFILE_SYNC_LINGER", "2"), "PROFILE_SYNC_LINGER"),
    "target not in the stack": (
        _compose_env("PROFILE_SYNC_TARGET_URL", "http://target:8080"),
        "host 'target' is not a service",
    ),
    "alert rules not mounted": (_no_alerts, "must mount the shared ../prometheus/alerts.yml"),
    "mount of a missing file": (_missing_file, "does not exist"),
    "another Kafka than the tests": (_other_kafka, "is not the Kafka"),
    "stop grace below shutdown": (_short_stop, "stop_grace_period"),
    "command typo": (_emulator_typo, "does not parse"),
}


@pytest.mark.parametrize("case", sorted(COMPOSE_BROKEN))
def test_a_broken_compose_file_is_reported(case: str) -> None:
    mutate, expected = COMPOSE_BROKEN[case]
    doc = compose_doc()
    mutate(doc)
    problems = vm.check_compose(COMPOSE, doc).items
    assert any(expected in p for p in problems), problems


# ---------------------------------------------------------------- Dockerfile


def dockerfile_stages() -> list[list[str]]:
    text = (REPO / "Dockerfile").read_text()
    # Join continuation lines, drop comments.
    logical = re.sub(r"\\\n", " ", text)
    stages: list[list[str]] = []
    for line in logical.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_image_runs_profile_sync_run_as_the_pods_non_root_user_on_the_port() -> None:
    final = dockerfile_stages()[-1]
    user = [line.split()[1] for line in final if line.startswith("USER ")][-1]
    uid, _, gid = user.partition(":")
    pod = find(base_docs(), "Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert uid.isdigit() and int(uid) != 0
    assert (int(uid), int(gid)) == (pod["runAsUser"], pod["runAsGroup"])
    expose = [line.split()[1] for line in final if line.startswith("EXPOSE ")]
    default_port = next(s.default for s in config.SETTINGS if s.key == "HTTP_PORT")
    assert expose == [default_port]
    entry = json.loads(
        next(line[len("ENTRYPOINT ") :] for line in final if line.startswith("ENTRYPOINT "))
    )
    cmd = json.loads(next(line[len("CMD ") :] for line in final if line.startswith("CMD ")))
    assert entry + cmd == ["profile-sync", "run"]
    # The final stage takes the installed virtualenv and nothing else from the build.
    copies = [line for line in final if line.startswith("COPY ")]
    assert copies and all("--from=build" in line for line in copies), copies


def test_image_build_context_holds_everything_the_wheel_is_built_from() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    wheel = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = {"pyproject.toml", pyproject["project"]["readme"], *wheel["packages"]}
    needed |= set(wheel.get("force-include", {}))
    # The build stage copies the whole context and builds the wheel from it, so a package
    # is in the image unless .dockerignore keeps it out of the context.
    assert "COPY . ." in dockerfile_stages()[0]
    excluded = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in needed:
        assert not any(fnmatch.fnmatch(path, pattern) for pattern in excluded), path
        assert (REPO / path).exists(), path
    assert "tests" in excluded


# ---------------------------------------------------------------- docs/deploy.md


@pytest.mark.skipif(not DEPLOY_DOC.is_file(), reason="docs/deploy.md not written yet")
def test_deploy_doc_names_only_real_settings_and_metrics() -> None:
    text = DEPLOY_DOC.read_text()
    names = set(re.findall(r"\b(?:PROFILE_SYNC|KAFKA)_[A-Z0-9_]*[A-Z0-9]\b", text))
    assert names, "the deploy doc names no settings"
    unknown = sorted(n for n in names if not vm.known_env(n))
    assert unknown == []
    problems = vm.Problems()
    vm.check_metric_names(text, "docs/deploy.md", problems)
    assert problems.items == []
    for overlay in ("dev", "prod"):
        assert f"deploy/k8s/overlays/{overlay}" in text
