"""The metrics module: the names, types and labels the dashboard and alerts are built on."""

from __future__ import annotations

import re

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

from consumer import __version__, compiled
from consumer.metrics import Metrics, status_class

# name (as exposed, without _total/_bucket suffixes) -> (type, label names).
# Changing one of these breaks deploy/grafana and deploy/prometheus: update them together.
CONTRACT: dict[str, tuple[str, tuple[str, ...]]] = {
    "profile_sync_build": ("info", ()),
    "profile_sync_events_consumed": ("counter", ("topic", "source")),
    "profile_sync_events_routed": ("counter", ("route",)),
    "profile_sync_events_skipped": ("counter", ()),
    "profile_sync_poison_events": ("counter", ("stage", "reason")),
    "profile_sync_dead_letters": ("counter", ("stage", "reason")),
    "profile_sync_dead_letter_failures": ("counter", ()),
    "profile_sync_dead_letters_truncated": ("counter", ()),
    "profile_sync_dead_letter_blocked": ("gauge", ()),
    "profile_sync_mapping_skipped": ("counter", ("reason",)),
    "profile_sync_buffer_rows": ("gauge", ("id_type",)),
    "profile_sync_buffer_bytes": ("gauge", ()),
    "profile_sync_oldest_pending_event_age_seconds": ("gauge", ()),
    "profile_sync_batches_flushed": ("counter", ("id_type", "trigger")),
    "profile_sync_batch_rows": ("histogram", ("id_type",)),
    "profile_sync_batch_bytes": ("histogram", ("id_type",)),
    "profile_sync_batch_events": ("counter", ("id_type",)),
    "profile_sync_batches_in_flight": ("gauge", ()),
    "profile_sync_batches": ("counter", ("id_type", "outcome")),
    "profile_sync_end_to_end_delay_seconds": ("histogram", ()),
    "profile_sync_target_requests": ("counter", ("api", "status_class")),
    "profile_sync_target_request_duration_seconds": ("histogram", ("api",)),
    "profile_sync_target_retries": ("counter", ("api",)),
    "profile_sync_token_reloads": ("counter", ()),
    "profile_sync_partitions_assigned": ("gauge", ()),
    "profile_sync_partitions_paused": ("gauge", ()),
    "profile_sync_offsets_committed": ("counter", ()),
    "profile_sync_commit_failures": ("counter", ()),
    "profile_sync_consumer_lag": ("gauge", ("topic", "partition")),
    "profile_sync_rebalances": ("counter", ("kind",)),
    "profile_sync_events_forwarded": ("counter", ()),
    "profile_sync_changelog_restore_seconds": ("histogram", ()),
    "profile_sync_changelog_restored_records": ("counter", ()),
    "profile_sync_single_updates": ("counter", ("outcome",)),
    "profile_sync_single_budget_remaining": ("gauge", ()),
    "profile_sync_single_budget": ("gauge", ()),
    "profile_sync_single_update_delay_seconds": ("histogram", ()),
    "profile_sync_loop_turn_seconds": ("histogram", ()),
    "profile_sync_carry_forward_profiles": ("gauge", ()),
    "profile_sync_carry_forward_evictions": ("counter", ()),
    "profile_sync_carry_forward_bytes": ("gauge", ()),
    "profile_sync_batch_status": ("counter", ("status",)),
    "profile_sync_batch_updates": ("counter", ("result",)),
    "profile_sync_batch_resubmissions": ("counter", ()),
    "profile_sync_batches_tracked": ("gauge", ()),
    "profile_sync_call_budget_share_per_minute": ("gauge", ()),
    "profile_sync_group_members": ("gauge", ()),
    "profile_sync_budget_calls": ("counter", ("api",)),
    "profile_sync_budget_waits": ("counter", ("api",)),
    "profile_sync_target_throttled": ("counter", ("api",)),
    "profile_sync_long_values": ("counter", ()),
    "profile_sync_unsafe_cell_values": ("counter", ("route",)),
    "profile_sync_audit_rows": ("counter", ("kind", "result")),
    "profile_sync_audit_attributes": ("counter", ("kind", "verdict")),
    "profile_sync_audit_reads": ("counter", ("outcome",)),
    "profile_sync_audit_repairs": ("counter", ("outcome",)),
    "profile_sync_audit_rows_dropped": ("counter", ("reason",)),
    "profile_sync_audit_pending_rows": ("gauge", ()),
    "profile_sync_loop_last_turn_timestamp_seconds": ("gauge", ()),
    "profile_sync_ready": ("gauge", ()),
    "profile_sync_worker_errors": ("counter", ("worker",)),
}


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> Metrics:
    return Metrics(registry)


