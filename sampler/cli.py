"""``profile-sync produce-sample``: realistic POS and CRM profile-change events into Kafka.

With ``--purchases`` / ``--customer-changes`` it also produces records that are not our
contract (``sampler.mapped``): POS ``Purchase`` records and Debezium change events of the
CRM customers table, for the example mappings of docs/mapping.md.

The command line and the Kafka I/O; the events themselves, their routing and the expected
final state of a ``--dump`` come from ``sampler.events`` (pure, tested without a
broker). ``run`` does a metadata check with a deadline, optional topic creation, plain
schemaless Avro or Confluent wire format (``AvroSerializer``, subject ``<topic>-value``),
an idempotent batching producer, delivery reports counted, one summary line.

Exit codes: 0 all delivered; 1 some deliveries failed; 2 cannot start (broker unreachable,
topic missing, registry refused the schema, bad option); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from consumer.config import DEFAULT_WRITER_SCHEMA
from sampler import mapped
from sampler.events import MEAN_GAP_MS, generate_events, route
from sampler.events import expected_profiles as expected_profiles  # documented here

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_TOPIC_POS = "pos.profile-changes"
DEFAULT_TOPIC_CRM = "crm.profile-changes"
# The broker must answer a metadata request within this before anything is produced.
CONNECT_TIMEOUT_S = 10.0
# Time for created topics to get a leader on every partition (a fresh KRaft broker is quick).
TOPIC_READY_TIMEOUT_S = 30.0
# Give up waiting for outstanding deliveries after this; they count as failed.
FLUSH_TIMEOUT_S = 120.0
PROGRESS_INTERVAL_S = 0.25
# --rate pacing: wait once this far ahead of the schedule; fall back at most this far
# behind it (what a stalled producer may send at once to catch up).
PACE_S = 0.001
MAX_CATCH_UP_S = 0.1

# --- command line ----------------------------------------------------------------------------


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a share within [0, 1]")
    return value


def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text} is below {minimum}")
        return value

    return parse


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0.0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} is not a number >= 0")
    return value


def _positive(text: str) -> float:
    value = _non_negative(text)
    if value == 0.0:
        raise argparse.ArgumentTypeError(f"{text} is not a number > 0")
    return value


def _property(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key.strip(), value


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Each event goes to --topic-pos or --topic-crm by its source, keyed by the profile id. "
        "Exit status: 0 all delivered, 1 some deliveries failed, 2 could not start "
        "(broker unreachable, topic missing, schema registry error), 130 interrupted."
    )
    add = parser.add_argument
    add(
        "--bootstrap-servers",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or DEFAULT_BOOTSTRAP,
        help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP_SERVERS, else %(default)s)",
    )
    add(
        "--topic-pos", default=DEFAULT_TOPIC_POS, help="topic for POS events (default: %(default)s)"
    )
    add(
        "--topic-crm", default=DEFAULT_TOPIC_CRM, help="topic for CRM events (default: %(default)s)"
    )
    add(
        "--count",
        type=_count(0),
        default=10_000,
        help="number of events to produce (default: %(default)s)",
    )
    add(
        "--rate",
        type=_non_negative,
        default=0.0,
        help="events per second, at most: one that falls behind (a busy machine) sends at most "
        "0.1 s worth at once to catch up; 0 = as fast as possible (default: %(default)s)",
    )
    add(
        "--profiles",
        type=_count(1),
        default=1_000,
        help="size of the profile pool; busy profiles get more events (default: %(default)s)",
    )
    add(
        "--urgent-share",
        type=_share,
        default=0.02,
        help="share of URGENT events, mostly CRM (default: %(default)s)",
    )
    add(
        "--pcid-share",
        type=_share,
        default=0.1,
        help="share of profiles keyed by pcId (default: %(default)s)",
    )
    add(
        "--pos-share",
        type=_share,
        default=0.6,
        help="share of events from POS, the rest CRM (default: %(default)s)",
    )
    add(
        "--seed",
        type=int,
        default=None,
        help="random seed: the same seed gives the same events (default: a random one, "
        "printed in the summary)",
    )
    add(
        "--start-ms",
        type=_count(0),
        default=None,
        help="occurred_at of the first event, ms since the epoch (default: now)",
    )
    add(
        "--schema-registry-url",
        default=None,
        help="write Confluent wire format, registering the schema under <topic>-value at this "
        "Schema Registry (default: plain schemaless Avro)",
    )
    add(
        "--schema",
        type=Path,
        default=DEFAULT_WRITER_SCHEMA,
        help="Avro writer schema file (default: the bundled profile_change.avsc)",
    )
    add(
        "--create-topics",
        type=_count(1),
        default=None,
        metavar="N",
        help="create missing topics with N partitions (default: the topics must exist)",
    )
    add(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress line on stderr (default: when stderr is a terminal)",
    )
    add(
        "--quiet",
        action="store_true",
        help="print nothing but errors: no progress, no summary line",
    )
    add(
        "--dump",
        type=Path,
        default=None,
        metavar="PATH",
        help='write every produced event as a JSON line {"topic", "key", "event"}, in '
        "production order, which per key is the order in Kafka; --purchases and "
        '--customer-changes records as {"topic", "key", "occurred_at", "expect"} '
        "(sampler.mapped.expected_mapped_profiles folds them) (default: no dump)",
    )
    add(
        "--purchases",
        type=_count(0),
        default=0,
        metavar="N",
        help="also produce N POS Purchase records (schemas/examples/pos_purchase.avsc), "
        "mapped by schemas/examples/pos_purchase.mapping.yaml (default: %(default)s)",
    )
    add(
        "--topic-purchases",
        default=mapped.DEFAULT_TOPIC_PURCHASES,
        help="topic for --purchases (default: %(default)s)",
    )
    add(
        "--customer-changes",
        type=_count(0),
        default=0,
        metavar="N",
        help="also produce N Debezium change events of the CRM customers table, tombstones "
        "included (schemas/examples/crm_customers_debezium.avsc) (default: %(default)s)",
    )
    add(
        "--topic-customers",
        default=mapped.DEFAULT_TOPIC_CUSTOMERS,
        help="topic for --customer-changes (default: %(default)s)",
    )
    add(
        "--connect-timeout",
        type=_positive,
        default=CONNECT_TIMEOUT_S,
        help="seconds the broker has to answer a metadata request (default: %(default)s)",
    )
    add(
        "-X",
        dest="kafka_properties",
        type=_property,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra librdkafka producer property, repeatable (e.g. -X security.protocol=SSL)",
    )


# --- Kafka I/O -----------------------------------------------------------------------------


class _StartError(Exception):
    """Producing cannot start; the message is the one line the user sees."""


@dataclass(slots=True)
class _Tally:
    """Delivery reports, counted from librdkafka's callbacks (served by ``poll``/``flush``)."""

    produced: int = 0
    delivered: int = 0
    failed: int = 0
    bytes: int = 0
    first_error: str = ""
    client_error: str = ""
    per_topic: dict[str, int] = field(default_factory=dict)

    def on_delivery(self, err: Any, _msg: Any) -> None:
        if err is None:
            self.delivered += 1
            return
        self.failed += 1
        if not self.first_error:
            self.first_error = err.str()

    def on_error(self, err: Any) -> None:
        self.client_error = err.str()


