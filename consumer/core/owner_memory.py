"""The owner's memory: per profile and attribute, the ``occurred_at`` of the newest value
sent, kept in the compacted changelog topic so that a new owner knows it after a rebalance.

``LoggedCarry`` is the carry-forward (consumer/core/carry.py) that also writes, for every
row of a batch as it is cut, one changelog record: key = the profile's repartition key
(so the record lands in the changelog partition of the same number as the profile's
repartition partition), value = ``encode_stamps`` of every attribute sent for it so far.
The repartition offsets of a batch are committed only after those writes are
acknowledged (``consumer/core/ownership.py`` holds them back), so whatever a committed
offset let go of is in the changelog. Writing at the cut, before Target answers, can only
make the memory newer than Target's state for a batch that then fails; its events are not
committed and are read again, so they still win (a value is refused only when strictly
older).

Changelog value, version 1: ``u8 version``, ``varint count``, then per attribute ``varint
length + percent-encoded name`` and the zigzag varint ``occurred_at``. A tombstone (no
value) forgets a profile. Pure logic apart from the ``send`` callable.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import unquote

from consumer.core.buffer import SOURCE_BITS, Row
from consumer.core.carry import CarryForward
from consumer.core.internal_format import record_key
from consumer.core.model import IdType
from consumer.target.wire import ESCAPE_TABLE

VERSION = 1

Send = Callable[[bytes, bytes], None]


# Encoded attribute name -> its length varint and bytes; bounded (names are a producer's
# choice). A cut writes one record per row, on the loop thread: this is its hot path.
_NAMES: dict[str, bytes] = {}
_NAMES_MAX = 100_000


def encode_stamps(stamps: dict[str, int]) -> bytes:
    out = bytearray((VERSION,))
    _varint(out, len(stamps))
    names = _NAMES
    for name, t in stamps.items():
        head = names.get(name)
        if head is None:
            b = name.encode()
            part = bytearray()
            _varint(part, len(b))
            head = bytes(part) + b
            if len(names) < _NAMES_MAX:
                names[name] = head
        out += head
        z = (t << 1) ^ (t >> 63)  # _varint inlined
        while z > 0x7F:
            out.append((z & 0x7F) | 0x80)
            z >>= 7
        out.append(z)
    return bytes(out)


def decode_stamps(value: bytes) -> dict[str, int]:
    """Raises ``ValueError`` on a version this release does not read or on bad bytes."""
    if not value or value[0] != VERSION:
        raise ValueError(f"changelog record version {value[:1]!r} is not 1")
    pos = 1
    count, pos = _read_varint(value, pos)
    stamps: dict[str, int] = {}
    for _ in range(count):
        n, pos = _read_varint(value, pos)
        name = value[pos : pos + n].decode()
        pos += n
        z, pos = _read_varint(value, pos)
        stamps[name] = (z >> 1) ^ -(z & 1)
    if pos != len(value):
        raise ValueError("bytes left over in a changelog record")
    return stamps


def parse_key(key: bytes) -> tuple[IdType, str]:
    """``record_key``'s inverse: (id type, encoded profile id as the batcher keys rows)."""
    id_type, sep, profile_id = key.decode().partition(":")
    if not sep:
        raise ValueError("a changelog key is <id_type>:<profile_id>")
    return IdType(id_type), profile_id.translate(ESCAPE_TABLE)


def _varint(out: bytearray, n: int) -> None:
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, pos


class LoggedCarry(CarryForward):
    """Carry-forward whose memory of what was sent is also written to the changelog."""

    def __init__(self, max_profiles: int, send: Send) -> None:
        super().__init__(max_profiles)
        self._send = send
        self.restored_profiles = 0

    def remember(
        self, batch_id: int, id_type: IdType, names: list[str], rows: dict[str, Row]
    ) -> None:
        send, guard_of, bits = self._send, self.guard, SOURCE_BITS
        for id_enc, row in rows.items():
            guard = guard_of(id_type, id_enc)
            # stamp_time inlined (``>> SOURCE_BITS``): this runs for every row of a cut.
            stamps = {name: sent[1] >> bits for name, sent in guard.items()} if guard else {}
            for char, value in zip(row.cols, row.stamps, strict=True):
                stamps[names[ord(char)]] = value >> bits
            send(record_key(id_type, unquote(id_enc)), encode_stamps(stamps))
        super().remember(batch_id, id_type, names, rows)

    def restore(self, key: bytes, value: bytes) -> None:
        """Merge one changelog record into the guard (the newest ``occurred_at`` wins)."""
        id_type, id_enc = parse_key(key)
        stamps = decode_stamps(value)
        self.restore_guard(id_type, id_enc, stamps)
        self.restored_profiles += 1
