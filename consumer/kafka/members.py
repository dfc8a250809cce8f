"""How many members our consumer group has, from Kafka itself.

The tenant's call budget is shared by the replicas of one consumer group
(consumer/core/budget.py); each replica learns the group's size from the admin API's
consumer-group description, in a background thread: every ``interval`` seconds, and at
once when ``refresh`` is called (the loop calls it on every rebalance, which is when the
membership changes). A failed description keeps the last count and is logged once per
outage, so a broker hiccup never raises the call rate.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

log = logging.getLogger("profile_sync.members")

REFRESH_SECONDS = 10.0
DESCRIBE_TIMEOUT_SECONDS = 10.0
# Client properties an admin client does not take (consumer or producer only).
_NOT_ADMIN = (
    "group.",
    "partition.assignment",
    "enable.auto",
    "auto.offset",
    "auto.commit",
    "fetch.",
    "session.timeout",
    "heartbeat.",
    "max.poll",
    "isolation.",
    "statistics.",
    "acks",
    "enable.idempotence",
    "linger.ms",
    "compression.",
    "queue.buffering",
    "batch.",
)


def admin_config(props: Mapping[str, str]) -> dict[str, str]:
    """The connection settings of ``props`` (the user's KAFKA_* values) for an admin client."""
    return {k: v for k, v in props.items() if not k.startswith(_NOT_ADMIN)}


def describe_members(admin: AdminClient, group_id: str, timeout: float) -> int:
    """Members of ``group_id`` now (0 for an empty or unknown group); raises KafkaException."""
    futures = admin.describe_consumer_groups([group_id], request_timeout=timeout)
    description = futures[group_id].result(timeout=timeout)
    return len(description.members or [])


class GroupMembers:
    def __init__(
        self,
        admin_config: Mapping[str, str],
        group_id: str,
        on_count: Callable[[int], None],
        interval: float = REFRESH_SECONDS,
    ) -> None:
        conf: dict[str, str | int | float | bool] = dict(admin_config)
        self._admin = AdminClient(conf)
        self._group_id = group_id
        self._on_count = on_count
        self._interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._failing = False
        self._joined = threading.Event()
        self.count: int | None = None
        self._thread = threading.Thread(target=self._run, name="group-members", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def refresh(self, joined: bool = True) -> None:
        """Describe the group again now (a rebalance changed the membership); ``joined``:
        this replica is a member by now (it got an assignment, even an empty one)."""
        if joined:
            self._joined.set()
        self._wake.set()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=DESCRIBE_TIMEOUT_SECONDS + 1)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            self._describe()
            self._wake.wait(self._interval)

    def _describe(self) -> None:
        try:
            count = describe_members(self._admin, self._group_id, DESCRIBE_TIMEOUT_SECONDS)
        except (KafkaException, TimeoutError, OSError) as exc:
            if not self._failing:
                self._failing = True
                log.warning(
                    "cannot describe the consumer group; the call budget keeps its last share",
                    extra={"fields": {"group_id": self._group_id, "error": str(exc)}},
                )
            return
        if self._failing:
            self._failing = False
            log.info("consumer group described again", extra={"fields": {"members": count}})
        # Until this replica's own join completed, the group does not list it yet.
        count = max(1, count if self._joined.is_set() else count + 1)
        if count != self.count:
            log.info(
                "consumer group size",
                extra={"fields": {"group_id": self._group_id, "members": count}},
            )
        self.count = count
        self._on_count(count)
