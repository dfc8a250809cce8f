"""The ProfileChange contract as a mapping: one code path, the same result as before.

The bundled mapping file must turn every event into exactly what
``consumer.core.validate.to_update`` produces: same id, type, rendered attributes, priority,
time, source and event id; the same skips; the same reasons for what it rejects.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.core.model import TopicPartition
from consumer.core.validate import to_update
from consumer.errors import ValidationError
from consumer.mapping import BUILTIN_MAPPING, Skip, SkipReason, load_builtin
from sampler.events import generate_events

TP = TopicPartition("crm.profile-changes", 1)
BUILTIN = load_builtin()
START_MS = 1_767_225_600_000


def mapped(record: dict[str, Any], offset: int = 9) -> Any:
    entry = BUILTIN.for_topic(TP.topic)
    assert entry is not None
    return entry.apply(record, TP, offset, None)


def test_the_bundled_file_is_the_contract_of_every_topic() -> None:
    assert BUILTIN_MAPPING.is_file()
    for topic in ("pos.profile-changes", "crm.profile-changes", "anything"):
        assert BUILTIN.for_topic(topic) is BUILTIN.entries[0]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sample_stream_maps_exactly_as_to_update(seed: int) -> None:
    compared = skipped = 0
    for offset, event in enumerate(generate_events(5_000, 500, 0.05, 0.1, 0.6, seed, START_MS)):
        expected = to_update(event, TP, offset)
        outcome = mapped(event, offset)
        if expected is None:
            assert outcome == Skip(SkipReason.NO_CHANGE)
            skipped += 1
        else:
            assert outcome == expected
            assert list(outcome.attributes) == list(expected.attributes)  # same order too
            compared += 1
    assert compared > 4_000  # the stream really exercised the comparison


values = st.one_of(
    st.none(),
    st.text(max_size=20),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)
names = st.one_of(
    st.text(min_size=0, max_size=12), st.sampled_from(["profile.tier", "tier", "profile."])
)


@settings(max_examples=400, deadline=None)
@given(
    attributes=st.dictionaries(names, values, max_size=6),
    pid=st.one_of(st.text(max_size=8), st.just("crm-1")),
    id_type=st.sampled_from(["THIRD_PARTY_ID", "PC_ID"]),
    occurred_at=st.integers(min_value=-5, max_value=2**40),
    priority=st.sampled_from(["NORMAL", "URGENT"]),
)
def test_any_event_gives_the_same_update_or_the_same_rejection(
    attributes: dict[str, Any], pid: str, id_type: str, occurred_at: int, priority: str
) -> None:
    event = {
        "event_id": "e-1",
        "source": "CRM",
        "occurred_at": occurred_at,
        "profile": {"id_type": id_type, "id": pid},
        "priority": priority,
        "attributes": attributes,
    }
    try:
        expected: Any = to_update(event, TP, 3)
    except ValidationError as exc:
        with pytest.raises(ValidationError) as caught:
            mapped(event, 3)
        assert caught.value.reason == exc.reason
        return
    outcome = mapped(event, 3)
    assert outcome == (Skip(SkipReason.NO_CHANGE) if expected is None else expected)
