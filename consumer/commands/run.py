"""``profile-sync run``: wire the loop (consumer/core/loop.py) to its edges and run it.

Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT, or ``--exit-when-idle``), 2 for a
configuration error (a mapping file that does not fit its topics included, every problem
named: consumer/mapping/startup.py), 3 when the service stopped in a fatal state (see the log line).
A second SIGTERM/SIGINT exits at once with 143/130 without committing.
"""

from __future__ import annotations

import argparse
import faulthandler
import gc
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

from prometheus_client import CollectorRegistry

from consumer import compiled, config, logs
from consumer.backoff import Backoff
from consumer.clock import Clock, SystemClock
from consumer.commands.owner_wiring import forwarded, repartition_owner, source_updates
from consumer.config.values import redact_url
from consumer.core.batcher import Batcher, BatchLimits
from consumer.core.budget import CallBudget
from consumer.core.carry import CarryForward
from consumer.core.loop import Loop
from consumer.core.model import TopicPartition
from consumer.core.seams import Source
from consumer.core.uploads import CutBatches
from consumer.errors import ConfigError, FatalError
from consumer.health import Health, HealthServer
from consumer.heap import IdleTrim
from consumer.interpreter import Collector
from consumer.kafka.dlq import DeadLetterQueue
from consumer.kafka.members import GroupMembers, admin_config
from consumer.kafka.reread import KafkaRereader
from consumer.kafka.source import KafkaSource
from consumer.mapping import RecordMapper
from consumer.mapping.startup import build_mapper
from consumer.metrics import Metrics
from consumer.target.bulk import BulkSender
from consumer.target.client import TargetClient
from consumer.target.fetch import ProfileReader
from consumer.target.gate import BudgetGate
from consumer.target.startup import check_target
from consumer.target.status import StatusTracker
from consumer.target.urgent import SingleUpdater
from consumer.workers import Crashes

log = logging.getLogger("profile_sync.app")

EXIT_CONFIG = 2
EXIT_FATAL = 3


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Consume ProfileChange events from Kafka and write them to Adobe Target. "
        "Configured through PROFILE_SYNC_* and KAFKA_* environment variables "
        "(see README); `profile-sync check-config` shows the effective settings."
    )
    parser.add_argument(
        "--exit-when-idle",
        type=float,
        metavar="SECONDS",
        default=0.0,
        help="stop cleanly once nothing was consumed for SECONDS and everything consumed "
        "is settled and committed (batch jobs, the demo); 0 = run until signalled",
    )
    parser.add_argument(
        "--summary",
        action="store_true",
        help="print a JSON summary of the run on stdout at exit",
    )