def _quiet_logger() -> Any:
    import logging

    # librdkafka logs every refused connection; our own messages say what matters once.
    log = logging.getLogger("profile_sync.sample.librdkafka")
    log.addHandler(logging.NullHandler())
    log.propagate = False
    return log


def _producer_config(args: argparse.Namespace, tally: _Tally) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "bootstrap.servers": args.bootstrap_servers,
        "client.id": "profile-sync-produce-sample",
        # Idempotence keeps one key's events in order through retries; it implies acks=all.
        "enable.idempotence": True,
        "acks": "all",
        # The Java client's partitioner: a key lands where the POS/CRM Java producers put it.
        "partitioner": "murmur2_random",
        # Batching for throughput: 20 ms is invisible to a sample stream, and fills batches.
        "linger.ms": 20,
        "batch.num.messages": 10_000,
        "batch.size": 1_000_000,
        "queue.buffering.max.messages": 500_000,
        "queue.buffering.max.kbytes": 512 * 1024,
        # A message not delivered within this is reported failed (not retried forever).
        "message.timeout.ms": 60_000,
        "compression.type": "lz4",
        "error_cb": tally.on_error,
        "logger": _quiet_logger(),
    }
    conf.update(dict(args.kafka_properties))
    return conf


def _make_producer(conf: dict[str, Any]) -> Any:
    from confluent_kafka import KafkaException, Producer

    try:
        return Producer(conf)
    except KafkaException as exc:
        if conf.get("compression.type") == "lz4" and "compression" in exc.args[0].str():
            return Producer({**conf, "compression.type": "none"})  # a build without lz4
        raise _StartError(f"invalid producer configuration: {exc.args[0].str()}") from None


