"""``profile-sync produce-sample``: realistic POS and CRM profile-change events into Kafka.

Two halves, kept apart so the first is tested without a broker:

- pure generation: ``generate_events`` yields ProfileChange dicts (the fields of
  ``schemas/profile_change.avsc``) from a seed, ``route`` picks the topic and the key, and
  ``expected_profiles`` folds a ``--dump`` file into the state Target should end up with;
- Kafka I/O (``run``): a metadata check with a deadline, optional topic creation, plain
  schemaless Avro or Confluent wire format (``AvroSerializer``, subject ``<topic>-value``),
  an idempotent batching producer, delivery reports counted, one summary line.

The data is what real retail systems send, not what is convenient: Unicode names, notes
with commas, ``&``, ``%``, ``+``, quotes, line breaks and emoji, null values ("no change"),
a few third-party ids containing ``+`` or ``/`` (base64 hashes, which the single-update API
rejects), Target tntids as pcIds, POS tills that upload minutes late, and ``occurred_at``
strictly increasing per profile, so the newest value of an attribute is also its last one.

Exit codes: 0 all delivered; 1 some deliveries failed; 2 cannot start (broker unreachable,
topic missing, registry refused the schema, bad option); 130 interrupted.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from consumer.config import DEFAULT_WRITER_SCHEMA

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_TOPIC_POS = "pos.profile-changes"
DEFAULT_TOPIC_CRM = "crm.profile-changes"
# The broker must answer a metadata request within this before anything is produced.
CONNECT_TIMEOUT_S = 10.0
# Time for created topics to get a leader on every partition (a fresh KRaft broker is quick).
TOPIC_READY_TIMEOUT_S = 30.0
# Share of third-party ids that are base64 hashes with '+' or '/': rare, but real CRMs have
# them and Target's single-update API rejects them, so the stream must contain some.
SPECIAL_ID_SHARE = 0.005
# Urgent moments are mostly CRM ones (loyalty card swiped, call-centre contact).
URGENT_CRM_PART = 0.9
# Share of attribute values that are null (no change) and, for strings, empty.
NULL_SHARE = 0.04
EMPTY_SHARE = 0.01
# Share of CRM events whose attribute names carry the 'profile.' prefix (it is stripped).
PREFIXED_NAME_SHARE = 0.01
# POS tills upload in batches: an event may reach Kafka up to this long after it happened.
POS_UPLOAD_LAG_MS = 180_000
# Mean business time between two events of the whole stream.
MEAN_GAP_MS = 40.0
# Give up waiting for outstanding deliveries after this; they count as failed.
FLUSH_TIMEOUT_S = 120.0
PROGRESS_INTERVAL_S = 0.25

# --- pure generation --------------------------------------------------------------------------

FIRST_NAMES = (
    "José", "Zoë", "Łukasz", "山田", "Ólafur", "Siobhán", "François", "Søren", "Björk",
    "Nguyễn", "Αλέξανδρος", "Мария", "Chloé", "Anne-Marie", "O'Brien", "Jürgen", "Ana Lucía",
    "María José", "Dvořák", "Ewa", "Mohammed", "Priya", "Kwame", "Sakura", "Liam", "Emma",
)  # fmt: skip
CITIES = (
    "São Paulo", "Zürich", "Kraków", "Reykjavík", "東京", "München", "Łódź", "Paris",
    "New York, NY", "Dún Laoghaire", "Malmö", "Córdoba", "Москва", "Seattle", "Leeds",
)  # fmt: skip
LANGUAGES = ("en-US", "en-GB", "fr-FR", "de-DE", "es-ES", "pl-PL", "ja-JP", "is-IS", "pt-BR")
SEGMENTS = ("vip", "lapsed", "new-customer", "high-value", "bargain hunter", "family & kids")
TIERS = ("bronze", "silver", "gold", "platinum")
CATEGORIES = (
    "Grocery", "Electronics", "Home & Garden", "Health & Beauty", "Toys, Games & Hobbies",
    "Wine & Spirits", "Baby", "Women's Fashion", "Men's Shoes", "Books/Media",
)  # fmt: skip
NOTES = (
    "Called about order #{n}, asked for a refund & store credit",
    'Prefers "express" delivery; 10% off next visit + free gift 🎁',
    "Complaint resolved\nfollow-up in 2 weeks 👍",
    "Moved: Hauptstraße 5, 80331 München",
    "Discount code SAVE%20NOW (literal text, not an escape)",
    "asked: a=b&c=d?",
    "100% satisfied 😀\r\nwill come back",
    "Allergic to nuts, gluten; prefers email, not SMS",
    "VIP 💎 since 2019 — handle with care",
    "tab\tseparated\tnotes from the old CRM",
    "50% + 20% stacking question, escalated to manager",
)
CRM_ATTRIBUTES = (
    "loyaltyTier", "loyaltyPoints", "emailOptIn", "firstName", "city", "preferredLanguage",
    "segment", "note",
)  # fmt: skip
STORES = 250


@dataclass(slots=True)
class _Profile:
    id_type: str
    id: str
    home_store: str
    purchases: int = 0
    points: int = 0
    last_ms: int = -1


@dataclass(slots=True)
class _Generator:
    rng: random.Random
    profiles: int
    pcid_share: float
    pool: dict[int, _Profile] = field(default_factory=dict)
    used_ids: set[str] = field(default_factory=set)

    def profile(self, index: int) -> _Profile:
        found = self.pool.get(index)
        if found is None:
            found = self.pool[index] = self._new_profile(index)
        return found

    def _new_profile(self, index: int) -> _Profile:
        rng = self.rng
        home = f"store-{rng.randrange(1, STORES + 1):04d}"
        while True:
            if rng.random() < self.pcid_share:
                id_type, pid = "PC_ID", f"{rng.getrandbits(128):032x}.{rng.randrange(100):02d}_0"
            elif rng.random() < SPECIAL_ID_SHARE:
                id_type, pid = "THIRD_PARTY_ID", _hashed_id(rng)
            elif rng.random() < 0.3:
                id_type, pid = "THIRD_PARTY_ID", f"6280{index:09d}"  # loyalty card number
            else:
                id_type, pid = "THIRD_PARTY_ID", f"crm-{index:06d}"
            if pid not in self.used_ids:
                self.used_ids.add(pid)
                return _Profile(id_type, pid, home)


def _hashed_id(rng: random.Random) -> str:
    """A base64 hash as some CRMs use for ids: always with at least one '+' or '/'."""
    while True:
        text = base64.b64encode(rng.randbytes(18)).decode("ascii")
        if "+" in text or "/" in text:
            return text


def _urgent_odds(urgent_share: float, pos_share: float) -> tuple[float, float]:
    """P(urgent | POS), P(urgent | CRM) so that the overall share is ``urgent_share``."""
    crm_share = 1.0 - pos_share
    crm = min(1.0, URGENT_CRM_PART * urgent_share / crm_share) if crm_share > 0 else 0.0
    rest = max(0.0, urgent_share - crm * crm_share)
    pos = min(1.0, rest / pos_share) if pos_share > 0 else 0.0
    return pos, crm


def _maybe_null(rng: random.Random, value: Any) -> Any:
    roll = rng.random()
    if roll < NULL_SHARE:
        return None
    if isinstance(value, str) and roll < NULL_SHARE + EMPTY_SHARE:
        return ""
    return value


def _pos_attributes(rng: random.Random, p: _Profile, at_ms: int) -> dict[str, Any]:
    p.purchases += 1
    store = p.home_store if rng.random() < 0.7 else f"store-{rng.randrange(1, STORES + 1):04d}"
    amount = round(rng.lognormvariate(3.3, 0.9), 2)
    if rng.random() < 0.03:
        amount = -amount  # a refund at the till
    attrs: dict[str, Any] = {
        "lastStoreId": store,
        "lastPurchaseAmount": amount,
        "lastPurchaseAt": at_ms,
        "purchaseCount": p.purchases,
    }
    if rng.random() < 0.8:
        attrs["lastPurchaseCategory"] = _maybe_null(rng, rng.choice(CATEGORIES))
    if rng.random() < 0.6:
        attrs["basketSize"] = rng.randint(1, 40)
    if rng.random() < 0.1:
        attrs["preferredStore"] = None if rng.random() < 0.3 else p.home_store
    return attrs


def _crm_value(rng: random.Random, p: _Profile, name: str, n: int) -> Any:
    if name == "loyaltyTier":
        return rng.choice(TIERS)
    if name == "loyaltyPoints":
        p.points = max(0, p.points + rng.randint(-500, 2_500))
        return p.points
    if name == "emailOptIn":
        return rng.random() < 0.7
    if name == "firstName":
        return rng.choice(FIRST_NAMES)
    if name == "city":
        return rng.choice(CITIES)
    if name == "preferredLanguage":
        return rng.choice(LANGUAGES)
    if name == "segment":
        return rng.choice(SEGMENTS)
    return rng.choice(NOTES).format(n=n)


def _crm_attributes(rng: random.Random, p: _Profile, urgent: bool, n: int) -> dict[str, Any]:
    if urgent and rng.random() < 0.5:
        names = ["loyaltyPoints", "loyaltyTier"]  # loyalty card swiped in store
    elif urgent:
        names = ["note", rng.choice(("emailOptIn", "preferredLanguage"))]  # call-centre contact
    else:
        names = rng.sample(CRM_ATTRIBUTES, rng.randint(1, 4))
    attrs: dict[str, Any] = {}
    for name in names:
        key = f"profile.{name}" if rng.random() < PREFIXED_NAME_SHARE else name
        attrs[key] = _maybe_null(rng, _crm_value(rng, p, name, n))
    return attrs


def generate_events(
    n: int,
    profiles: int,
    urgent_share: float,
    pcid_share: float,
    pos_share: float,
    seed: int,
    start_ms: int,
) -> Iterator[dict[str, Any]]:
    """``n`` ProfileChange dicts over a pool of ``profiles`` profiles; same seed, same events.

    Busy profiles get more events (a skewed pick). ``occurred_at`` starts near ``start_ms``,
    advances with the stream and strictly increases per profile in yield order.
    """
    if n < 0 or profiles < 1:
        raise ValueError("n must be >= 0 and profiles >= 1")
    for name, share in (("urgent", urgent_share), ("pcid", pcid_share), ("pos", pos_share)):
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"{name}_share must be within [0, 1]")
    rng = random.Random(seed)
    gen = _Generator(rng, profiles, pcid_share)
    urgent_pos, urgent_crm = _urgent_odds(urgent_share, pos_share)
    clock = float(start_ms)
    for i in range(n):
        clock += rng.expovariate(1.0 / MEAN_GAP_MS)
        p = gen.profile(min(profiles - 1, int(profiles * rng.random() ** 1.5)))
        pos = rng.random() < pos_share
        urgent = rng.random() < (urgent_pos if pos else urgent_crm)
        lag = rng.randrange(POS_UPLOAD_LAG_MS) if pos else rng.randrange(2_000)
        at_ms = max(int(clock) - lag, p.last_ms + 1, 0)
        p.last_ms = at_ms
        yield {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "source": "POS" if pos else "CRM",
            "occurred_at": at_ms,
            "profile": {"id_type": p.id_type, "id": p.id},
            "priority": "URGENT" if urgent else "NORMAL",
            "attributes": (
                _pos_attributes(rng, p, at_ms) if pos else _crm_attributes(rng, p, urgent, i)
            ),
        }


def route(event: dict[str, Any], topic_pos: str, topic_crm: str) -> tuple[str, str, dict[str, Any]]:
    """(topic, key, event): POS events to the POS topic, the rest to CRM; key = profile id."""
    topic = topic_pos if event["source"] == "POS" else topic_crm
    return topic, event["profile"]["id"], event


def target_string(value: object) -> str | None:
    """The Target string of an attribute value (schemas/README.md); None = no change."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} has no Target string")
        return repr(value)
    return str(value)


