"""The compact format of the repartition topic: one validated profile update per record.

The repartition stage (consumer/kafka/repartition.py) writes what the intake already
decoded, mapped, validated and rendered, so the owner of a profile neither decodes Avro nor
runs a mapping again. Key: ``<id_type>:<profile_id>`` in UTF-8 (``record_key``). Value,
version 1 (all integers are unsigned LEB128 varints; ``occurred_at`` zigzag-encoded;
strings are a varint byte length then UTF-8)::

    u8      version (1)
    u8      flags: bit 0 id type (0 thirdPartyId, 1 pcId), bit 1 URGENT
    varint  occurred_at, epoch milliseconds (zigzag)
    string  source topic
    varint  source partition
    varint  source offset
    string  profile id
    string  source label (POS, CRM, ...)
    string  event id ("" when none)
    varint  attribute count, then per attribute: string name, string value

Values are Target strings already (rendered by validation or the mapping); the batcher
percent-encodes them as it does for every event. The source coordinates keep the
newest-value rule (guarantee 2 in docs/guarantees.md): within one source partition the
later record wins, across partitions the later ``occurred_at``.

Rolling upgrades: ``READERS`` maps every version this release reads to its reader. A
release that writes version N+1 must keep the reader of N, and is rolled out in two steps
(first a release that reads N+1 but writes N, then the writer switch), so no replica ever
meets a version it cannot read. A version it does not know is poison (dead-lettered with
reason ``internal_format``), never guessed at.
"""

from __future__ import annotations

from collections.abc import Callable

from consumer.core.model import IdType, Priority, ProfileUpdate, TopicPartition
from consumer.errors import DecodeError

VERSION = 1
_URGENT = 2
_PCID = 1

# Bounded caches of what repeats across records (attribute names, source topics and
# partitions, source labels, the high bits of stamps and offsets). Each is cleared, not
# evicted, when full: a rebuild costs one ordinary encode or decode per entry. The high
# bits of stamps move every ~8 s, an offset's every 16,384 records: _NUMBERS_MAX is hours.
_CACHE_MAX = 100_000
_NUMBERS_MAX = 4_096
_NAMES: dict[bytes, str] = {}  # decoder: name bytes -> one shared str per name
_TOPICS: dict[bytes, TopicPartition] = {}  # decoder: topic string + partition varint
_NAME_BYTES: dict[str, bytes] = {}  # encoder: name -> length varint + UTF-8
_TP_BYTES: dict[TopicPartition, bytes] = {}  # encoder: topic string + partition varint
_HIGH: dict[int, bytes] = {}  # encoder: varint of ``n >> 14`` for n >= 2**14
# decoder: a stamp varint's bytes after its first two (complete varints only) -> z >> 14,
# and how many such bytes the last stamp had (the width tried first)
_STAMPS: dict[bytes, int] = {}
_stamp_width = [4]

_SMALL = [bytes((i,)) for i in range(0x80)]
# The low 14 bits of a varint of at least three bytes: two bytes, both continued.
_LOW14 = [bytes((i & 0x7F | 0x80, i >> 7 | 0x80)) for i in range(0x4000)]
_HEADS = {
    (id_type, priority): bytes(
        (VERSION, (_PCID if id_type is IdType.PC_ID else 0)
         | (_URGENT if priority is Priority.URGENT else 0))
    )
    for id_type in IdType
    for priority in Priority
}  # fmt: skip
_KEY_PREFIX = {id_type: f"{id_type.value}:".encode() for id_type in IdType}


def record_key(id_type: IdType, profile_id: str) -> bytes:
    """The repartition (and changelog) key: one partition per profile, whatever its source."""
    return _KEY_PREFIX[id_type] + profile_id.encode()