def _metadata(producer: Any, bootstrap: str, timeout: float) -> Any:
    from confluent_kafka import KafkaException

    try:
        return producer.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise _StartError(
            f"cannot reach Kafka at {bootstrap} within {timeout:g} s ({exc.args[0].str()})"
        ) from None


def _exists(metadata: Any, topic: str) -> bool:
    found = metadata.topics.get(topic)
    return found is not None and found.error is None and bool(found.partitions)


def _ensure_topics(
    producer: Any, conf: dict[str, Any], topics: list[str], partitions: int | None, bootstrap: str
) -> None:
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    metadata = _metadata(producer, bootstrap, CONNECT_TIMEOUT_S)
    missing = [t for t in topics if not _exists(metadata, t)]
    if not missing:
        return
    if partitions is None:
        raise _StartError(
            f"topic {missing[0]} does not exist on {bootstrap}; create it or pass --create-topics N"
        )
    admin_conf = {k: v for k, v in conf.items() if k not in ("error_cb",)}
    admin = AdminClient(admin_conf)
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=partitions) for t in missing],
        operation_timeout=TOPIC_READY_TIMEOUT_S,
    )
    for topic, future in futures.items():
        try:
            future.result(timeout=TOPIC_READY_TIMEOUT_S)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise _StartError(f"cannot create topic {topic}: {exc.args[0].str()}") from None
    deadline = time.monotonic() + TOPIC_READY_TIMEOUT_S
    for topic in missing:
        while True:
            found = producer.list_topics(topic=topic, timeout=10).topics.get(topic)
            if (
                found is not None
                and found.error is None
                and found.partitions
                and all(p.leader >= 0 and p.error is None for p in found.partitions.values())
            ):
                break
            if time.monotonic() > deadline:
                raise _StartError(f"topic {topic} has no leader on every partition in time")
            time.sleep(0.05)