def expected_profiles(lines: Iterable[str]) -> dict[tuple[str, str], dict[str, str]]:
    """Fold ``--dump`` lines into {(id_type, id): {attribute: Target string}}.

    Applies the contract: the newest ``occurred_at`` wins per attribute, null and "" change
    nothing, a ``profile.`` prefix is stripped. Profiles with nothing to set are absent.
    """
    newest: dict[tuple[str, str], dict[str, tuple[int, str]]] = {}
    for line in lines:
        if not line.strip():
            continue
        event = json.loads(line)["event"]
        key = (event["profile"]["id_type"], event["profile"]["id"])
        at = event["occurred_at"]
        row = newest.setdefault(key, {})
        for name, value in event["attributes"].items():
            text = target_string(value)
            if text is None:
                continue
            name = name.removeprefix("profile.")
            if name not in row or row[name][0] <= at:
                row[name] = (at, text)
    return {k: {n: v for n, (_, v) in row.items()} for k, row in newest.items() if row}


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
        help="events per second; 0 = as fast as possible (default: %(default)s)",
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
        "production order, which per key is the order in Kafka (default: no dump)",
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
            # Pace against the schedule, serving delivery reports while waiting.
            while (wait := started + done / args.rate - time.monotonic()) > 0:
                if stop.requested:
                    break
                poll(min(wait, 0.1))
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
    topics = list(dict.fromkeys([args.topic_pos, args.topic_crm]))
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
            _wire_serializer(args.schema_registry_url, schema_text, topics)
            if args.schema_registry_url
            else _plain_serializer(schema_text)
        )
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
