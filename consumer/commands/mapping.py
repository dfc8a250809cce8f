"""``profile-sync mapping check|preview``: a mapping file, checked and tried before it runs.

- ``check`` compiles the file (every syntax problem at once) and checks each entry against
  its topic's writer schemas: from ``--schema TOPIC=FILE``, else the Schema Registry (subject
  ``<topic>-value``; every version with ``--all-versions``), else the entry's ``schema:``
  file. Each error names the topic, the entry and the path.
- ``preview`` reads ``--count`` records of one topic with a consumer that assigns the
  partitions itself (it joins no group and commits nothing) and prints the profile updates
  they would produce, as a table or JSON lines. Target is never called.

Exit codes: 0 fine, 1 Kafka or the registry cannot be reached, 2 the mapping (or an
option) is wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from io import BytesIO
from pathlib import Path
from typing import Any, TextIO

from consumer.core.decode import load_schema
from consumer.core.model import ProfileUpdate, TopicPartition
from consumer.errors import DecodeError, MappingSpecError, PoisonError
from consumer.mapping import Mappings, Skip, load_builtin, load_file
from consumer.mapping.check import check_entry
from consumer.mapping.records import RecordMapper

EXIT_OK, EXIT_UNREACHABLE, EXIT_BAD_MAPPING = 0, 1, 2
ENV_MAPPING_FILE = "PROFILE_SYNC_MAPPING_FILE"
ENV_BOOTSTRAP = "PROFILE_SYNC_KAFKA_BOOTSTRAP_SERVERS"
ENV_REGISTRY = "PROFILE_SYNC_SCHEMA_REGISTRY_URL"
ENV_REGISTRY_USER_INFO = "PROFILE_SYNC_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"
# How long preview waits for records before printing what it has; a topic that is quiet
# for this long has nothing more to show.
PREVIEW_TIMEOUT_S = 15.0
# Longest attribute value shown in the table; JSON lines carry values whole.
TABLE_VALUE_CHARS = 40


def configure_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="mapping_command", metavar="ACTION", required=True)
    check = sub.add_parser(
        "check", help="check the mapping file against the topics' writer schemas"
    )
    preview = sub.add_parser(
        "preview", help="print the profile updates the next records of a topic would produce"
    )
    for child in (check, preview):
        child.add_argument(
            "--mapping-file",
            default=os.environ.get(ENV_MAPPING_FILE) or None,
            help=f"the mapping file (default: ${ENV_MAPPING_FILE}, else the built-in "
            "ProfileChange mapping)",
        )
        child.add_argument(
            "--schema-registry-url",
            default=os.environ.get(ENV_REGISTRY) or None,
            help=f"Schema Registry for writer schemas (default: ${ENV_REGISTRY})",
        )
    check.add_argument(
        "--schema",
        action="append",
        default=[],
        type=_topic_file,
        metavar="TOPIC=FILE",
        help="the writer schema (.avsc) of TOPIC; repeatable; wins over registry and entry",
    )
    check.add_argument(
        "--topic",
        action="append",
        default=[],
        help="a topic to check a topic_pattern entry for (without a registry); repeatable",
    )
    check.add_argument(
        "--all-versions",
        action="store_true",
        help="check every registered version of a subject, not only the latest",
    )
    preview.add_argument("--topic", required=True, help="the topic to read")
    preview.add_argument("--count", type=_positive_int, default=10, help="records to read")
    preview.add_argument(
        "--format", choices=("table", "json"), default="table", help="output (default: table)"
    )
    preview.add_argument(
        "--from",
        dest="start",
        choices=("beginning", "end"),
        default="beginning",
        help="the first COUNT records of each partition, or the last COUNT (default: beginning)",
    )
    preview.add_argument(
        "--bootstrap-servers",
        default=os.environ.get(ENV_BOOTSTRAP) or None,
        help=f"Kafka brokers (default: ${ENV_BOOTSTRAP})",
    )
    preview.add_argument(
        "--writer-schema",
        default=None,
        help="writer schema (.avsc) of plain-Avro records (default: the entry's schema:)",
    )
    preview.add_argument(
        "--timeout",
        type=float,
        default=PREVIEW_TIMEOUT_S,
        help="seconds to wait for records (default: %(default)s)",
    )
    preview.add_argument(
        "-X",
        dest="kafka_properties",
        action="append",
        default=[],
        type=_property,
        metavar="KEY=VALUE",
        help="extra librdkafka consumer property, repeatable (e.g. -X security.protocol=SSL)",
    )


def _topic_file(text: str) -> tuple[str, str]:
    topic, sep, file = text.partition("=")
    if not sep or not topic or not file:
        raise argparse.ArgumentTypeError("expected TOPIC=FILE")
    return topic, file


def _property(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError("expected KEY=VALUE")
    return key, value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def run(args: argparse.Namespace) -> int:
    try:
        mappings = load_file(args.mapping_file) if args.mapping_file else load_builtin()
    except MappingSpecError as exc:
        _print_problems("mapping file", exc.problems)
        return EXIT_BAD_MAPPING
    if args.mapping_command == "check":
        return _check(mappings, args)
    return _preview(mappings, args)


def _print_problems(what: str, problems: dict[str, str]) -> None:
    print(f"profile-sync mapping: {len(problems)} problem(s) in the {what}:", file=sys.stderr)
    for where, why in sorted(problems.items()):
        print(f"  {where}: {why}", file=sys.stderr)


# --- check ------------------------------------------------------------------------------


class _Registry:
    """The few Schema Registry reads the command needs, through confluent-kafka's client."""

    def __init__(self, url: str) -> None:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        conf: dict[str, Any] = {"url": url}
        user_info = os.environ.get(ENV_REGISTRY_USER_INFO)
        if user_info:
            conf["basic.auth.user.info"] = user_info
        self.client = SchemaRegistryClient(conf)

    def topics(self) -> list[str]:
        return sorted(
            s[: -len("-value")] for s in self.client.get_subjects() if s.endswith("-value")
        )

    def schemas(self, topic: str, all_versions: bool) -> list[tuple[str, dict[str, Any]]]:
        """``(label, schema)`` of the subject's latest (or every) version; [] if none."""
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        subject = f"{topic}-value"
        try:
            if all_versions:
                found = [
                    self.client.get_version(subject, v) for v in self.client.get_versions(subject)
                ]
            else:
                found = [self.client.get_latest_version(subject)]
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                return []
            raise
        return [(f"{subject} v{r.version}", json.loads(r.schema.schema_str or "{}")) for r in found]

    def schema_by_id(self, schema_id: int) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.client.get_schema(schema_id).schema_str or "{}")
        return parsed


