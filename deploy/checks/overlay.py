"""Every check of one rendered Kubernetes overlay, in the order they are reported."""

from __future__ import annotations

from typing import Any

import yaml

from deploy.checks import Problems
from deploy.checks.alerts import check_monitor_job
from deploy.checks.commands import check_cli_args
from deploy.checks.crds import check_crds
from deploy.checks.environment import (
    SETTINGS_SOURCE,
    check_no_secret_in_configmaps,
    container_env,
    known_env,
    load_settings,
)
from deploy.checks.keda import check_keda
from deploy.checks.metrics import check_metric_names
from deploy.checks.network import check_network_policy
from deploy.checks.pod import (
    CONSUMER_CONTAINER,
    check_files,
    check_runtime,
    check_security,
    check_service_and_pdb,
    consumer_container,
)
from deploy.checks.yamldoc import find, get, name_of


def check_overlay(docs: list[dict[str, Any]], name: str) -> Problems:
    """Every check of one rendered overlay."""
    problems = Problems()
    where = f"overlay {name}"
    for kind in (
        "ConfigMap",
        "Deployment",
        "Service",
        "ServiceMonitor",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ScaledObject",
    ):
        if not find(docs, kind):
            problems.add(where, f"no {kind}")
    check_crds(docs, where, problems)
    check_metric_names(yaml.safe_dump_all(docs), where, problems)
    found = consumer_container(docs)
    if found is None:
        problems.add(where, f"no Deployment with a container named {CONSUMER_CONTAINER!r}")
        return problems
    dep, container = found
    dat = f"{where}: Deployment {name_of(dep)}"
    pod = dep["spec"]["template"]["spec"]
    pod_labels = get(dep, "spec", "template", "metadata", "labels") or {}

    for d in find(docs, "Deployment"):
        for c in get(d, "spec", "template", "spec", "containers") or []:
            check_cli_args(
                list(c.get("command") or []) + list(c.get("args") or []),
                f"{where}: Deployment {name_of(d)} container {c.get('name')}",
                problems,
            )

    # -- environment
    env, from_secrets = container_env(container, docs, dat, problems)
    for key in sorted(set(env) | from_secrets):
        if not known_env(key):
            problems.add(dat, f"env {key} is not a setting of the service ({SETTINGS_SOURCE})")
    check_no_secret_in_configmaps(docs, where, problems)
    settings = load_settings(env, dat, problems)
    if settings is None:
        return problems
    check_files(settings, env, from_secrets, pod, container, dat, problems)
    check_runtime(docs, settings, dep, container, dat, problems)
    check_security(pod, container, dat, problems)
    check_service_and_pdb(docs, container, pod_labels, settings.http_port, where, problems)
    check_monitor_job(docs, where, problems)
    check_keda(docs, settings, env, where, problems)
    check_network_policy(docs, settings, pod_labels, settings.http_port, where, problems)
    return problems
