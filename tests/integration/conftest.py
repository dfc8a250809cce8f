"""The consumer's integration stack: real broker topics, the emulator over HTTP, the service.

``stack`` gives each test its own topics, dead-letter topic, consumer group and emulator,
and starts ``profile-sync run`` subprocesses against them; everything is stopped at
teardown. ``mode`` is the service's ``PROFILE_SYNC_REPARTITION`` (docs/repartition.md):
in ``always`` "every offset committed" covers the repartition topic too, since an event
is in Target only once its update was consumed from there. Tests that do not choose a
mode run in ``PROFILE_SYNC_TEST_REPARTITION`` (default ``never``), so the whole suite can
be run in the repartition mode.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaException, Message
from confluent_kafka.admin import AdminClient

from tests.integration.service import Service, service_env, wait_for
from tests.utils import ProfileState, fold

REPO = Path(__file__).resolve().parents[2]


class Stack:
    def __init__(
        self,
        bootstrap: str,
        topics: list[str],
        dlq: str,
        emulator: Any,
        produce: Callable[..., list[tuple[int, int]]],
        consume: Callable[..., list[Message]],
        committed: Callable[[str, str], dict[int, int]],
        end_offsets: Callable[[str], dict[int, int]],
        log_dir: Path,
        mode: str = "never",
    ) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.dlq = dlq
        self.emulator = emulator
        self.group = f"profile-sync-test-{uuid.uuid4().hex[:8]}"
        self._produce = produce
        self._consume = consume
        self._committed = committed
        self._end_offsets = end_offsets
        self._log_dir = log_dir
        self.mode = mode
        # Fewer than the default 12: each new owner restores its changelog partitions.
        self.internal_partitions = 4
        self.services: list[Service] = []
        self.produced: list[Mapping[str, Any]] = []

    # -- the service

    def env(self, **overrides: str) -> dict[str, str]:
        return service_env(
            self.bootstrap,
            self.emulator.url,
            self.emulator.client,
            self.topics,
            self.dlq,
            self.group,
            **{
                "PROFILE_SYNC_REPARTITION": self.mode,
                "PROFILE_SYNC_REPARTITION_PARTITIONS": str(self.internal_partitions),
                **overrides,
            },
        )

    def start(self, *args: str, **overrides: str) -> Service:
        log = self._log_dir / f"service-{len(self.services)}.log"
        service = Service(self.env(**overrides), log, list(args))
        self.services.append(service)
        return service

    def run_to_idle(self, timeout: float = 90.0, **overrides: str) -> dict[str, Any]:
        """Run the service until it has drained everything, and return its summary."""
        service = self.start("--exit-when-idle", "2", "--summary", **overrides)
        code = service.wait(timeout)
        assert code == 0, f"exit code {code}; log tail:\n{service.log_tail()}"
        return service.summary()

    def replay(self, *args: str) -> dict[str, Any]:
        """``profile-sync dlq replay ARGS`` against this stack; its JSON report."""
        done = subprocess.run(
            [sys.executable, "-m", "consumer", "dlq", "replay", *args],
            env=self.env(),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return report

    # -- Kafka

    def produce(
        self, events: Sequence[Mapping[str, Any]], topic: str | None = None, **kwargs: Any
    ) -> list[tuple[int, int]]:
        self.produced.extend(events)
        return self._produce(topic or self.topics[0], events, **kwargs)

    def dead_letters(self, count: int, timeout: float = 30.0) -> list[Message]:
        return self._consume(self.dlq, count, timeout)

    @property
    def repartition_topic(self) -> str:
        return f"{self.group}.repartition"

    def _committed_topics(self) -> list[str]:
        """The source topics, and the repartition topic once a repartition-mode service
        created it."""
        if self.mode == "never":
            return list(self.topics)
        try:
            self._end_offsets(self.repartition_topic)
        except KafkaException:
            return list(self.topics)  # not created yet
        return [*self.topics, self.repartition_topic]

    def all_committed(self) -> bool:
        for topic in self._committed_topics():
            ends = self._end_offsets(topic)
            committed = self._committed(self.group, topic)
            for partition, end in ends.items():
                if end > 0 and committed.get(partition, -1) < end:
                    return False
        return True

    def uncommitted(self) -> dict[str, dict[int, tuple[int, int]]]:
        out: dict[str, dict[int, tuple[int, int]]] = {}
        for topic in self._committed_topics():
            ends = self._end_offsets(topic)
            committed = self._committed(self.group, topic)
            out[topic] = {
                p: (committed.get(p, -1), end)
                for p, end in ends.items()
                if end > 0 and committed.get(p, -1) < end
            }
        return out

    # -- Target

    def target_state(self) -> ProfileState:
        return target_state(self.emulator.control)

    def expected(self, events: Sequence[Mapping[str, Any]] | None = None) -> ProfileState:
        return fold(self.produced if events is None else events)

    def wait_for_state(self, expected: ProfileState, timeout: float = 30.0) -> None:
        def matches() -> bool:
            return self.target_state() == expected

        try:
            wait_for(matches, timeout, "Target's profiles to equal the fold of the events")
        except AssertionError:
            got = self.target_state()
            diff = {
                k: (expected.get(k), got.get(k))
                for k in set(expected) | set(got)
                if expected.get(k) != got.get(k)
            }
            sample = dict(list(diff.items())[:5])
            raise AssertionError(
                f"{len(diff)} profiles differ (expected, got), e.g. {sample}"
            ) from None


def target_state(control: Any) -> ProfileState:
    """The emulator's stored profiles as {(id type header name, id): {name: value}}."""
    state: ProfileState = {}
    for id_type, table in control.profiles().items():
        for profile_id, attrs in table.items():
            values = {n: v["value"] if isinstance(v, dict) else v for n, v in attrs.items()}
            if values:
                state[(id_type, profile_id)] = values
    return state


@pytest.fixture
def stack(
    kafka_bootstrap: str,
    make_topic: Callable[..., str],
    emulator_server: Callable[..., Any],
    produce_profile_changes: Callable[..., list[tuple[int, int]]],
    consume_topic: Callable[..., list[Message]],
    committed_offsets: Callable[[str, str], dict[int, int]],
    topic_end_offsets: Callable[[str], dict[int, int]],
    kafka_admin: AdminClient,
    tmp_path: Path,
) -> Iterator[Callable[..., Stack]]:
    stacks: list[Stack] = []

    def make(
        partitions: int = 3, topics: int = 2, mode: str = "", **emulator_options: Any
    ) -> Stack:
        mode = mode or os.environ.get("PROFILE_SYNC_TEST_REPARTITION", "never")
        names = [make_topic(partitions=partitions, prefix=f"events{i}") for i in range(topics)]
        dlq = make_topic(partitions=1, prefix="dlq")
        emulator_options.setdefault("bulk_apply_delay", 0.0)
        s = Stack(
            kafka_bootstrap,
            names,
            dlq,
            emulator_server(**emulator_options),
            produce_profile_changes,
            consume_topic,
            committed_offsets,
            topic_end_offsets,
            tmp_path,
            mode,
        )
        stacks.append(s)
        return s

    yield make
    for s in stacks:
        for service in s.services:
            service.kill()
    internal = [f"{s.group}.{kind}" for s in stacks if s.mode != "never"
                for kind in ("repartition", "changelog")]  # fmt: skip
    if internal:
        for fut in kafka_admin.delete_topics(internal, operation_timeout=10).values():
            with contextlib.suppress(KafkaException, TimeoutError):
                fut.result(timeout=15)
