"""The contract reader (decoding, validation and rendering in one pass) against the general
path it replaces for contract records: fastavro's decoder, then the built-in mapping.

The oracle is the general path itself, built here from its parts (``Decoder`` + the
built-in entry's ``apply``), not through ``RecordMapper``. For every record, generated or
hostile, both must give the same update (attributes in the same order), the same skip, or
a ``PoisonError`` of the same class and reason.
"""

from __future__ import annotations

import io
import json
import math
import struct
from pathlib import Path
from typing import Any

import fastavro
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from consumer.core.decode import Decoder, load_schema
from consumer.core.model import ProfileUpdate, TopicPartition
from consumer.errors import PoisonError
from consumer.mapping import RecordMapper, load_builtin, load_file
from consumer.mapping.contract_reader import ContractReader

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
CONTRACT = load_schema(SCHEMAS / "profile_change.avsc")
PARSED = fastavro.parse_schema(json.loads((SCHEMAS / "profile_change.avsc").read_text("utf-8")))
TP = TopicPartition("pos.profile-changes", 3)

_ENTRY = load_builtin().entries[0]
_DECODER = Decoder(CONTRACT, writer_schema=CONTRACT)


def general(value: bytes) -> Any:
    """The general path's outcome: the update or skip, or (class, reason) of its poison."""
    try:
        return _ENTRY.apply(_DECODER.decode(value), TP, 7, 1_700_000_000_000)
    except PoisonError as exc:
        return (type(exc), exc.reason)


def new_mapper() -> tuple[RecordMapper, list[bytes]]:
    """A mapper of the built-in contract, and the records its contract reader handed on."""
    mapper = RecordMapper(load_builtin(), None)
    handed_on: list[bytes] = []
    reader = mapper._reader(TP.topic)
    assert isinstance(reader.__self__, ContractReader)  # type: ignore[attr-defined]
    contract: ContractReader = reader.__self__  # type: ignore[attr-defined]
    fallback = contract.general

    def counted(tp: TopicPartition, offset: int, value: bytes | None, ts: int | None) -> Any:
        handed_on.append(value or b"")
        return fallback(tp, offset, value, ts)

    contract.general = counted
    return mapper, handed_on


def fast(mapper: RecordMapper, value: bytes) -> Any:
    try:
        return mapper.map(TP, 7, value, 1_700_000_000_000)
    except PoisonError as exc:
        return (type(exc), exc.reason)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, ProfileUpdate) and isinstance(b, ProfileUpdate):
        return a == b and list(a.attributes.items()) == list(b.attributes.items())
    return bool(a == b)


def avro(event: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, PARSED, event)
    return buf.getvalue()


# Texts that reach every check: control characters, '+' and '/', spaces, non-ASCII,
# the "profile." prefix, lengths around Target's limits.
_texts = st.one_of(
    st.text(max_size=12),
    st.text(alphabet="ab+/ \t\n\x00é東,", max_size=8),
    st.sampled_from(["", " ", "profile.", "profile.x", "x", "a" * 128, "a" * 129, "b" * 257]),
    st.integers(250, 300).map(lambda n: "c" * n),
)
_values = st.one_of(
    st.none(),
    _texts,
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.1, -0.0, 1e300, 5e-324, float("nan"), float("inf")]),
)
_events = st.fixed_dictionaries(
    {
        "event_id": _texts,
        "source": st.sampled_from(["POS", "CRM", "OTHER"]),
        "occurred_at": st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(-5, 5)),
        "profile": st.fixed_dictionaries(
            {"id_type": st.sampled_from(["THIRD_PARTY_ID", "PC_ID"]), "id": _texts}
        ),
        "priority": st.sampled_from(["NORMAL", "URGENT"]),
        "attributes": st.dictionaries(_texts, _values, max_size=6),
    }
)

ORDINARY = {
    "event_id": "0b6c7f3e-2f7a-4f57-9e2b-6f9d2d8f6a11",
    "source": "CRM",
    "occurred_at": 1_767_225_600_000,
    "profile": {"id_type": "THIRD_PARTY_ID", "id": "crm-0000042"},
    "priority": "URGENT",
    "attributes": {"tier": "gold", "points": 1200, "optIn": True, "amount": 42.5, "gone": None},
}


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_events)
@example({**ORDINARY, "attributes": {"a": "1", "profile.a": "2"}})  # one name, twice
@example({**ORDINARY, "attributes": {"a": None, "profile.a": "2"}})
@example({**ORDINARY, "attributes": {"a": "", "profile.a": None}})
@example({**ORDINARY, "attributes": {"big": "x" * 70_000}})  # over 64 KB
@example({**ORDINARY, "attributes": {"e": "é" * 5_000}})  # counted in bytes, under
def test_generated_records_read_as_the_general_path_reads_them(event: dict[str, Any]) -> None:
    mapper, _ = new_mapper()
    value = avro(event)
    assert same(fast(mapper, value), general(value))


def _damaged(value: bytes, data: st.DataObject) -> bytes:
    how = data.draw(st.sampled_from(["cut", "flip", "insert", "append", "replace"]))
    at = data.draw(st.integers(0, len(value)))
    if how == "cut":
        return value[:at]
    if how == "append":
        return value + data.draw(st.binary(min_size=1, max_size=4))
    if how == "insert":
        return value[:at] + data.draw(st.binary(min_size=1, max_size=3)) + value[at:]
    if how == "replace":
        return value[:at] + data.draw(st.binary(max_size=len(value) - at))
    at = min(at, len(value) - 1)
    return value[:at] + bytes([value[at] ^ data.draw(st.integers(1, 255))]) + value[at + 1 :]


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_events, st.data())
def test_damaged_records_are_poison_to_both_or_read_alike(
    event: dict[str, Any], data: st.DataObject
) -> None:
    mapper, _ = new_mapper()
    value = _damaged(avro(event), data)
    assert same(fast(mapper, value), general(value))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_read_alike(value: bytes) -> None:
    mapper, _ = new_mapper()
    assert same(fast(mapper, value), general(value))