def _varint_slow(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _varint(n: int) -> bytes:
    """Unsigned LEB128 of ``0 <= n < 2**64``; stamps and offsets mostly share their high bits."""
    if n < 0x80:
        return _SMALL[n]
    if n < 0x4000:
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    high = _HIGH.get(n >> 14)
    if high is None:
        if len(_HIGH) >= _NUMBERS_MAX:
            _HIGH.clear()
        high = _HIGH[n >> 14] = _varint_slow(n >> 14)
    return _LOW14[n & 0x3FFF] + high


def _string(s: str) -> bytes:
    b = s.encode()
    n = len(b)
    return (_SMALL[n] if n < 0x80 else _varint(n)) + b


def _tp_bytes(tp: TopicPartition) -> bytes:
    if len(_TP_BYTES) >= _CACHE_MAX:
        _TP_BYTES.clear()
    out = _TP_BYTES[tp] = _string(tp.topic) + _varint(tp.partition)
    return out


def encode_keyed(update: ProfileUpdate) -> tuple[bytes, bytes]:
    """``(record_key, encode)`` of ``update`` in one pass: the forward stage's hot path."""
    id_type, profile_id, attributes, priority, t, tp, offset, source, event_id = update
    pid = profile_id.encode()
    n = len(pid)
    parts = [
        _HEADS[id_type, priority], _varint((t << 1) ^ (t >> 63)),
        _TP_BYTES.get(tp) or _tp_bytes(tp), _varint(offset),
        _SMALL[n] if n < 0x80 else _varint(n), pid,
        _NAME_BYTES.get(source) or _name_bytes(source),
        _string(event_id) if event_id else b"\x00",
        _SMALL[len(attributes)] if len(attributes) < 0x80 else _varint(len(attributes)),
    ]  # fmt: skip
    append = parts.append
    names = _NAME_BYTES
    small = _SMALL
    for name, value in attributes.items():
        append(names.get(name) or _name_bytes(name))
        vb = value.encode()
        n = len(vb)
        append(small[n] if n < 0x80 else _varint(n))
        append(vb)
    return _KEY_PREFIX[id_type] + pid, b"".join(parts)


def encode(update: ProfileUpdate) -> bytes:
    """``update`` as a version-1 record value."""
    return encode_keyed(update)[1]


def _name_bytes(name: str) -> bytes:
    if len(_NAME_BYTES) >= _CACHE_MAX:
        _NAME_BYTES.clear()
    out = _NAME_BYTES[name] = _string(name)
    return out


def _uvarint(buf: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it."""
    n = 0
    shift = 0
    while True:
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            return n, pos
        shift += 7


def _read_v1(buf: bytes) -> ProfileUpdate:
    """Version 1, one pass with a local position (the owner's hot path).

    One-byte varints (string lengths, counts, partitions) are read inline. String ends are
    not checked one by one: a slice past the end is only short, and ``pos`` (which counts
    what the lengths claim) then ends beyond ``len(buf)``, which the last check reports.
    """
    flags = buf[1]
    b2 = buf[2]
    b3 = buf[3]
    z_high = _STAMPS.get(buf[4 : 4 + _stamp_width[0]]) if b2 & b3 & 0x80 else None
    if z_high is not None:  # the stamp's bits above the lowest 14 are those of a recent record
        z = (b2 & 0x7F) | (b3 & 0x7F) << 7 | z_high << 14
        pos = 4 + _stamp_width[0]
    else:
        z, pos = _stamp(buf)
    start = pos
    n = buf[pos]
    if n < 0x80:
        pos += 1 + n
    else:
        n, pos = _uvarint(buf, pos)
        pos += n
    if buf[pos] < 0x80:
        pos += 1
    else:
        pos = _uvarint(buf, pos)[1]
    tp_raw = buf[start:pos]
    tp = _TOPICS.get(tp_raw)
    if tp is None:
        tp = _topic_partition(buf, start, tp_raw)
    if buf[pos] < 0x80:
        offset = buf[pos]
        pos += 1
    else:
        offset, pos = _uvarint(buf, pos)
    n = buf[pos]
    if n < 0x80:
        pos += 1
    else:
        n, pos = _uvarint(buf, pos)
    profile_id = buf[pos : pos + n].decode()
    pos += n
    n = buf[pos]
    if n < 0x80:
        pos += 1
    else:
        n, pos = _uvarint(buf, pos)
    source_raw = buf[pos : pos + n]
    source = _NAMES.get(source_raw) or _name(source_raw)
    pos += n
    n = buf[pos]
    if n < 0x80:
        pos += 1
    else:
        n, pos = _uvarint(buf, pos)
    event_id = buf[pos : pos + n].decode()
    pos += n
    count = buf[pos]
    if count < 0x80:
        pos += 1
    else:
        count, pos = _uvarint(buf, pos)
    attributes: dict[str, str] = {}
    names = _NAMES
    for _ in range(count):
        n = buf[pos]
        if n < 0x80:
            pos += 1
        else:
            n, pos = _uvarint(buf, pos)
        name_raw = buf[pos : pos + n]
        pos += n
        name = names.get(name_raw)
        if name is None:
            name = _name(name_raw)
        n = buf[pos]
        if n < 0x80:
            pos += 1
        else:
            n, pos = _uvarint(buf, pos)
        attributes[name] = buf[pos : pos + n].decode()
        pos += n
    if pos != len(buf):
        if pos > len(buf):
            raise ValueError("a string runs past the end")
        raise ValueError("bytes left over after the last attribute")
    return ProfileUpdate(
        IdType.PC_ID if flags & _PCID else IdType.THIRD_PARTY_ID,
        profile_id,
        attributes,
        Priority.URGENT if flags & _URGENT else Priority.NORMAL,
        (z >> 1) ^ -(z & 1),
        tp,
        offset,
        source,
        event_id,
    )


def _stamp(buf: bytes) -> tuple[int, int]:
    """The zigzagged stamp at 2 and the position after it; remembers its high bits."""
    z, pos = _uvarint(buf, 2)
    if pos > 4:  # three bytes or more: bytes 4.. are the varint of z >> 14
        if len(_STAMPS) >= _NUMBERS_MAX:
            _STAMPS.clear()
        _STAMPS[buf[4:pos]] = z >> 14
        _stamp_width[0] = pos - 4
    return z, pos


def _topic_partition(buf: bytes, start: int, tp_raw: bytes) -> TopicPartition:
    n, pos = _uvarint(buf, start)
    topic = buf[pos : pos + n].decode()
    tp = TopicPartition(topic, _uvarint(buf, pos + n)[0])
    if len(_TOPICS) >= _CACHE_MAX:
        _TOPICS.clear()
    _TOPICS[tp_raw] = tp
    return tp


def _name(name_raw: bytes) -> str:
    name = name_raw.decode()
    if len(_NAMES) >= _CACHE_MAX:
        _NAMES.clear()
    _NAMES[name_raw] = name
    return name


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