def _check(mappings: Mappings, args: argparse.Namespace) -> int:
    files = dict(args.schema)
    registry = _Registry(args.schema_registry_url) if args.schema_registry_url else None
    problems: dict[str, str] = {}
    warnings: dict[str, str] = {}
    checked = 0
    try:
        registry_topics = registry.topics() if registry is not None else []
    except Exception as exc:  # the registry client's HTTP and registry errors
        print(
            f"profile-sync mapping: schema registry unreachable: {type(exc).__name__}",
            file=sys.stderr,
        )
        return EXIT_UNREACHABLE
    for entry in mappings.entries:
        spec = entry.spec
        topics = list(spec.topics)
        if spec.pattern is not None:
            candidates = sorted({*files, *args.topic, *registry_topics})
            topics = [t for t in candidates if mappings.for_topic(t) is entry]
        targets: list[tuple[str, str, Any]] = []  # (topic, where the schema is from, schema)
        for topic in topics or [spec.label]:
            if topic in files:
                try:
                    targets.append((topic, files[topic], load_schema(Path(files[topic]))))
                except (OSError, ValueError) as exc:
                    problems[f"{topic} / schema / {files[topic]}"] = f"cannot read: {exc}"
                continue
            found = []
            if registry is not None and topics:
                try:
                    found = registry.schemas(topic, args.all_versions)
                except Exception as exc:
                    print(
                        f"profile-sync mapping: schema registry unreachable: {type(exc).__name__}",
                        file=sys.stderr,
                    )
                    return EXIT_UNREACHABLE
            if found:
                targets += [(topic, label, schema) for label, schema in found]
            elif spec.schema is not None:
                try:
                    targets.append((topic, spec.schema, load_schema(Path(spec.schema))))
                except (OSError, ValueError) as exc:
                    problems[f"{topic} / schema / {spec.schema}"] = f"cannot read: {exc}"
            else:
                problems[f"{topic} / schema / -"] = (
                    "no writer schema: give --schema TOPIC=FILE, a registry or schema: in the entry"
                )
        for topic, origin, schema in targets:
            found_problems, found_warnings = check_entry(spec, schema, topic)
            checked += 1
            for where, why in found_problems.items():
                problems.setdefault(where, f"{why} [{origin}]")
            warnings.update(found_warnings)
    for where, why in sorted(warnings.items()):
        print(f"profile-sync mapping: warning: {where}: {why}", file=sys.stderr)
    if problems:
        _print_problems("mapping against its schemas", problems)
        return EXIT_BAD_MAPPING
    print(f"mapping OK: {len(mappings.entries)} entries, {checked} schema(s) checked")
    return EXIT_OK