def _zigzag(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _string(s: str | bytes) -> bytes:
    raw = s.encode() if isinstance(s, str) else s
    return _zigzag(len(raw)) + raw


def _head(*, source: int = 1, id_type: int = 0, priority: int = 0, occurred: bytes = b"") -> bytes:
    return (
        _string("e-1")
        + _zigzag(source)
        + (occurred or _zigzag(1_767_225_600_000))
        + _zigzag(id_type)
        + _string("crm-1")
        + _zigzag(priority)
    )


_ENTRY_TIER = _string("tier") + _zigzag(1) + _string("gold")
HOSTILE = [
    # the map as one block with its byte size (a negative count): legal Avro
    _head() + _zigzag(-1) + _zigzag(len(_ENTRY_TIER)) + _ENTRY_TIER + b"\x00",
    # two blocks
    _head() + _zigzag(1) + _ENTRY_TIER + _zigzag(1) + _string("b") + _zigzag(2) + _zigzag(-5)
    + b"\x00",
    # the same raw name twice
    _head() + _zigzag(2) + _ENTRY_TIER + _string("tier") + _zigzag(0) + b"\x00",
    _head() + _zigzag(2) + _string("tier") + _zigzag(0) + _ENTRY_TIER + b"\x00",
    # enum and union indexes out of range, negative
    _head(source=3) + _zigzag(1) + _ENTRY_TIER + b"\x00",
    _head(source=-1) + _zigzag(1) + _ENTRY_TIER + b"\x00",
    _head(id_type=2) + _zigzag(1) + _ENTRY_TIER + b"\x00",
    _head(priority=-1) + _zigzag(1) + _ENTRY_TIER + b"\x00",
    _head() + _zigzag(1) + _string("t") + _zigzag(5) + b"\x00" + b"\x00",
    _head() + _zigzag(1) + _string("t") + _zigzag(-1) + b"\x00" + b"\x00",
    # a boolean byte other than 0 and 1
    _head() + _zigzag(1) + _string("t") + _zigzag(4) + b"\x02" + b"\x00",
    # varints of 10 and 11 bytes, and a non-canonical (padded) one
    _head(occurred=b"\xff" * 9 + b"\x01") + _zigzag(1) + _ENTRY_TIER + b"\x00",
    _head(occurred=b"\xff" * 10 + b"\x01") + _zigzag(1) + _ENTRY_TIER + b"\x00",
    _head(occurred=b"\x82\x80\x80\x00") + _zigzag(1) + _ENTRY_TIER + b"\x00",
    _head() + _zigzag(1) + _string("t") + _zigzag(2) + b"\xff" * 9 + b"\x7f" + b"\x00",
    # negative lengths
    _string("e") + _zigzag(0) + _zigzag(1) + _zigzag(0) + _zigzag(-3) + b"abc",
    _head() + _zigzag(1) + _zigzag(-2) + b"ab" + _zigzag(0) + b"\x00",
    # invalid UTF-8, surrogates, an overlong encoding
    _head() + _zigzag(1) + _string("t") + _zigzag(1) + _string(b"\xff\xfe") + b"\x00",
    _head() + _zigzag(1) + _string(b"\xed\xa0\x80") + _zigzag(1) + _string("x") + b"\x00",
    _head() + _zigzag(1) + _string("t") + _zigzag(1) + _string(b"\xc0\xaf") + b"\x00",
    # non-finite doubles, a truncated double
    _head() + _zigzag(1) + _string("t") + _zigzag(3) + struct.pack("<d", math.nan) + b"\x00",
    _head() + _zigzag(1) + _string("t") + _zigzag(3) + struct.pack("<d", -math.inf) + b"\x00",
    _head() + _zigzag(1) + _string("t") + _zigzag(3) + b"\x00\x00\x00",
    # no attribute at all, only nulls, and empty
    _head() + b"\x00",
    _head() + _zigzag(1) + _string("t") + _zigzag(0) + b"\x00",
    b"",
    b"\x00",
]  # fmt: skip


def test_hand_made_hostile_records_read_alike() -> None:
    mapper, _ = new_mapper()
    for value in HOSTILE:
        assert same(fast(mapper, value), general(value)), value


def test_ordinary_records_are_read_without_the_general_path() -> None:
    mapper, handed_on = new_mapper()
    value = avro(ORDINARY)
    update = mapper.map(TP, 7, value, None)
    assert handed_on == []
    assert isinstance(update, ProfileUpdate)
    assert update.attributes == {
        "tier": "gold",
        "points": "1200",
        "optIn": "true",
        "amount": "42.5",
    }
    assert same(update, general(value))


def test_other_writers_and_mappings_keep_the_general_path() -> None:
    v2 = json.loads((SCHEMAS / "profile_change_v2.avsc").read_text("utf-8"))
    newer = RecordMapper(load_builtin(), None, writer_schema=v2)
    assert not isinstance(getattr(newer._reader(TP.topic), "__self__", None), ContractReader)
    user = RecordMapper(load_file(SCHEMAS / "examples" / "pos_purchase.mapping.yaml"), None)
    assert not isinstance(getattr(user._reader("pos.purchases"), "__self__", None), ContractReader)
