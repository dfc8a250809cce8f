"""The built-in contract read straight from its Avro bytes: decoding, validation and value
rendering in one pass, for records written with the contract's own schema.

``RecordMapper`` (consumer/mapping/records.py) uses it for a topic whose entry is the
built-in ``ProfileChange`` mapping and whose writer schema has the contract's parsing
canonical form. It skips what the general path builds and throws away: fastavro's nested
dicts, the path getters, the attribute map's dict. The general path stays the authority:
``map`` takes a record only when every check passed; anything else (truncated, bad
UTF-8, an enum or union index out of range, a negative map block, a varint longer than 9
bytes, a bad name or id, a non-finite double, no attribute, a name met twice with a null
or empty value, maybe too large) is handed to the general path, which gives the same
result or the same ``PoisonError`` as without this reader. So it rejects exactly what the
general path rejects, with the same reason (tests/unit/test_contract_reader.py is the
oracle).

Avro binary (the spec's "Binary Encoding"): a long is a zigzag varint; a string a long
byte length then UTF-8; an enum a long index; a union a long branch index then the value;
a map blocks of (count, entries) ending with a count of 0.
"""

from __future__ import annotations

from collections.abc import Callable
from struct import Struct
from struct import error as StructError
from typing import Any

from fastavro.schema import parse_schema, to_parsing_canonical_form

from consumer.core.decode import strip_logical_types
from consumer.core.model import IdType, Priority, ProfileUpdate, TopicPartition
from consumer.core.validate import MAX_ID_LENGTH, MAX_PROFILE_BYTES, attribute_name
from consumer.errors import ValidationError
from consumer.mapping.engine import EntrySpec, Skip

Map = Callable[[TopicPartition, int, "bytes | None", "int | None"], "ProfileUpdate | Skip"]

# Enum branches by their zigzag-encoded index byte (index i is the byte 2*i).
_SOURCES = {0: "POS", 2: "CRM", 4: "OTHER"}
_ID_TYPES = {0: IdType.THIRD_PARTY_ID, 2: IdType.PC_ID}
_PRIORITIES = {0: Priority.NORMAL, 2: Priority.URGENT}
_DOUBLE = Struct("<d").unpack_from
_INF = float("inf")
_NAMES_MAX = 100_000
_new = tuple.__new__


def canonical(schema: dict[str, Any]) -> str:
    """The parsing canonical form of a JSON schema, logical types stripped (as read)."""
    return str(to_parsing_canonical_form(parse_schema(strip_logical_types(schema))))


def is_contract_entry(spec: EntrySpec, contract: EntrySpec) -> bool:
    """Whether ``spec`` maps records exactly as the built-in ``contract`` entry does (the
    topics it applies to and where its schemas come from aside)."""

    def how(s: EntrySpec) -> tuple[Any, ...]:
        return (
            s.debezium, s.id_path, s.id_type, s.id_type_path, s.id_type_values, s.id_prefix,
            s.id_format, s.occurred_at_path, s.occurred_at_unit, s.source, s.source_path,
            s.event_id_path, s.priority_path, s.urgent_when, s.skip_when, s.attributes,
            s.attributes_from,
        )  # fmt: skip

    return how(spec) == how(contract)


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """The unsigned varint at ``pos`` (its first byte has the continuation bit) and the
    position after it; (-1, pos) for one longer than 9 bytes (beyond 63 bits: left to
    fastavro, whose 64-bit arithmetic decides what it means)."""
    # Unrolled to 6 bytes (42 bits: timestamps in ms to 2039 after zigzag), then a loop.
    result = buf[pos] & 0x7F
    b = buf[pos + 1]
    if b < 0x80:
        return result | b << 7, pos + 2
    result |= (b & 0x7F) << 7
    b = buf[pos + 2]
    if b < 0x80:
        return result | b << 14, pos + 3
    result |= (b & 0x7F) << 14
    b = buf[pos + 3]
    if b < 0x80:
        return result | b << 21, pos + 4
    result |= (b & 0x7F) << 21
    b = buf[pos + 4]
    if b < 0x80:
        return result | b << 28, pos + 5
    result |= (b & 0x7F) << 28
    b = buf[pos + 5]
    if b < 0x80:
        return result | b << 35, pos + 6
    result |= (b & 0x7F) << 35
    shift = 42
    pos += 6
    for _ in range(3):  # 9 bytes at most, as fastavro reads them
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
    return -1, pos