# --- preview ----------------------------------------------------------------------------


class _WireSchemas:
    """``decode.WriterSchemas`` over the registry, for preview: no retries, errors are poison."""

    def __init__(self, registry: _Registry) -> None:
        self._registry = registry
        self._cache: dict[int, dict[str, Any]] = {}

    def read_schema_id(self, buf: BytesIO) -> int:
        from confluent_kafka.schema_registry.serde import SchemaId

        if buf.getbuffer().nbytes < 5:
            raise DecodeError("not_wire_format", "shorter than the 5-byte wire-format header")
        schema_id = SchemaId("AVRO")
        try:
            schema_id.from_bytes(buf)
        except Exception as exc:
            raise DecodeError("not_wire_format", f"bad wire-format header: {exc}") from exc
        if schema_id.id is None:
            raise DecodeError("not_wire_format", "schema referenced by GUID is not supported")
        return int(schema_id.id)

    def schema_for(self, schema_id: int) -> dict[str, Any]:
        if schema_id not in self._cache:
            try:
                self._cache[schema_id] = self._registry.schema_by_id(schema_id)
            except Exception as exc:
                raise DecodeError("unknown_schema", f"schema id {schema_id}: {exc}") from exc
        return self._cache[schema_id]


def _preview(mappings: Mappings, args: argparse.Namespace) -> int:
    entry = mappings.for_topic(args.topic)
    if entry is None:
        print(
            f"profile-sync mapping: no entry of the mapping file maps topic {args.topic}",
            file=sys.stderr,
        )
        return EXIT_BAD_MAPPING
    if not args.bootstrap_servers:
        print(
            f"profile-sync mapping: give --bootstrap-servers (or ${ENV_BOOTSTRAP})", file=sys.stderr
        )
        return EXIT_BAD_MAPPING
    registry = (
        _WireSchemas(_Registry(args.schema_registry_url)) if args.schema_registry_url else None
    )
    try:
        writer = load_schema(Path(args.writer_schema)) if args.writer_schema else None
        mapper = RecordMapper(mappings, registry, writer)
        mapper.require([args.topic])
    except (OSError, ValueError) as exc:
        print(f"profile-sync mapping: cannot read the writer schema: {exc}", file=sys.stderr)
        return EXIT_BAD_MAPPING
    except MappingSpecError as exc:
        _print_problems("mapping file", exc.problems)
        return EXIT_BAD_MAPPING
    try:
        records = _read(args)
    except _Unreachable as exc:
        print(f"profile-sync mapping: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    rows = [_outcome(mapper, args.topic, *record) for record in records]
    if args.format == "json":
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
    else:
        _table(rows, sys.stdout)
    return EXIT_OK


class _Unreachable(Exception):
    """Kafka did not answer; the message is the line the user sees."""


_Read = tuple[int, int, bytes | None, int | None, bytes | None]


def _read(args: argparse.Namespace) -> list[_Read]:
    """Up to ``count`` records ``(partition, offset, key, timestamp, value)`` in offset order
    per partition, read with ``assign``: no group join, no commit."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException
    from confluent_kafka import TopicPartition as KafkaTopicPartition

    conf = {
        "bootstrap.servers": args.bootstrap_servers,
        # librdkafka wants a group id even for assign(); nothing is ever committed to it.
        "group.id": "profile-sync-mapping-preview",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        **dict(args.kafka_properties),
    }
    consumer = Consumer(conf)
    try:
        try:
            metadata = consumer.list_topics(args.topic, timeout=min(args.timeout, 10.0))
        except KafkaException as exc:
            raise _Unreachable(f"cannot reach Kafka: {exc.args[0].str()}") from None
        topic = metadata.topics.get(args.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            raise _Unreachable(f"topic {args.topic} does not exist")
        assignment = []
        for partition in sorted(topic.partitions):
            start = OFFSET_BEGINNING
            if args.start == "end":
                low, high = consumer.get_watermark_offsets(
                    KafkaTopicPartition(args.topic, partition), timeout=10.0
                )
                start = max(low, high - args.count)
            assignment.append(KafkaTopicPartition(args.topic, partition, start))
        consumer.assign(assignment)
        pending = {tp.partition for tp in assignment}
        out: list[_Read] = []
        deadline = time.monotonic() + args.timeout
        while pending and len(out) < args.count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(message.partition())
                    continue
                if error.fatal():
                    raise _Unreachable(f"Kafka error: {error.str()}")
                continue
            kind, stamp = message.timestamp()
            timestamp = stamp if kind != 0 else None  # 0: TIMESTAMP_NOT_AVAILABLE
            out.append(
                (
                    int(message.partition() or 0),
                    int(message.offset() or 0),
                    message.key(),
                    timestamp,
                    message.value(),
                )
            )
        return sorted(out)[: args.count] if args.start == "end" else out
    finally:
        consumer.close()


def _outcome(
    mapper: RecordMapper,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    timestamp: int | None,
    value: bytes | None,
) -> dict[str, Any]:
    row: dict[str, Any] = {"topic": topic, "partition": partition, "offset": offset}
    if key is not None:
        row["key"] = key.decode("utf-8", "replace")
    try:
        result = mapper.map(TopicPartition(topic, partition), offset, value, timestamp)
    except PoisonError as exc:
        row.update(outcome="dead_letter", reason=exc.reason, detail=exc.detail)
        return row
    if isinstance(result, Skip):
        row.update(outcome="skip", reason=str(result.reason))
        return row
    assert isinstance(result, ProfileUpdate)
    row.update(
        outcome="update",
        id_type=str(result.id_type),
        profile_id=result.profile_id,
        priority=str(result.priority),
        occurred_at=result.occurred_at,
        source=result.source,
        attributes=result.attributes,
    )
    if result.event_id:
        row["event_id"] = result.event_id
    return row


def _short(text: str) -> str:
    shown = text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text
    return shown if len(shown) <= TABLE_VALUE_CHARS else shown[: TABLE_VALUE_CHARS - 1] + "…"


def _table(rows: list[dict[str, Any]], out: TextIO) -> None:
    header = ("PARTITION:OFFSET", "OUTCOME", "PROFILE", "PRIORITY", "OCCURRED_AT", "ATTRIBUTES")
    lines = [header]
    for row in rows:
        where = f"{row['partition']}:{row['offset']}"
        if row["outcome"] == "update":
            attributes = ", ".join(f"{k}={_short(v)}" for k, v in row["attributes"].items())
            lines.append(
                (
                    where,
                    "update",
                    f"{row['id_type']}:{row['profile_id']}",
                    row["priority"],
                    str(row["occurred_at"]),
                    attributes,
                )
            )
        else:
            why = row["reason"] + (f" ({_short(row['detail'])})" if row.get("detail") else "")
            lines.append((where, row["outcome"], "", "", "", why))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    for line in lines:
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        print("  ".join([*cells, line[-1]]).rstrip(), file=out)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["outcome"]] = counts.get(row["outcome"], 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no records"
    print(f"({summary})", file=out)
