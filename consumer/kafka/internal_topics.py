"""The two internal topics of the repartition mode: names, creation, checks.

- ``<group>.repartition``: every validated update, keyed ``<id_type>:<profile_id>``
  (consumer/core/internal_format.py). Delete policy; its retention must outlast the
  longest Target outage the service should ride out (the owner pauses while Target is
  down, and the records wait here). Default 7 days.
- ``<group>.changelog``: the owner's memory (consumer/kafka/changelog.py), same key, same
  partition count, ``cleanup.policy=compact``: compaction keeps the last record per
  profile, so its size is bounded by the number of profiles, not by traffic.

Both use librdkafka's ``murmur2_random`` partitioner (the Java client's default: murmur2
of the key bytes, positive, modulo the partition count), so a profile's repartition and
changelog records land in partitions of the same number. The service creates the topics
at start-up (AdminClient) or, when they exist, checks their partition counts and the
changelog's cleanup policy; a mismatch is a configuration error (exit 2), never a silent
re-partitioning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource
from confluent_kafka.cimpl import NewTopic

from consumer.errors import ConfigError

log = logging.getLogger("profile_sync.internal_topics")

PARTITIONER = "murmur2_random"
_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True, slots=True)
class InternalTopics:
    repartition: str
    changelog: str
    partitions: int
    retention_ms: int

    def configs(self) -> dict[str, dict[str, str]]:
        """The topic configurations the service creates them with."""
        return {
            self.repartition: {"cleanup.policy": "delete", "retention.ms": str(self.retention_ms)},
            self.changelog: {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"},
        }


def names(group_id: str, repartition: str, changelog: str) -> tuple[str, str]:
    """The topic names: the settings when given, else derived from the consumer group."""
    return repartition or f"{group_id}.repartition", changelog or f"{group_id}.changelog"


def ensure(admin_config: dict[str, str], topics: InternalTopics, create: bool = True) -> list[str]:
    """Create the internal topics that are missing (when ``create``) and check them all.

    Returns lines describing each topic for logs and ``check-config``; raises
    ``ConfigError`` when a topic exists with a different partition count, the changelog
    is not compacted, or a topic is missing and ``create`` is False.
    """
    admin = AdminClient(dict(admin_config))
    try:
        present = admin.list_topics(timeout=_TIMEOUT_SECONDS).topics
    except KafkaException as exc:
        raise ConfigError({"internal topics": f"cannot list topics: {exc.args[0].str()}"}) from exc
    wanted = topics.configs()
    missing = [name for name in wanted if name not in present]
    report: list[str] = []
    if missing and create:
        futures = admin.create_topics(
            [
                NewTopic(
                    name,
                    num_partitions=topics.partitions,
                    replication_factor=-1,
                    config=wanted[name],
                )
                for name in missing
            ],
            request_timeout=_TIMEOUT_SECONDS,
        )
        for name, future in futures.items():
            try:
                future.result()
                report.append(f"{name}: created, {topics.partitions} partitions")
                log.info("internal topic created", extra={"fields": {"topic": name}})
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # another replica won
                    raise ConfigError(
                        {name: f"cannot create the internal topic: {exc.args[0].str()}"}
                    ) from exc
        present = admin.list_topics(timeout=_TIMEOUT_SECONDS).topics
    problems: dict[str, str] = {}
    for name in wanted:
        meta = present.get(name)
        if meta is None:
            problems[name] = "internal topic does not exist (the service creates it at start-up)"
            continue
        count = len(meta.partitions)
        if count != topics.partitions:
            problems[name] = (
                f"has {count} partitions, PROFILE_SYNC_REPARTITION_PARTITIONS is "
                f"{topics.partitions}; the repartition and changelog topics must have the same "
                "count, and changing it moves profiles between owners (see docs/repartition.md)"
            )
        elif not any(line.startswith(name + ":") for line in report):
            report.append(f"{name}: exists, {count} partitions")
    if topics.changelog in present and topics.changelog not in problems:
        policy = _cleanup_policy(admin, topics.changelog)
        if policy is not None and "compact" not in policy:
            problems[topics.changelog] = f"cleanup.policy is {policy!r}; it must be compact"
    if problems:
        raise ConfigError(problems)
    return report


def _cleanup_policy(admin: AdminClient, topic: str) -> str | None:
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    try:
        entries = admin.describe_configs([resource], request_timeout=_TIMEOUT_SECONDS)[
            resource
        ].result()
    except KafkaException as exc:
        log.warning(
            "cannot read the changelog's configuration",
            extra={"fields": {"topic": topic, "error": exc.args[0].str()}},
        )
        return None
    entry = entries.get("cleanup.policy")
    return None if entry is None else str(entry.value)
