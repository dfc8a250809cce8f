"""Avro bytes -> decoded record dicts, plain or in Confluent wire format.

Decoding is the most expensive stage (~58% of the hot path), so:

- schemas are parsed once, with logical types stripped: we need the millisecond integer
  and the uuid string, not ``datetime``/``UUID`` objects (~25% of decode time);
- one decoder per writer schema (per schema id in wire format), cached;
- when the writer schema equals the reader schema (same parsing canonical form), records
  are read without a reader schema: resolution would double the cost for nothing.

Wire-format framing and the registry lookup sit behind ``WriterSchemas`` (see
``consumer.kafka.registry``), so this module has no network and no Kafka import.
"""

from __future__ import annotations

import json
from io import BytesIO
from pathlib import Path
from typing import Any, Protocol, cast

import fastavro
from fastavro.schema import to_parsing_canonical_form

from consumer.errors import DecodeError

_Schema = Any  # a fastavro parsed schema


class WriterSchemas(Protocol):
    """Where wire-format records find their writer schema."""

    def read_schema_id(self, buf: BytesIO) -> int:
        """Consume the framing header from ``buf``; raise ``DecodeError`` if it is not one."""
        ...

    def schema_for(self, schema_id: int) -> dict[str, Any]:
        """The writer schema (JSON as a dict). Raise ``DecodeError`` for an unknown id."""
        ...


def strip_logical_types(schema: Any) -> Any:
    """A copy of a JSON schema without ``logicalType`` annotations."""
    if isinstance(schema, dict):
        return {k: strip_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [strip_logical_types(s) for s in schema]
    return schema


def load_schema(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        schema: dict[str, Any] = json.load(fh)
    return schema


class _RecordReader:
    __slots__ = ("reader", "writer")

    def __init__(self, writer: dict[str, Any], reader: dict[str, Any] | None) -> None:
        w = fastavro.parse_schema(strip_logical_types(writer))
        self.writer = w
        self.reader: _Schema | None = None
        if reader is not None:
            r = fastavro.parse_schema(strip_logical_types(reader))
            same = to_parsing_canonical_form(w) == to_parsing_canonical_form(r)
            self.reader = None if same else r

    def read(self, buf: BytesIO) -> dict[str, Any]:
        return cast(dict[str, Any], fastavro.schemaless_reader(buf, self.writer, self.reader))


class Decoder:
    """Decode record values into dicts shaped by the reader schema.

    ``registry`` None: plain Avro written with ``writer_schema``. Otherwise: wire format.
    ``reader_schema`` None (a mapped topic without a schema of its own, see
    docs/mapping.md): records are read as their writer schema has them.
    """

    def __init__(
        self,
        reader_schema: dict[str, Any] | None,
        writer_schema: dict[str, Any] | None = None,
        registry: WriterSchemas | None = None,
    ) -> None:
        self._reader_schema = reader_schema
        self._registry = registry
        self._by_id: dict[int, _RecordReader] = {}
        plain_writer = writer_schema or reader_schema
        if registry is None and plain_writer is None:
            raise ValueError("plain Avro needs a writer or a reader schema")
        self._plain = (
            _RecordReader(plain_writer, reader_schema)
            if registry is None and plain_writer is not None
            else None
        )

    def decode(self, value: bytes | None) -> dict[str, Any]:
        """One record. Raises ``DecodeError`` (poison) for anything that is not our Avro."""
        if not value:
            raise DecodeError("empty_value", "record has no value (tombstone or empty)")
        buf = BytesIO(value)
        reader = self._plain if self._plain is not None else self._reader_for(buf)
        try:
            record = reader.read(buf)
        except Exception as exc:  # fastavro raises many types on corrupt input
            raise DecodeError("undecodable", f"{type(exc).__name__}: {exc}"[:300]) from exc
        if buf.tell() != len(value):
            raise DecodeError(
                "undecodable", f"{len(value) - buf.tell()} trailing bytes after the record"
            )
        return record

    def _reader_for(self, buf: BytesIO) -> _RecordReader:
        assert self._registry is not None
        schema_id = self._registry.read_schema_id(buf)
        reader = self._by_id.get(schema_id)
        if reader is None:
            writer = self._registry.schema_for(schema_id)
            try:
                reader = _RecordReader(writer, self._reader_schema)
            except Exception as exc:
                raise DecodeError(
                    "incompatible_schema", f"schema id {schema_id} cannot be read: {exc}"[:300]
                ) from exc
            self._by_id[schema_id] = reader
        return reader
