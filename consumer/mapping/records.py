"""Decode + map, per topic: what the intake calls for each Kafka record.

``RecordMapper`` holds, per topic, the decoder the entry asks for (read as written, or
through the entry's ``reader_schema``; wire format through the registry, or plain Avro with
the entry's ``schema``) and the compiled ``apply``. Both are built at the first record of a
topic and cached, so the per-record cost is one dict lookup more than decode + validate.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

from consumer.core.decode import Decoder, WriterSchemas, load_schema
from consumer.core.model import ProfileUpdate, TopicPartition
from consumer.errors import MappingFailed, MappingSpecError
from consumer.mapping.contract_reader import ContractReader, Map, canonical, is_contract_entry
from consumer.mapping.engine import Apply, EntrySpec, Skip, TopicMapping
from consumer.mapping.spec import Mappings, load_builtin


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
        self._readers: dict[str, Map] = {}  # topic -> how its records are mapped

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
        reader = self._readers.get(tp.topic)
        if reader is None:
            reader = self._reader(tp.topic)
        return reader(tp, offset, value, timestamp)

    def _reader(self, topic: str) -> Map:
        prepared = self._topics.get(topic)
        if prepared is None:
            try:
                prepared = self._prepare(topic)
            except MappingSpecError as exc:
                raise MappingFailed("topic", next(iter(exc.problems.values()))) from None
        decoder, apply, debezium = prepared

        def general(
            tp: TopicPartition, offset: int, value: bytes | None, timestamp: int | None
        ) -> ProfileUpdate | Skip:
            if not value and debezium:
                return apply(None, tp, offset, timestamp)  # a tombstone: a skip
            return apply(decoder.decode(value), tp, offset, timestamp)

        reader: Map = general
        if self._reads_as_contract(topic):
            reader = ContractReader(general).map
        self._readers[topic] = reader
        return reader

    def _reads_as_contract(self, topic: str) -> bool:
        """Whether ``topic`` is mapped by the built-in contract and written with its schema
        (plain Avro; records are then read without schema resolution)."""
        entry = self._mappings.for_topic(topic)
        if entry is None or self._registry is not None:
            return False
        spec = entry.spec
        try:
            writer = self._writer_schema or (
                load_schema(Path(spec.schema)) if spec.schema else None
            )
            reader = load_schema(Path(spec.reader_schema)) if spec.reader_schema else None
            if writer is None or not is_contract_entry(spec, _contract()[0]):
                return False
            form = _contract()[1]
            return canonical(writer) == form and (reader is None or canonical(reader) == form)
        except Exception:  # the general path reports whatever is wrong with the schemas
            return False


@cache
def _contract() -> tuple[EntrySpec, str]:
    """The built-in contract entry and its schema's canonical form."""
    spec = load_builtin().entries[0].spec
    assert spec.schema is not None
    return spec, canonical(load_schema(Path(spec.schema)))