def _families(registry: CollectorRegistry) -> dict[str, Metric]:
    return {m.name: m for m in registry.collect()}


def _label_names(metrics: Metrics) -> dict[str, tuple[str, ...]]:
    """Family name -> label names, for every metric object the class holds."""
    return {
        value._name: tuple(value._labelnames)
        for value in vars(metrics).values()
        if hasattr(value, "_labelnames")
    }


def test_every_contract_metric_exists_with_its_type_and_labels(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    families = _families(registry)
    for name, (kind, labels) in CONTRACT.items():
        assert name in families, f"{name} is missing"
        assert families[name].type == kind, f"{name} is a {families[name].type}, not {kind}"
        assert _label_names(metrics)[name] == labels, name


def test_nothing_exported_outside_the_contract(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    # A new metric is fine, but the dashboard, alerts and README table must learn about it.
    assert set(_families(registry)) == set(CONTRACT)


def test_naming_rules(registry: CollectorRegistry, metrics: Metrics) -> None:
    for family in registry.collect():
        assert re.fullmatch(r"profile_sync_[a-z0-9_]+", family.name), family.name
        for sample in family.samples:
            if family.type == "counter" and sample.name.endswith("_created"):
                continue
            if family.type == "counter":
                assert sample.name.endswith("_total"), sample.name
        assert not re.search(r"_(ms|milliseconds|kb|mb)$", family.name), "use base units"


def test_build_info_carries_the_version(registry: CollectorRegistry, metrics: Metrics) -> None:
    hot_path = "compiled" if compiled.State.compiled else "interpreted"
    labels = {"version": __version__, "hot_path": hot_path}
    assert registry.get_sample_value("profile_sync_build_info", labels) == 1


def test_counters_and_gauges_record_values(registry: CollectorRegistry, metrics: Metrics) -> None:
    metrics.events_consumed.labels("pos.profile-changes", "pos").inc(500)
    metrics.dead_letters.labels("decode", "undecodable").inc(2)
    metrics.target_requests.labels("bulk", status_class(503)).inc()
    metrics.consumer_lag.labels("pos.profile-changes", "3").set(1234)
    metrics.single_budget_remaining.set(199_000)
    get = registry.get_sample_value
    assert (
        get("profile_sync_events_consumed_total", {"topic": "pos.profile-changes", "source": "pos"})
        == 500
    )
    assert get("profile_sync_dead_letters_total", {"stage": "decode", "reason": "undecodable"}) == 2
    assert get("profile_sync_target_requests_total", {"api": "bulk", "status_class": "5xx"}) == 1
    assert get("profile_sync_consumer_lag", {"topic": "pos.profile-changes", "partition": "3"}) == (
        1234
    )
    assert get("profile_sync_single_budget_remaining") == 199_000


def test_histograms_bucket_what_matters(registry: CollectorRegistry, metrics: Metrics) -> None:
    metrics.batch_rows.labels("thirdPartyId").observe(500_000)  # Target's row limit
    metrics.batch_bytes.labels("thirdPartyId").observe(49_000_000)  # just under 50 MB
    metrics.end_to_end_delay.observe(3 * 3600)  # a three-hour outage
    metrics.target_latency.labels("single").observe(0.03)
    get = registry.get_sample_value
    assert get("profile_sync_batch_rows_bucket", {"id_type": "thirdPartyId", "le": "250000.0"}) == 0
    assert get("profile_sync_batch_rows_bucket", {"id_type": "thirdPartyId", "le": "500000.0"}) == 1
    assert get("profile_sync_batch_bytes_bucket", {"id_type": "thirdPartyId", "le": "5e+07"}) == 1
    assert get("profile_sync_end_to_end_delay_seconds_bucket", {"le": "7200.0"}) == 0
    assert get("profile_sync_end_to_end_delay_seconds_bucket", {"le": "21600.0"}) == 1
    assert (
        get("profile_sync_target_request_duration_seconds_bucket", {"api": "single", "le": "0.05"})
        == 1
    )
    assert get("profile_sync_target_request_duration_seconds_count", {"api": "single"}) == 1


def test_fresh_registries_are_independent() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    Metrics(first).events_skipped.inc(3)
    Metrics(second)
    assert first.get_sample_value("profile_sync_events_skipped_total") == 3
    assert second.get_sample_value("profile_sync_events_skipped_total") == 0


@pytest.mark.parametrize(
    ("status", "label"),
    [
        (200, "2xx"),
        (204, "2xx"),
        (401, "4xx"),
        (429, "4xx"),
        (500, "5xx"),
        (503, "5xx"),
        (None, "error"),
    ],
)
def test_status_class(status: int | None, label: str) -> None:
    assert status_class(status) == label
