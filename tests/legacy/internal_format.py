"""The repartition record codec as it was before it was made cheaper (issue 14).

Kept only as a test oracle (tests/unit/test_internal_format_oracle.py): the current
codec in consumer/core/internal_format.py must write the same bytes and read the same
updates, so replicas of both releases share a repartition topic. Not imported by the
service; the format itself is documented in consumer/core/internal_format.py.
"""

from __future__ import annotations

from collections.abc import Callable

from consumer.core.model import IdType, Priority, ProfileUpdate, TopicPartition
from consumer.errors import DecodeError

VERSION = 1
_URGENT = 2
_PCID = 1

# Interned attribute names and source topics: rows share one string object per name.
_NAMES: dict[bytes, str] = {}
_NAMES_MAX = 100_000
_TOPICS: dict[tuple[bytes, int], TopicPartition] = {}


def record_key(id_type: IdType, profile_id: str) -> bytes:
    """The repartition (and changelog) key: one partition per profile, whatever its source."""
    return f"{id_type.value}:{profile_id}".encode()


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL = [bytes((i,)) for i in range(0x80)]


def encode(update: ProfileUpdate) -> bytes:
    """``update`` as a version-1 record value (one join of small parts: the hot path)."""
    flags = (_PCID if update.id_type is IdType.PC_ID else 0) | (
        _URGENT if update.priority is Priority.URGENT else 0
    )
    t = update.occurred_at
    topic = update.tp.topic.encode()
    pid = update.profile_id.encode()
    source = update.source.encode()
    event_id = update.event_id.encode()
    v = _varint
    parts = [
        _SMALL[VERSION], _SMALL[flags], v((t << 1) ^ (t >> 63)),
        v(len(topic)), topic, v(update.tp.partition), v(update.offset),
        v(len(pid)), pid, v(len(source)), source, v(len(event_id)), event_id,
        v(len(update.attributes)),
    ]  # fmt: skip
    append = parts.append
    for name, value in update.attributes.items():
        nb = name.encode()
        vb = value.encode()
        append(v(len(nb)))
        append(nb)
        append(v(len(vb)))
        append(vb)
    return b"".join(parts)


def _read_v1(buf: bytes) -> ProfileUpdate:
    """Version 1, one pass with a local position (the owner's hot path)."""
    pos = 2

    def varint() -> int:
        nonlocal pos
        b = buf[pos]
        pos += 1
        if b < 0x80:
            return b
        n = b & 0x7F
        shift = 7
        while True:
            b = buf[pos]
            pos += 1
            n |= (b & 0x7F) << shift
            if b < 0x80:
                return n
            shift += 7

    def raw() -> bytes:
        nonlocal pos
        n = varint()
        end = pos + n
        if end > len(buf):
            raise IndexError("string runs past the end")
        out = buf[pos:end]
        pos = end
        return out

    flags = buf[1]
    z = varint()
    occurred_at = (z >> 1) ^ -(z & 1)
    topic = raw()
    partition = varint()
    offset = varint()
    tp = _TOPICS.get((topic, partition))
    if tp is None:
        tp = _TOPICS[(topic, partition)] = TopicPartition(topic.decode(), partition)
    profile_id = raw().decode()
    source = raw().decode()
    event_id = raw().decode()
    attributes: dict[str, str] = {}
    names = _NAMES
    for _ in range(varint()):
        name_raw = raw()
        name = names.get(name_raw)
        if name is None:
            name = name_raw.decode()
            if len(names) < _NAMES_MAX:
                names[name_raw] = name
        attributes[name] = raw().decode()
    if pos != len(buf):
        raise ValueError("bytes left over after the last attribute")
    return ProfileUpdate(
        IdType.PC_ID if flags & _PCID else IdType.THIRD_PARTY_ID,
        profile_id,
        attributes,
        Priority.URGENT if flags & _URGENT else Priority.NORMAL,
        occurred_at,
        tp,
        offset,
        source,
        event_id,
    )


# Every version this release reads (see the module docstring on rolling upgrades).
READERS: dict[int, Callable[[bytes], ProfileUpdate]] = {1: _read_v1}


def decode(value: bytes | None) -> ProfileUpdate:
    """A record value of any version in ``READERS``; raises ``DecodeError`` otherwise."""
    if not value or len(value) < 2:
        raise DecodeError("internal_format", "empty or truncated repartition record")
    reader = READERS.get(value[0])
    if reader is None:
        raise DecodeError(
            "internal_format",
            f"repartition record version {value[0]} is not one this release reads "
            f"({sorted(READERS)}); upgrade every replica before the writers",
        )
    try:
        return reader(value)
    except (IndexError, ValueError, UnicodeDecodeError) as exc:
        raise DecodeError("internal_format", f"malformed repartition record: {exc}") from exc
