"""The owner's memory: per profile and attribute, the ``occurred_at`` of the newest value
sent, kept in the compacted changelog topic so that a new owner knows it after a rebalance.

``LoggedCarry`` is the carry-forward (consumer/core/carry.py) that also writes, for every
row of a batch as its cut is finished (in steps, before the upload), one changelog record:
key = the profile's repartition key (so the record lands in the changelog partition of the
same number as the profile's repartition partition), value = ``encode_stamps`` of every
attribute sent for it so far.
The repartition offsets of a batch are committed only after those writes are
acknowledged (``consumer/core/ownership.py`` holds them back), so whatever a committed
offset let go of is in the changelog. Writing at the cut, before Target answers, can only
make the memory newer than Target's state for a batch that then fails; its events are not
committed and are read again, so they still win (a value is refused only when strictly
older).

Changelog value, version 2: ``u8 version``, ``varint count``, then per attribute ``varint
length + percent-encoded name``, the zigzag varint ``occurred_at`` and the varint UTF-8
size of the value sent (so a new owner knows the profile's size in Target for the 64 KB
rule, consumer/core/held.py). Version 1 (no sizes, earlier releases) is still read: its
values count as empty. A tombstone (no value) forgets a profile. Pure logic apart from
the ``send`` callable.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import unquote

from consumer.core.buffer import SOURCE_BITS, Row, raw_size, unpack_stamps
from consumer.core.carry import CarryForward
from consumer.core.internal_format import record_key
from consumer.core.model import IdType
from consumer.target.wire import ESCAPE_TABLE

VERSION = 2

Send = Callable[[bytes, bytes], None]


# Encoded attribute name -> its length varint and bytes; bounded (names are a producer's
# choice). A cut writes one record per row, on the loop thread: this is its hot path.
_NAMES: dict[str, bytes] = {}
_NAMES_MAX = 100_000


def encode_stamps(
    stamps: dict[str, int], sizes: dict[str, int] | None = None, version: int = VERSION
) -> bytes:
    """``stamps``: occurred_at by encoded name; ``sizes``: UTF-8 bytes of each value
    (left out in version 1)."""
    out = bytearray((version,))
    _varint(out, len(stamps))
    names = _NAMES
    get = (sizes or {}).get
    sized = version >= 2
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
        if sized:
            size = get(name, 0)
            if size < 0x80:  # one byte: the common case, without a call
                out.append(size)
            else:
                _varint(out, size)
    return bytes(out)


def decode_stamps(value: bytes) -> dict[str, int]:
    """occurred_at by encoded name. Raises ``ValueError`` on a version this release does
    not read or on bad bytes."""
    return decode_record(value)[0]


def decode_record(value: bytes) -> tuple[dict[str, int], dict[str, int]]:
    """(occurred_at, value size) by encoded name; sizes are empty in a version 1 record."""
    if not value or value[0] not in (1, VERSION):
        raise ValueError(f"changelog record version {value[:1]!r} is not 1 or 2")
    sized = value[0] == VERSION
    pos = 1
    count, pos = _read_varint(value, pos)
    stamps: dict[str, int] = {}
    sizes: dict[str, int] = {}
    for _ in range(count):
        n, pos = _read_varint(value, pos)
        name = value[pos : pos + n].decode()
        pos += n
        z, pos = _read_varint(value, pos)
        stamps[name] = (z >> 1) ^ -(z & 1)
        if sized:
            sizes[name], pos = _read_varint(value, pos)
    if pos != len(value):
        raise ValueError("bytes left over in a changelog record")
    return stamps, sizes


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

    def __init__(
        self, max_profiles: int, send: Send, max_bytes: int | None = None, version: int = VERSION
    ) -> None:
        super().__init__(max_profiles, max_bytes)
        self._send = send
        self._version = version
        self.restored_profiles = 0

    def remember(
        self,
        batch_id: int,
        id_type: IdType,
        names: list[str],
        rows: dict[str, Row],
        final: bool = True,
    ) -> None:
        version = self._version
        for id_enc, row in rows.items():
            stamps: dict[str, int] = {}
            sizes: dict[str, int] = {}
            guard = self.guard(id_type, id_enc)
            if guard:
                # raw_size and stamp_time inlined: this runs for every row of every batch.
                for name, (value, at) in guard.items():
                    stamps[name] = at >> SOURCE_BITS
                    sizes[name] = len(value) - 2 * value.count("%")
                if guard.unknown:
                    for name, held in guard.unknown.items():
                        sizes[name] = held - raw_size(name)
            values = row.vals.split(",")
            for char, value, at in zip(
                row.cols, values[1:], unpack_stamps(row.stamps), strict=True
            ):
                name = names[ord(char)]
                stamps[name] = at >> SOURCE_BITS
                sizes[name] = len(value) - 2 * value.count("%")
            self._send(record_key(id_type, unquote(id_enc)), encode_stamps(stamps, sizes, version))
        super().remember(batch_id, id_type, names, rows, final)

    def restore(self, key: bytes, value: bytes) -> None:
        """Merge one changelog record into the guard (the newest ``occurred_at`` wins)."""
        id_type, id_enc = parse_key(key)
        stamps, sizes = decode_record(value)
        self.restore_guard(id_type, id_enc, stamps, sizes)
        self.restored_profiles += 1
