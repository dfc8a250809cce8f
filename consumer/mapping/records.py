"""Decode + map, per topic: what the intake calls for each Kafka record.

``RecordMapper`` holds, per topic, the decoder the entry asks for (read as written, or
through the entry's ``reader_schema``; wire format through the registry, or plain Avro with
the entry's ``schema``) and the compiled ``apply``. Both are built at the first record of a
topic and cached, so the per-record cost is one dict lookup more than decode + validate.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from consumer.core.decode import Decoder, WriterSchemas, load_schema
from consumer.core.model import ProfileUpdate, TopicPartition
from consumer.errors import MappingFailed, MappingSpecError
from consumer.mapping.engine import Apply, Skip, TopicMapping
from consumer.mapping.spec import Mappings


def decoder_for(
    entry: TopicMapping,
    registry: WriterSchemas | None,
    writer_schema: dict[str, Any] | None = None,
) -> Decoder:
    """The decoder of ``entry``'s topic. ``writer_schema`` overrides the entry's ``schema``
    for plain Avro (the contract's ``PROFILE_SYNC_WRITER_SCHEMA``). Raises ``MappingSpecError``
    when plain Avro has no schema to read with."""
    spec = entry.spec
    try:
        reader = load_schema(Path(spec.reader_schema)) if spec.reader_schema else None
        if registry is not None:
            return Decoder(reader, registry=registry)
        writer = writer_schema or (load_schema(Path(spec.schema)) if spec.schema else None)
    except (OSError, ValueError) as exc:
        raise MappingSpecError({f"{spec.label} / schema": f"cannot read: {exc}"}) from None
    if writer is None and reader is None:
        raise MappingSpecError(
            {f"{spec.label} / schema": "plain Avro (no Schema Registry) needs schema: in the entry"}
        )
    return Decoder(reader, writer_schema=writer)


class RecordMapper:
    """``map(tp, offset, value, timestamp)``: one Kafka record -> ``ProfileUpdate`` or ``Skip``.

    Raises ``DecodeError`` (bytes are not Avro of a known schema), ``MappingFailed`` or
    another ``ValidationError``: all ``PoisonError``, for the dead-letter topic.
    """

    def __init__(
        self,
        mappings: Mappings,
        registry: WriterSchemas | None,
        writer_schema: dict[str, Any] | None = None,
    ) -> None:
        self._mappings = mappings
        self._registry = registry
        self._writer_schema = writer_schema
        self._topics: dict[str, tuple[Decoder, Apply, bool]] = {}

    @property
    def mappings(self) -> Mappings:
        return self._mappings

    def keyed_by_profile(self, topic: str) -> bool:
        """Whether ``topic``'s records are keyed by their profile id, as its entry declares
        (``keyed_by_profile``; the built-in contract mapping says so)."""
        return self._mappings.keyed_by_profile(topic)

    def require(self, topics: Iterable[str]) -> None:
        """Fail at start-up (``MappingSpecError``) for a topic no entry maps, or one whose
        entry cannot build a decoder."""
        problems: dict[str, str] = {}
        for topic in topics:
            try:
                self._prepare(topic)
            except MappingSpecError as exc:
                problems.update(exc.problems)
        if problems:
            raise MappingSpecError(problems)

    def _prepare(self, topic: str) -> tuple[Decoder, Apply, bool]:
        entry = self._mappings.for_topic(topic)
        if entry is None:
            raise MappingSpecError({topic: "no entry of the mapping file maps this topic"})
        prepared = (
            decoder_for(entry, self._registry, self._writer_schema),
            entry.apply,
            entry.spec.debezium,
        )
        self._topics[topic] = prepared
        return prepared

    def map(
        self, tp: TopicPartition, offset: int, value: bytes | None, timestamp: int | None
    ) -> ProfileUpdate | Skip:
        prepared = self._topics.get(tp.topic)
        if prepared is None:
            try:
                prepared = self._prepare(tp.topic)
            except MappingSpecError as exc:
                raise MappingFailed("topic", next(iter(exc.problems.values()))) from None
        decoder, apply, debezium = prepared
        if not value and debezium:
            return apply(None, tp, offset, timestamp)  # a tombstone: a skip
        return apply(decoder.decode(value), tp, offset, timestamp)
