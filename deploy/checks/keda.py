"""KEDA scales on the pods' consumer group, brokers and auth, up to the partition count."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from consumer import config
from deploy.checks import Problems
from deploy.checks.yamldoc import find, get, name_of

# Target's single-update quota per tenant per rolling 24 hours.
TENANT_SINGLE_QUOTA = config.TARGET_SINGLE_QUOTA
PARTITIONS_ANNOTATION = "target-profile-sync/topic-partitions"
# librdkafka mechanism -> KEDA kafka scaler `sasl` value.
KEDA_SASL = {
    "PLAIN": "plaintext",
    "SCRAM-SHA-256": "scram_sha256",
    "SCRAM-SHA-512": "scram_sha512",
    "OAUTHBEARER": "oauthbearer",
    "GSSAPI": "gssapi",
}


def check_keda(
    docs: list[dict[str, Any]],
    settings: Any,
    env: Mapping[str, str],
    where: str,
    problems: Problems,
) -> None:
    consumer_config = settings.consumer_config()
    for so in find(docs, "ScaledObject"):
        at = f"{where}: ScaledObject {name_of(so)}"
        hi = get(so, "spec", "maxReplicaCount")
        annotation = get(so, "metadata", "annotations", PARTITIONS_ANNOTATION)
        if not annotation:
            problems.add(at, f"annotation {PARTITIONS_ANNOTATION} (topic=partitions,...) missing")
        else:
            try:
                counts = {
                    t.strip(): int(n) for t, n in (p.split("=") for p in annotation.split(","))
                }
            except ValueError:
                problems.add(at, f"annotation {PARTITIONS_ANNOTATION}: write topic=N,topic=N")
                counts = {}
            if counts and set(counts) != set(settings.topics):
                problems.add(
                    at,
                    f"partition counts are for {sorted(counts)}, the pods consume "
                    f"{sorted(settings.topics)}",
                )
            if counts and hi != sum(counts.values()):
                problems.add(
                    at,
                    f"maxReplicaCount {hi} must equal the partition count {sum(counts.values())}"
                    " (replicas beyond it sit idle)",
                )
        if settings.single_enabled and isinstance(hi, int):
            total = settings.single_quota_per_day * hi
            if total > TENANT_SINGLE_QUOTA:
                problems.add(
                    at,
                    f"PROFILE_SYNC_SINGLE_QUOTA_PER_DAY {settings.single_quota_per_day:,} x "
                    f"{hi} replicas = {total:,} exceeds Target's {TENANT_SINGLE_QUOTA:,} a day",
                )
        for i, trig in enumerate(get(so, "spec", "triggers") or []):
            if not isinstance(trig, dict) or trig.get("type") != "kafka":
                continue
            tat = f"{at} trigger {i}"
            meta = trig.get("metadata") or {}
            if meta.get("bootstrapServers") != consumer_config.get("bootstrap.servers"):
                problems.add(tat, "bootstrapServers differs from KAFKA_BOOTSTRAP_SERVERS")
            if meta.get("consumerGroup") != consumer_config.get("group.id"):
                problems.add(
                    tat,
                    f"consumerGroup {meta.get('consumerGroup')!r} is not the pods' group.id "
                    f"{consumer_config.get('group.id')!r}",
                )
            topic = meta.get("topic")
            if topic and not set(topic.split(",")) <= set(settings.topics):
                problems.add(tat, f"topic {topic!r} is not consumed by the pods")
            protocol = consumer_config.get("security.protocol", "PLAINTEXT").upper()
            mechanism = str(
                consumer_config.get(
                    "sasl.mechanisms", consumer_config.get("sasl.mechanism", "GSSAPI")
                )
            ).upper()
            want_tls = "enable" if protocol in ("SSL", "SASL_SSL") else "disable"
            if meta.get("tls", "disable") != want_tls:
                problems.add(tat, f"tls must be {want_tls!r} for security.protocol {protocol}")
            want_sasl = KEDA_SASL.get(mechanism, "?") if protocol.startswith("SASL") else "none"
            if meta.get("sasl", "none") != want_sasl:
                problems.add(tat, f"sasl must be {want_sasl!r} for {protocol} {mechanism}")
            if want_sasl not in ("none", "oauthbearer") and not get(
                trig, "authenticationRef", "name"
            ):
                problems.add(tat, "SASL needs an authenticationRef with username and password")