class ContractReader:
    """``map(tp, offset, value, timestamp)`` like ``RecordMapper.map`` for a contract topic;
    ``general`` is the general path, called for every record this reader does not take."""

    def __init__(self, general: Map) -> None:
        self.general = general
        self._names: dict[bytes, str] = {}  # only names that passed validation

    def map(
        self, tp: TopicPartition, offset: int, value: bytes | None, timestamp: int | None
    ) -> ProfileUpdate | Skip:
        update = None
        if value:
            try:
                update = self._read(value, tp, offset)
            except (IndexError, ValueError, StructError):  # truncated, bad UTF-8, short double
                update = None
        if update is None:
            return self.general(tp, offset, value, timestamp)
        return update

    def _name(self, raw: bytes) -> str | None:
        try:
            name = attribute_name(raw.decode())
        except ValidationError:
            return None  # the general path raises it, in its order
        if len(self._names) >= _NAMES_MAX:
            self._names.clear()
        self._names[raw] = name
        return name

    def _read(self, buf: bytes, tp: TopicPartition, offset: int) -> ProfileUpdate | None:
        # event_id: string
        n = buf[0]
        pos = 1
        if n >= 0x80:
            n, pos = _varint(buf, 0)
        if n & 1:  # a negative length (or -1: too long a varint)
            return None
        end = pos + (n >> 1)
        event_id = buf[pos:end].decode()
        # source: enum
        source = _SOURCES.get(buf[end])
        if source is None:
            return None
        # occurred_at: long
        z = buf[end + 1]
        pos = end + 2
        if z >= 0x80:
            z, pos = _varint(buf, end + 1)
        if z & 1:  # negative (or too long): invalid_occurred_at or fastavro's reading
            return None
        occurred_at = z >> 1
        # profile.id_type: enum, profile.id: string
        id_type = _ID_TYPES.get(buf[pos])
        if id_type is None:
            return None
        n = buf[pos + 1]
        pos += 2
        if n >= 0x80:
            n, pos = _varint(buf, pos - 1)
        if n & 1:
            return None
        end = pos + (n >> 1)
        profile_id = buf[pos:end].decode()
        if (
            len(profile_id) > MAX_ID_LENGTH
            or not profile_id.isprintable()
            or not profile_id.strip()
            or (id_type is IdType.THIRD_PARTY_ID and ("+" in profile_id or "/" in profile_id))
        ):
            return None
        # priority: enum
        priority = _PRIORITIES.get(buf[end])
        if priority is None:
            return None
        pos = end + 1
        # attributes: map of [null, string, long, double, boolean]
        attributes: dict[str, str] = {}
        skipped: list[str] | None = None  # names of null or empty values
        names = self._names
        while True:
            count = buf[pos]
            pos += 1
            if count >= 0x80:
                count, pos = _varint(buf, pos - 1)
            if count == 0:
                break
            if count & 1:  # a block with its byte size (negative count), or too long
                return None
            for _ in range(count >> 1):
                n = buf[pos]
                pos += 1
                if n >= 0x80:
                    n, pos = _varint(buf, pos - 1)
                if n & 1:
                    return None
                end = pos + (n >> 1)
                raw = buf[pos:end]
                name = names.get(raw) or self._name(raw)
                if name is None:  # the general path raises it, in its order
                    return None
                branch = buf[end]
                pos = end + 1
                if branch == 2:  # string
                    n = buf[pos]
                    pos += 1
                    if n >= 0x80:
                        n, pos = _varint(buf, pos - 1)
                    if n & 1:
                        return None
                    end = pos + (n >> 1)
                    if end == pos:
                        skipped = [name] if skipped is None else [*skipped, name]
                        continue
                    text = buf[pos:end].decode()
                    pos = end
                elif branch == 0:  # null
                    skipped = [name] if skipped is None else [*skipped, name]
                    continue
                elif branch == 4:  # long
                    z = buf[pos]
                    pos += 1
                    if z >= 0x80:
                        z, pos = _varint(buf, pos - 1)
                        if z < 0:
                            return None
                    text = str((z >> 1) ^ -(z & 1))
                elif branch == 6:  # double
                    number = _DOUBLE(buf, pos)[0]
                    pos += 8
                    if number != number or number in (_INF, -_INF):
                        return None  # invalid_value, raised by the general path
                    text = repr(number)
                elif branch == 8:  # boolean
                    b = buf[pos]
                    pos += 1
                    if b > 1:
                        return None
                    text = "true" if b else "false"
                else:
                    return None
                attributes[name] = text
        if pos != len(buf) or not attributes:
            return None  # trailing bytes or nothing to send
        # Maybe too large (4 UTF-8 bytes per character at most): left to the general path.
        # A record renders to at most 2.5 characters per byte (a boolean's "false" from its
        # branch and value bytes), so only long records need their characters counted.
        if (
            len(buf) * 10 > MAX_PROFILE_BYTES
            and (sum(map(len, attributes)) + sum(map(len, attributes.values()))) * 4
            > MAX_PROFILE_BYTES
        ):
            return None
        # A name met twice keeps its last value at its first place, as fastavro's dict and
        # the general path's loop do; a null or empty one among them is left to that path.
        if skipped is not None and (
            len(set(skipped)) < len(skipped) or any(s in attributes for s in skipped)
        ):
            return None
        # tuple.__new__ skips the NamedTuple's Python-level __new__ (~0.7 us an event).
        return _new(
            ProfileUpdate,
            (id_type, profile_id, attributes, priority, occurred_at, tp, offset, source, event_id),
        )