def run(args: argparse.Namespace) -> int:
    try:
        settings = config.load()
    except ConfigError as exc:
        print(f"profile-sync: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    logs.configure(settings.log_level, settings.log_format)
    if not compiled.State.compiled and os.environ.get(compiled.ENV, "").lower() == "require":
        print(
            f"profile-sync: {compiled.ENV}=require, but the hot path is "
            f"{compiled.State.describe()}",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    try:
        return _run(settings, args.exit_when_idle, args.summary)
    except ConfigError as exc:
        log.error("invalid configuration", extra={"fields": {"problems": exc.problems}})
        print(f"profile-sync: {exc}", file=sys.stderr)
        return EXIT_CONFIG


def load_mapper(settings: config.Settings, clock: Clock) -> RecordMapper:
    """The checked mapping of every topic; ``MappingSpecError`` (exit 2) when it does not
    fit, ``FatalError`` (exit 3) when the Schema Registry cannot be reached."""
    registry = None
    if settings.schema_registry_url:
        from consumer.kafka.registry import RegistrySchemas

        registry = RegistrySchemas(settings, clock)
    return build_mapper(settings, registry)


def build_loop(
    settings: config.Settings,
    metrics: Metrics | None,
    clock: Clock,
    mapper: RecordMapper,
    health: Health | None = None,
) -> tuple[Loop, TargetClient]:
    """Build the loop and its edges. Raises ``FatalError`` when the start-up check finds
    the Target URL or client code wrong (consumer/target/startup.py)."""
    pool = settings.max_in_flight_batches + settings.single_concurrency + 2
    client = TargetClient(settings, metrics, pool_size=pool)
    check_target(client, redact_url(settings.target_url), settings.target_client)
    crashes = Crashes(metrics)
    if health is not None:
        crashes.on_death(health.set_broken)
    backoff = Backoff(settings.retry_initial_seconds, settings.retry_max_seconds)
    owner = repartition_owner(settings, metrics, mapper.keyed_by_profile)  # None: direct
    carry: CarryForward | None = None
    if owner is not None:
        carry = owner.carry  # the owner's memory lives in its guard (docs/repartition.md)
    elif settings.carry_forward_enabled:
        carry = CarryForward(settings.carry_forward_max_profiles, settings.carry_forward_max_bytes)
    batcher = Batcher(
        BatchLimits(
            settings.batch_max_rows, settings.batch_max_bytes, settings.batch_linger_seconds
        ),
        carry,
    )
    # One call budget for the group's bulk uploads and status polls (issue 11).
    budget = CallBudget(settings.target_calls_per_minute, clock.monotonic())
    gate = BudgetGate(budget, clock, metrics)
    sender = BulkSender(
        client.post_batch, backoff, metrics, clock=clock, gate=gate, crashes=crashes
    )
    tracker = StatusTracker(
        client.get_status,
        poll_initial=settings.status_poll_initial_seconds,
        poll_max=settings.status_poll_max_seconds,
        max_age=settings.status_max_age_seconds,
        retain_max_bytes=settings.status_retain_max_bytes,
        clock=clock,
        gate=gate,
        unknown_release=settings.status_unknown_release_seconds,
        crashes=crashes,
    )
    topics = settings.topics + (owner.subscribed if owner is not None else ())
    source: Source = KafkaSource(settings.consumer_config(), topics, metrics)
    if owner is not None:
        source = owner.own(source, health)
    cut = CutBatches()
    single = None
    if settings.single_enabled:
        single = SingleUpdater(
            client.single_update,
            SingleUpdater.load_budget(
                settings.single_quota_per_day, settings.single_quota_state_file, clock.time()
            ),
            concurrency=settings.single_concurrency,
            queue_max=settings.single_queue_max,
            queue_max_bytes=settings.single_queue_max_bytes,
            max_attempts=settings.single_max_attempts,
            backoff=backoff,
            metrics=metrics,
            superseded=cut,
            state_file=settings.single_quota_state_file,
            clock=clock,
            crashes=crashes,
        )

    def dead_letter_sink(on_settled: Callable[[int], None]) -> DeadLetterQueue:
        return DeadLetterQueue(
            settings.producer_config(),
            settings.dlq_topic,
            on_settled,
            metrics,
            clock,
            on_blocked=(
                (lambda reason: health.set_condition("dead_letters", reason))
                if health is not None
                else None
            ),
        )

    audit_reader = None
    if settings.audit_sample_share > 0:
        # Its own client and connection: reads never queue behind uploads.
        audit_client = TargetClient(settings, metrics, pool_size=1)
        audit_reader = ProfileReader(
            audit_client.fetch_profile, settings.audit_reads_per_second, audit_client.close
        )
    loop = Loop(
        settings,
        source=source,
        mapper=mapper,
        batcher=batcher,
        carry=carry,
        uploads=sender,
        dead_letter_sink=owner.sinks(dead_letter_sink) if owner else dead_letter_sink,
        cut=cut,
        single=single,
        tracker=tracker,
        metrics=metrics,
        clock=clock,
        budget=budget,
        rereader=KafkaRereader(settings.consumer_config()),
        audit_reader=audit_reader,
    )
    if owner is not None:
        convert = source_updates(
            mapper,
            metrics,
            clock=clock,
            max_future_skew_seconds=settings.max_future_skew_seconds,
            reading=settings.target_cell_decoding.upper(),
        )
        owner.attach(loop, convert=convert)
    return loop, client


def _follow_group_size(settings: config.Settings, loop: Loop) -> GroupMembers | None:
    """Keep the call budget's member count from Kafka: now, every few seconds, and at
    every rebalance (the moment the membership changes)."""
    budget = loop.budget
    if budget is None:
        return None
    group = settings.consumer_config()["group.id"]
    members = GroupMembers(
        admin_config(settings.librdkafka()),
        group,
        lambda n: budget.set_members(n, loop.clock.monotonic()),
    )
    source = loop.source

    def refreshing(inner: Callable[[set[TopicPartition]], None]) -> Callable[..., None]:
        def hook(tps: set[TopicPartition]) -> None:
            members.refresh(joined=True)
            inner(tps)

        return hook

    source.on_assign = refreshing(source.on_assign)
    source.on_revoke = refreshing(source.on_revoke)
    source.on_lost = refreshing(source.on_lost)
    members.start()
    return members


# After the shutdown timeout, how long the watchdog has before the last resort exits.
LAST_RESORT_SECONDS = 5.0


def _start_watchdog(loop: Loop, clock: Clock) -> None:
    """Whatever is in flight, the process is gone ``SHUTDOWN_TIMEOUT_SECONDS`` after the
    stop was asked for (guarantee 10): a close that hangs (a broker gone, a stuck call)
    must not outlive the pod's grace period and be SIGKILLed at a random point."""
    if loop.stop_requested_at is not None:
        return
    loop.stop_requested_at = clock.monotonic()
    timeout = loop.settings.shutdown_timeout_seconds

    def overrun() -> None:
        log.error(
            "shutdown timeout reached, exiting now; what was not committed is re-read",
            extra={"fields": {"shutdown_timeout_seconds": timeout}},
        )
        logging.shutdown()
        os._exit(EXIT_FATAL)

    timer = threading.Timer(timeout, overrun)
    timer.daemon = True
    timer.start()
    # The timer needs the interpreter; a C call that keeps it (a Kafka client close stuck
    # in a rebalance was seen to) would hold the exit forever. faulthandler's own thread
    # needs nothing: a little later it writes every thread's stack to stderr and exits 1.
    faulthandler.dump_traceback_later(timeout + LAST_RESORT_SECONDS, exit=True)


def _install_signals(loop: Loop, clock: Clock) -> None:
    def handle(signum: int, _frame: FrameType | None) -> None:
        if loop.stopping:
            # Second signal: the operator wants out now.
            os._exit(128 + signum)
        log.info("signal received, shutting down", extra={"fields": {"signal": signum}})
        loop.stopping = True
        _start_watchdog(loop, clock)

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def _run(settings: config.Settings, exit_when_idle: float, summary: bool) -> int:
    clock = SystemClock()
    try:
        mapper = load_mapper(settings, clock)  # before anything starts: refuse a bad mapping
    except FatalError as exc:
        log.error("cannot start", extra={"fields": {"error": str(exc)}})
        return EXIT_FATAL
    registry = CollectorRegistry() if settings.metrics_enabled else None
    metrics = Metrics(registry) if registry is not None else None
    health = Health(clock, settings.liveness_timeout_seconds, metrics)
    server = HealthServer(settings.http_host, settings.http_port, health, registry)
    server.start()
    log.info(
        "starting",
        extra={
            "fields": {
                "topics": list(settings.topics),
                "target": redact_url(settings.target_url),
                "client": settings.target_client,
                "http_port": server.port,
                "hot_path": compiled.State.describe(),
            }
        },
    )
    for warning in config.warnings(settings):
        log.warning(warning)
    try:
        loop, client = build_loop(settings, metrics, clock, mapper, health)
    except FatalError as exc:
        log.error("fatal error at start-up, stopping", extra={"fields": {"error": str(exc)}})
        server.stop()
        return EXIT_FATAL
    members = _follow_group_size(settings, loop)
    _install_signals(loop, clock)
    idle_since = clock.monotonic()
    heap = IdleTrim(settings.heap_trim_seconds)  # freed heap back after a burst: consumer/heap.py
    collector = Collector(idle_since)  # GC and GIL policy (consumer/interpreter.py)
    collector.start()
    code = 0
    try:
        while not loop.stopping:
            consumed = loop.turn() + forwarded(loop.source)
            health.beat()
            collector.after_turn(clock.monotonic())
            health.set_assigned(len(loop.source.assigned))
            heap.after_turn(consumed, clock.monotonic())
            if consumed or loop.paused:  # paused by backpressure is not idle: records wait
                idle_since = clock.monotonic()
            elif (
                exit_when_idle
                and clock.monotonic() - max(idle_since, loop.assignment_changed_at)
                >= exit_when_idle
                and loop.source.assigned
                and loop.drained()
            ):
                log.info("idle and drained, stopping")
                break
    except FatalError as exc:
        log.error("fatal error, stopping", extra={"fields": {"error": str(exc)}})
        health.set_fatal(str(exc))
        code = EXIT_FATAL
    health.set_stopping()
    _start_watchdog(loop, clock)
    try:
        settled = loop.shutdown()
    except FatalError as exc:
        log.error("fatal error during shutdown", extra={"fields": {"error": str(exc)}})
        settled, code = False, EXIT_FATAL
    finally:
        if members is not None:
            members.close()
        if loop.audit is not None:
            loop.audit.close()
        client.close()
        server.stop()
    result = loop.summary.as_dict()
    result["settled_at_exit"] = settled
    log.info("stopped", extra={"fields": result})
    if summary:
        print(json.dumps(result), flush=True)
    # What is left on the heap (carry-forward's memory, up to PROFILE_SYNC_CARRY_MAX_PROFILES
    # entries) is freed with the process. The interpreter's collections at exit would
    # first trace all of it: 0.3 s of CPU at 60,000 profiles, a pod's termination delayed.
    gc.freeze()
    return code
