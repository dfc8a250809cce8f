"""The repartition codec writes and reads exactly what the codec before it did.

tests/legacy/internal_format.py keeps the codec as it was before it was made cheaper
(issue 14). Replicas of both releases share one repartition topic during a rolling upgrade,
so for every update the new writer must produce the old writer's bytes, and the new reader
must accept and reject the same records as the old reader and read the same updates.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.core import internal_format
from consumer.core.model import IdType, Priority, ProfileUpdate, TopicPartition
from consumer.errors import DecodeError
from tests.legacy import internal_format as legacy

# Short and long (length varint of two bytes) texts, non-ASCII included.
_text = st.one_of(st.text(max_size=12), st.text(min_size=60, max_size=200))
_attributes = st.one_of(
    st.dictionaries(_text, _text, max_size=6),
    # more than 127 attributes: a two-byte count
    st.integers(120, 140).map(lambda n: {f"a.{i}": "é" * (i % 3) for i in range(n)}),
)
_updates = st.builds(
    ProfileUpdate,
    id_type=st.sampled_from(IdType),
    profile_id=_text,
    attributes=_attributes,
    priority=st.sampled_from(Priority),
    occurred_at=st.one_of(
        st.integers(-(2**63), 2**63 - 1), st.integers(1_600_000_000_000, 1_800_000_000_000)
    ),
    tp=st.builds(
        TopicPartition,
        st.one_of(st.sampled_from(["pos.profile-changes", "crm.profile-changes"]), _text),
        st.one_of(st.integers(0, 200), st.integers(0, 2**31 - 1)),
    ),
    offset=st.one_of(st.integers(0, 20_000), st.integers(0, 2**63 - 1)),
    source=st.one_of(st.sampled_from(["POS", "CRM", "OTHER"]), _text),
    event_id=st.one_of(st.just(""), _text),
)


_CACHES = ("_NAMES", "_TOPICS", "_NAME_BYTES", "_TP_BYTES", "_HIGH", "_STAMPS")


def _read(module: object, value: bytes) -> ProfileUpdate | str:
    try:
        return module.decode(value)  # type: ignore[attr-defined,no-any-return]
    except DecodeError as exc:
        assert exc.reason == "internal_format"
        return "poison"


@settings(max_examples=400, deadline=None)
@given(update=_updates)
def test_the_writer_writes_the_old_bytes_and_both_readers_read_them(
    update: ProfileUpdate,
) -> None:
    old = legacy.encode(update)
    key, value = internal_format.encode_keyed(update)
    assert value == old
    assert internal_format.encode(update) == old
    assert key == legacy.record_key(update.id_type, update.profile_id)
    assert internal_format.record_key(update.id_type, update.profile_id) == key
    assert internal_format.decode(old) == legacy.decode(old) == update


@settings(max_examples=400, deadline=None)
@given(
    update=_updates,
    cut=st.integers(0, 400),
    flips=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=3),
    extra=st.binary(max_size=3),
)
def test_a_damaged_record_is_poison_to_both_readers_or_to_neither(
    update: ProfileUpdate, cut: int, flips: list[tuple[int, int]], extra: bytes
) -> None:
    damaged = bytearray(legacy.encode(update)[: max(cut, 1)] + extra)
    for at, byte in flips:
        damaged[at % len(damaged)] = byte
    value = bytes(damaged)
    assert _read(internal_format, value) == _read(legacy, value)


@settings(max_examples=60, deadline=None)
@given(updates=st.lists(_updates, min_size=3, max_size=8))
def test_full_caches_are_emptied_without_changing_a_byte(
    updates: list[ProfileUpdate],
) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(internal_format, "_CACHE_MAX", 2)
        patch.setattr(internal_format, "_NUMBERS_MAX", 2)
        for cache in _CACHES:
            patch.setattr(internal_format, cache, {})
        for update in updates + updates:
            value = internal_format.encode(update)
            assert value == legacy.encode(update)
            assert internal_format.decode(value) == update
        assert all(len(getattr(internal_format, cache)) <= 2 for cache in _CACHES)