def _safe_url(url: str) -> str:
    """The URL without user:password, for messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


Serialize = Callable[[str, dict[str, Any]], bytes]


def _plain_serializer(schema_text: str) -> Serialize:
    import io

    import fastavro

    parsed = fastavro.parse_schema(json.loads(schema_text))
    buf = io.BytesIO()

    def serialize(_topic: str, event: dict[str, Any]) -> bytes:
        buf.seek(0)
        buf.truncate()
        fastavro.schemaless_writer(buf, parsed, event)
        return buf.getvalue()

    return serialize


def _wire_serializer(url: str, schema_text: str, topics: list[str]) -> Serialize:
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    client = SchemaRegistryClient({"url": url})
    for topic in topics:
        try:
            client.register_schema(f"{topic}-value", Schema(schema_text, "AVRO"))
        except Exception as exc:  # SchemaRegistryError or the HTTP client's network errors
            detail = str(exc).replace(url, _safe_url(url))[:300]
            raise _StartError(
                f"schema registry at {_safe_url(url)} did not register {topic}-value: "
                f"{type(exc).__name__}: {detail}"
            ) from None
    serializer = AvroSerializer(client, schema_text, conf={"auto.register.schemas": True})
    contexts = {t: SerializationContext(t, MessageField.VALUE) for t in topics}

    def serialize(topic: str, event: dict[str, Any]) -> bytes:
        value = serializer(event, contexts[topic])
        assert value is not None
        return bytes(value)

    return serialize


class _Progress:
    """A single self-overwriting line on stderr, at most every PROGRESS_INTERVAL_S."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = total
        self.enabled = enabled
        self.start = time.monotonic()
        self.next_at = self.start

    def update(self, done: int, tally: _Tally, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (now < self.next_at and not force):
            return
        self.next_at = now + PROGRESS_INTERVAL_S
        rate = done / (now - self.start) if now > self.start else 0.0
        pct = 100.0 * done / self.total if self.total else 100.0
        sys.stderr.write(
            f"\r{done:,}/{self.total:,} events ({pct:5.1f}%)  {rate:,.0f}/s  "
            f"{tally.delivered:,} delivered  {tally.failed:,} failed "
        )
        sys.stderr.flush()

    def close(self, done: int, tally: _Tally) -> None:
        if self.enabled:
            self.update(done, tally, force=True)
            sys.stderr.write("\n")
            sys.stderr.flush()


class _StopFlag:
    """SIGINT/SIGTERM ask the loop to stop and flush; a second signal acts at once.

    A flag, not KeyboardInterrupt: an exception raised inside librdkafka's ``poll`` surfaces
    as a SystemError and loses the delivery reports still queued.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: Any) -> None:
        self.requested = True
        self.restore()

    def install(self) -> None:
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return  # signals are delivered to the main thread only
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        import signal

        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


def _produce_all(
    args: argparse.Namespace,
    producer: Any,
    serialize: Serialize,
    tally: _Tally,
    dump: IO[str] | None,
    progress: _Progress,
    stop: _StopFlag,
    seed: int,
    start_ms: int,
) -> bool:
    """Produce every event; False if a signal stopped it before the last one."""
    from confluent_kafka import KafkaException

    produce, poll = producer.produce, producer.poll
    on_delivery = tally.on_delivery
    encode = json.JSONEncoder(ensure_ascii=False).encode  # json.dumps(**kw) builds one per call
    events = generate_events(
        args.count, args.profiles, args.urgent_share, args.pcid_share, args.pos_share,
        seed, start_ms,
    )  # fmt: skip
    started = time.monotonic()
    done = 0
    for event in events:
        if stop.requested:
            break
        if args.rate > 0:
            # Pace against the schedule, serving delivery reports while waiting: once a
            # millisecond's worth is ahead of it, not per event (a wait per event cost
            # more CPU than producing). A producer that fell behind (a busy machine) does
            # not burst to catch up: the schedule moves on, the rate is a ceiling.
            wait = started + done / args.rate - time.monotonic()
            if wait < -MAX_CATCH_UP_S:
                started -= wait + MAX_CATCH_UP_S
            while wait > PACE_S:
                if stop.requested:
                    break
                poll(min(wait, 0.1))
                wait = started + done / args.rate - time.monotonic()
        topic, key, _ = route(event, args.topic_pos, args.topic_crm)
        value = serialize(topic, event)
        key_bytes = key.encode("utf-8")
        while True:
            try:
                produce(topic, value=value, key=key_bytes, on_delivery=on_delivery)
                break
            except BufferError:  # local queue full: let librdkafka send, then retry
                poll(0.05)
            except KafkaException as exc:  # refused locally (e.g. over message.max.bytes)
                tally.on_delivery(exc.args[0], None)
                break
        done += 1
        tally.bytes += len(key_bytes) + len(value)
        tally.per_topic[topic] = tally.per_topic.get(topic, 0) + 1
        if dump is not None:
            dump.write(encode({"topic": topic, "key": key, "event": event}))
            dump.write("\n")
        if done % 1000 == 0:
            poll(0)
            progress.update(done, tally)
    tally.produced = done
    return done == int(args.count)


MappedStream = tuple[str, str, Callable[[int, int], Iterable[mapped.Mapped]]]


def _mapped_streams(args: argparse.Namespace) -> list[MappedStream]:
    """(topic, schema text, generator) of each non-contract stream asked for."""
    streams: list[MappedStream] = []
    if args.purchases:
        topic = args.topic_purchases
        streams.append(
            (
                topic,
                mapped.PURCHASE_SCHEMA.read_text("utf-8"),
                lambda seed, start: mapped.generate_purchases(
                    args.purchases, args.profiles, seed, start, topic
                ),
            )
        )
    if args.customer_changes:
        topic_c = args.topic_customers
        streams.append(
            (
                topic_c,
                mapped.CUSTOMERS_SCHEMA.read_text("utf-8"),
                lambda seed, start: mapped.generate_customer_changes(
                    args.customer_changes, args.profiles, seed, start, topic_c
                ),
            )
        )
    return streams


def _produce_mapped(
    producer: Any,
    serialize: Serialize,
    records: Iterable[mapped.Mapped],
    tally: _Tally,
    dump: IO[str] | None,
    stop: _StopFlag,
) -> bool:
    """Produce one non-contract stream (tombstones as null values); False if interrupted."""
    from confluent_kafka import KafkaException

    for record in records:
        if stop.requested:
            return False
        value = None if record.value is None else serialize(record.topic, record.value)
        key = record.key.encode("utf-8")
        while True:
            try:
                producer.produce(record.topic, value=value, key=key, on_delivery=tally.on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
            except KafkaException as exc:
                tally.on_delivery(exc.args[0], None)
                break
        tally.produced += 1
        tally.bytes += len(key) + len(value or b"")
        tally.per_topic[record.topic] = tally.per_topic.get(record.topic, 0) + 1
        if dump is not None:
            dump.write(mapped.dump_line(record))
            dump.write("\n")
        if tally.produced % 1000 == 0:
            producer.poll(0)
    return True


def _progress_enabled(args: argparse.Namespace) -> bool:
    if args.quiet:
        return False
    return bool(sys.stderr.isatty() if args.progress is None else args.progress)


def _flush(producer: Any, tally: _Tally, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    remaining = producer.flush(1.0)
    while remaining and time.monotonic() < deadline:
        remaining = producer.flush(1.0)
    if remaining:
        tally.failed += remaining
        tally.first_error = tally.first_error or f"{remaining} not delivered within {timeout:g} s"


def _summary(tally: _Tally, elapsed: float, seed: int, interrupted: bool) -> str:
    rate = tally.produced / elapsed if elapsed > 0 else 0.0
    topics = ", ".join(f"{t} {n:,}" for t, n in sorted(tally.per_topic.items()))
    line = (
        f"produced {tally.produced:,} events ({tally.bytes:,} bytes) in {elapsed:.2f} s: "
        f"{rate:,.0f} events/s, {tally.failed:,} failed [{topics or 'no topic'}; seed {seed}]"
    )
    if interrupted:
        line += " (interrupted)"
    if tally.first_error:
        line += f"; first error: {tally.first_error}"
    return line


def run(args: argparse.Namespace) -> int:
    """Produce the sample stream; see the module docstring for the exit codes."""
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    # Default: the stream ends about now, so occurred_at values look like recent history.
    start_ms = (
        args.start_ms
        if args.start_ms is not None
        else int(time.time() * 1000 - args.count * MEAN_GAP_MS)
    )
    streams = _mapped_streams(args)
    # --count 0 with a mapped stream: only that stream's topic needs to exist.
    main = [args.topic_pos, args.topic_crm] if args.count or not streams else []
    topics = list(dict.fromkeys([*main, *(t for t, _, _ in streams)]))
    tally = _Tally()
    try:
        schema_text = Path(args.schema).read_text(encoding="utf-8")
    except OSError as exc:
        print(f"produce-sample: cannot read schema {args.schema}: {exc.strerror}", file=sys.stderr)
        return 2
    conf = _producer_config(args, tally)
    producer = None
    try:
        producer = _make_producer(conf)
        _metadata(producer, args.bootstrap_servers, args.connect_timeout)
        _ensure_topics(producer, conf, topics, args.create_topics, args.bootstrap_servers)
        serialize = (
            _wire_serializer(args.schema_registry_url, schema_text, list(dict.fromkeys(main)))
            if args.schema_registry_url and main
            else _plain_serializer(schema_text)
        )
        mapped_serializers = {
            topic: (
                _wire_serializer(args.schema_registry_url, text, [topic])
                if args.schema_registry_url
                else _plain_serializer(text)
            )
            for topic, text, _ in streams
        }
    except _StartError as exc:
        print(f"produce-sample: {exc}", file=sys.stderr)
        return 2
    dump = open(args.dump, "w", encoding="utf-8") if args.dump else None  # noqa: SIM115
    progress = _Progress(args.count, _progress_enabled(args))
    stop = _StopFlag()
    stop.install()
    started = time.monotonic()
    try:
        completed = _produce_all(
            args, producer, serialize, tally, dump, progress, stop, seed, start_ms
        )
        for topic, _, generate in streams:
            if completed:
                records = generate(seed, start_ms)
                completed = _produce_mapped(
                    producer, mapped_serializers[topic], records, tally, dump, stop
                )
        _flush(producer, tally, FLUSH_TIMEOUT_S if completed else 10.0)
        progress.close(tally.produced, tally)
    finally:
        stop.restore()
        if dump is not None:
            dump.close()
    elapsed = time.monotonic() - started
    line = _summary(tally, elapsed, seed, not completed)
    if not args.quiet:
        print(line, flush=True)
    elif tally.failed:
        print(f"produce-sample: {line}", file=sys.stderr)
    if not completed:
        return 130
    return 1 if tally.failed else 0
