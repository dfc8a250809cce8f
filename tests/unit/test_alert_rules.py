"""The alert rules and the dashboard, checked without a running Prometheus.

``promtool check rules`` and ``promtool test rules`` (deploy/prometheus/alerts.test.yml)
prove each alert fires when it should and stays quiet when healthy. The static checks
prove every profile_sync_* name they use is one the service defines, and that every
alert points at a runbook section that exists. (tests/integration/test_prometheus_e2e.py
runs the same expressions against a real Prometheus scraping the service.)
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from consumer.metrics import Metrics
from tests.fixtures.prometheus import (
    ALERT_TESTS,
    ALERTS,
    OPERATIONS,
    alert_queries,
    alert_rules,
    dashboard,
    dashboard_queries,
    dashboard_variable_queries,
    exposed_names,
    metric_names_in,
)

PROMETHEUS_DIR = ALERTS.parent
SEVERITIES = {"critical", "warning"}


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing in CI: `make system-deps` must install 'prometheus'")
        pytest.skip("promtool not installed (Debian package 'prometheus'; `make system-deps`)")
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def defined() -> set[str]:
    return exposed_names(Metrics(CollectorRegistry()).registry)


# ---------------------------------------------------------------- promtool


def test_promtool_check_rules() -> None:
    result = _run(_promtool(), "check", "rules", ALERTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = _run(_promtool(), "test", "rules", ALERT_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_example_prometheus_config_is_valid() -> None:
    result = _run(_promtool(), "check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------- alert rules


def test_every_alert_has_for_severity_summary_description_runbook() -> None:
    rules = alert_rules()
    assert {r["alert"] for r in rules} >= {
        "ProfileSyncLagGrowing",
        "ProfileSyncNotReady",
        "ProfileSyncDeadLetterRate",
        "ProfileSyncTargetErrors",
        "ProfileSyncBatchesStuck",
        "ProfileSyncSingleQuotaNearlySpent",
        "ProfileSyncNoBatchesAccepted",
        "ProfileSyncDown",
    }
    for rule in rules:
        name = rule["alert"]
        assert "for" in rule, name
        assert rule["labels"]["severity"] in SEVERITIES, name
        for key in ("summary", "description", "runbook_url"):
            assert rule["annotations"].get(key), f"{name} has no {key}"


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    anchors = set()
    for line in markdown.splitlines():
        match = re.match(r"#{1,6}\s+(.*)", line)
        if match:
            text = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


def test_every_runbook_url_points_at_a_section_of_operations_md() -> None:
    anchors = _anchors(OPERATIONS.read_text())
    for rule in alert_rules():
        path, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert path == "docs/operations.md", rule["alert"]
        assert anchor in anchors, f"{rule['alert']}: no section #{anchor} in docs/operations.md"


def test_every_alert_has_a_firing_and_a_quiet_promtool_case() -> None:
    tests = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in tests:
        for check in case["alert_rule_test"]:
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {r["alert"] for r in alert_rules()}
    assert names - fires == set(), "alerts never shown to fire"
    assert names - quiet == set(), "alerts never shown to stay quiet"


def test_alert_expressions_use_only_defined_metrics(defined: set[str]) -> None:
    for query in alert_queries():
        unknown = metric_names_in(query.expr) - defined
        assert not unknown, f"{query.where} uses undefined {sorted(unknown)}"


def test_promtool_test_series_use_only_defined_metrics(defined: set[str]) -> None:
    text = ALERT_TESTS.read_text()
    series = [
        s["series"] for case in yaml.safe_load(text)["tests"] for s in case.get("input_series", [])
    ]
    for name in {n for s in series for n in metric_names_in(s)}:
        assert name in defined, f"alerts.test.yml feeds undefined {name}"


# ---------------------------------------------------------------- dashboard


def test_dashboard_expressions_use_only_defined_metrics(defined: set[str]) -> None:
    queries = dashboard_queries()
    assert len(queries) > 20
    for query in queries:
        names = metric_names_in(query.expr)
        assert names, f"{query.where} reads no profile_sync_ metric"
        unknown = names - defined
        assert not unknown, f"{query.where} uses undefined {sorted(unknown)}"
    for name, query in dashboard_variable_queries().items():
        assert metric_names_in(query) <= defined, f"variable {name}: {query}"


def test_dashboard_variables_and_datasource() -> None:
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert dashboard_variable_queries() == {
        "job": "label_values(profile_sync_build_info, job)",
        "instance": 'label_values(profile_sync_build_info{job="$job"}, instance)',
    }
    assert board["schemaVersion"] >= 36
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        for target in panel["targets"]:
            assert 'job="$job"' in target["expr"], f"{panel['title']}: not filtered by job"
            assert 'instance=~"$instance"' in target["expr"], panel["title"]


def test_dashboard_panels_do_not_overlap_and_ids_are_unique() -> None:
    panels = dashboard()["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_dashboard_covers_what_on_call_asks() -> None:
    """Each question of the issue has a panel reading the metric that answers it."""
    used = set().union(*(metric_names_in(q.expr) for q in dashboard_queries()))
    for name in (
        "profile_sync_events_consumed_total",  # throughput
        "profile_sync_consumer_lag",  # keeping up?
        "profile_sync_buffer_bytes",
        "profile_sync_partitions_paused",
        "profile_sync_batch_rows_bucket",
        "profile_sync_batch_bytes_bucket",
        "profile_sync_target_request_duration_seconds_bucket",  # Target accepting?
        "profile_sync_target_requests_total",
        "profile_sync_target_retries_total",
        "profile_sync_dead_letters_total",  # losing anything?
        "profile_sync_end_to_end_delay_seconds_bucket",
        "profile_sync_single_budget_remaining",  # quota
        "profile_sync_single_budget",
        "profile_sync_batch_status_total",
        "profile_sync_batch_updates_total",
        "profile_sync_batch_resubmissions_total",
        "profile_sync_carry_forward_profiles",
        "profile_sync_carry_forward_evictions_total",
        "profile_sync_offsets_committed_total",
    ):
        assert name in used, f"no panel shows {name}"


def test_grafana_provisioning_points_at_the_dashboard() -> None:
    root = Path(ALERTS).parents[1] / "grafana" / "provisioning"
    datasources = yaml.safe_load((root / "datasources" / "prometheus.yml").read_text())
    assert [d["type"] for d in datasources["datasources"]] == ["prometheus"]
    providers = yaml.safe_load((root / "dashboards" / "profile-sync.yml").read_text())
    assert providers["providers"][0]["type"] == "file"
