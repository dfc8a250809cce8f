"""From a decoded ProfileChange to a ProfileUpdate: the rendering rule and what is rejected."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from consumer.core.model import IdType, Priority, TopicPartition
from consumer.core.validate import (
    MAX_ID_LENGTH,
    MAX_NAME_LENGTH,
    MAX_PROFILE_BYTES,
    cell_risks,
    to_update,
)
from consumer.errors import ValidationError
from tests.utils import render

TP = TopicPartition("pos.profile-changes", 3)


def record(
    attributes: dict[str, Any],
    *,
    pid: Any = "crm-0001",
    id_type: str = "THIRD_PARTY_ID",
    occurred_at: Any = 1_700_000_000_000,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "event_id": "0b6c7f3e-2f7a-4f57-9e2b-6f9d2d8f6a11",
        "source": "POS",
        "occurred_at": occurred_at,
        "profile": {"id_type": id_type, "id": pid},
        "priority": "NORMAL",
        "attributes": attributes,
        **extra,
    }


def attrs_of(attributes: dict[str, Any]) -> dict[str, str]:
    update = to_update(record(attributes), TP, 7)
    assert update is not None
    return update.attributes


def reason_of(rec: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        to_update(rec, TP, 7)
    assert info.value.stage == "validate"
    return info.value.reason


# -- the rendering rule


def test_each_value_type_renders_by_the_documented_rule() -> None:
    assert attrs_of(
        {
            "tier": "gold",
            "note": '  spaced, "quoted" & 100% ',
            "points": 1520,
            "debt": -3,
            "big": 2**62,
            "spend": 1520.5,
            "ratio": 0.1,
            "third": 1 / 3,
            "huge": 1e16,
            "optIn": True,
            "optOut": False,
        }
    ) == {
        "tier": "gold",
        "note": '  spaced, "quoted" & 100% ',
        "points": "1520",
        "debt": "-3",
        "big": "4611686018427387904",
        "spend": "1520.5",
        "ratio": "0.1",
        "third": "0.3333333333333333",
        "huge": "1e+16",
        "optIn": "true",
        "optOut": "false",
    }


def test_a_boolean_is_not_rendered_as_a_number() -> None:
    # bool is a subclass of int in Python: True must not become "1".
    assert attrs_of({"a": True, "b": False, "c": 1, "d": 0}) == {
        "a": "true",
        "b": "false",
        "c": "1",
        "d": "0",
    }


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_a_double_renders_in_shortest_round_trip_form(value: float) -> None:
    rendered = attrs_of({"x": value})["x"]
    assert float(rendered) == value
    assert math.copysign(1, float(rendered)) == math.copysign(1, value)
    # Shortest: the significant digits cannot lose one and still read back the same.
    mantissa = rendered.split("e")[0].replace("-", "").replace(".", "").strip("0")
    if len(mantissa) > 1:
        shorter = f"{float(rendered):.{len(mantissa) - 2}e}"
        assert float(shorter) != value


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_a_long_renders_as_decimal(value: int) -> None:
    assert attrs_of({"n": value})["n"] == str(value)
    assert int(attrs_of({"n": value})["n"]) == value


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_non_finite_double_is_rejected(value: float) -> None:
    assert reason_of(record({"x": value})) == "invalid_value"


def test_an_unsupported_value_type_is_rejected() -> None:
    assert reason_of(record({"x": b"bytes"})) == "invalid_value"


def test_null_and_empty_string_change_nothing_and_are_dropped() -> None:
    assert attrs_of({"tier": "gold", "city": None, "note": ""}) == {"tier": "gold"}


@pytest.mark.parametrize("attributes", [{}, {"a": None}, {"a": None, "b": ""}, {"b": ""}])
def test_an_event_with_nothing_to_change_is_skipped(attributes: dict[str, Any]) -> None:
    assert to_update(record(attributes), TP, 7) is None


def test_the_profile_prefix_is_stripped_from_names() -> None:
    assert attrs_of({"profile.loyaltyTier": "gold", "city": "Lyon"}) == {
        "loyaltyTier": "gold",
        "city": "Lyon",
    }


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.text(st.characters(categories=["L", "M", "N", "P", "S"]), min_size=1, max_size=20),
        st.none() | st.text(max_size=10) | st.booleans() | st.integers() | st.floats(),
        max_size=6,
    )
)
def test_every_valid_value_renders_as_the_oracle_says(attributes: dict[str, Any]) -> None:
    assume(all(n.removeprefix("profile.") for n in attributes))
    assume(len({n.removeprefix("profile.") for n in attributes}) == len(attributes))
    assume(all(not (isinstance(v, float) and not math.isfinite(v)) for v in attributes.values()))
    expected = {
        n.removeprefix("profile."): r for n, v in attributes.items() if (r := render(v)) is not None
    }
    update = to_update(record(attributes), TP, 7)
    if not expected:
        assert update is None
    else:
        assert update is not None
        assert update.attributes == expected


# -- the rest of the update


def test_the_update_keeps_identity_position_priority_and_source() -> None:
    update = to_update(
        record({"a": "1"}, pid="0f1e2d3c4b5a69788796a5b4c3d2e1f0.17_0", id_type="PC_ID",
               priority="URGENT", occurred_at=123),
        TP,
        42,
    )  # fmt: skip
    assert update is not None
    assert update.id_type is IdType.PC_ID
    assert update.profile_id == "0f1e2d3c4b5a69788796a5b4c3d2e1f0.17_0"
    assert update.priority is Priority.URGENT
    assert update.occurred_at == 123
    assert (update.tp, update.offset) == (TP, 42)
    assert update.source == "POS"
    assert update.event_id == "0b6c7f3e-2f7a-4f57-9e2b-6f9d2d8f6a11"


def test_priority_defaults_to_normal() -> None:
    rec = record({"a": "1"})
    del rec["priority"]
    update = to_update(rec, TP, 0)
    assert update is not None and update.priority is Priority.NORMAL


# -- rejections, each with the reason the DLQ header carries


@pytest.mark.parametrize(
    "name",
    ["", "profile.", "has space", "tab\there", "new\nline", "nul\x00"],
)
def test_an_invalid_attribute_name_is_rejected(name: str) -> None:
    assert reason_of(record({"ok": "1", name: "v"})) == "invalid_attribute_name"


def test_a_name_over_targets_128_characters_has_its_own_reason() -> None:
    assert MAX_NAME_LENGTH == 128
    name = "n" * 129
    assert reason_of(record({"ok": "1", name: "v"})) == "attribute_name_too_long"
    assert reason_of(record({"ok": "1", "profile." + name: "v"})) == "attribute_name_too_long"


def test_the_longest_allowed_name_is_accepted() -> None:
    name = "n" * MAX_NAME_LENGTH
    assert attrs_of({"profile." + name: "v"}) == {name: "v"}


@pytest.mark.parametrize("pid", ["", "   ", "crm\n01", "crm\x0001", None, 12345])
def test_an_invalid_profile_id_is_rejected(pid: Any) -> None:
    assert reason_of(record({"a": "1"}, pid=pid)) == "invalid_profile_id"


@pytest.mark.parametrize("id_type", ["THIRD_PARTY_ID", "PC_ID"])
def test_an_id_over_256_characters_has_its_own_reason(id_type: str) -> None:
    pid = "x" * 257
    assert reason_of(record({"a": "1"}, pid=pid, id_type=id_type)) == "profile_id_too_long"


@pytest.mark.parametrize("pid", ["crm+0001", "crm/0001", "a+b/c"])
def test_a_third_party_id_with_plus_or_slash_is_refused_but_a_pc_id_is_not(pid: str) -> None:
    assert reason_of(record({"a": "1"}, pid=pid)) == "third_party_id_forbidden_character"
    update = to_update(record({"a": "1"}, pid=pid, id_type="PC_ID"), TP, 0)
    assert update is not None and update.profile_id == pid


def test_values_over_256_characters_are_kept_and_counted() -> None:
    update = to_update(record({"a": "v" * 257, "b": "w" * 256}), TP, 0)
    assert update is not None and update.attributes["a"] == "v" * 257
    assert cell_risks(update, "A") == (1, 0)


@pytest.mark.parametrize("value", ["a,b", "line\nbreak", "cr\rhere"])
def test_a_comma_or_line_break_is_sent_under_a_and_refused_under_b(value: str) -> None:
    update = to_update(record({"a": value, "b": "plain"}), TP, 0)
    assert update is not None and update.attributes == {"a": value, "b": "plain"}
    assert cell_risks(update, "A") == (0, 1)
    with pytest.raises(ValidationError) as refused:
        cell_risks(update, "B")
    assert refused.value.reason == "value_unsafe_under_reading_b"
    plain = to_update(record({"b": "plain"}), TP, 0)
    assert plain is not None and cell_risks(plain, "B") == (0, 0)
    comma_id = to_update(record({"b": "plain"}, pid="crm,1"), TP, 0)
    assert comma_id is not None
    with pytest.raises(ValidationError):
        cell_risks(comma_id, "B")


def test_the_longest_allowed_profile_id_is_accepted() -> None:
    update = to_update(record({"a": "1"}, pid="9" * MAX_ID_LENGTH), TP, 0)
    assert update is not None and update.profile_id == "9" * MAX_ID_LENGTH


@pytest.mark.parametrize("occurred_at", [-1, None, "2024-01-01", 1.5])
def test_an_invalid_occurred_at_is_rejected(occurred_at: Any) -> None:
    assert reason_of(record({"a": "1"}, occurred_at=occurred_at)) == "invalid_occurred_at"


@pytest.mark.parametrize("missing", ["profile", "attributes", "occurred_at"])
def test_a_record_missing_a_field_is_rejected(missing: str) -> None:
    rec = record({"a": "1"})
    del rec[missing]
    assert reason_of(rec) == "missing_field"


def test_an_unknown_id_type_is_rejected() -> None:
    assert reason_of(record({"a": "1"}, id_type="EMAIL")) == "missing_field"


def test_attributes_over_64_kb_are_rejected_and_exactly_64_kb_is_accepted() -> None:
    # Sizes are UTF-8 bytes of names plus values; "é" is 2 bytes.
    name = "note"
    fits = "é" * ((MAX_PROFILE_BYTES - len(name)) // 2)
    assert len(name.encode()) + len(fits.encode()) == MAX_PROFILE_BYTES
    assert attrs_of({name: fits}) == {name: fits}
    assert reason_of(record({name: fits + "x"})) == "profile_too_large"
    # Spread over many attributes, counted together.
    many = {f"a{i:03d}": "x" * 1000 for i in range(66)}
    assert reason_of(record(many)) == "profile_too_large"


def test_a_value_that_is_null_does_not_count_towards_64_kb() -> None:
    assert attrs_of({"big": None, "small": "s"}) == {"small": "s"}


@pytest.mark.parametrize("name", ["tier,gold", ",lead", "trail,"])
def test_an_attribute_name_with_a_comma_is_refused_under_b_only(name: str) -> None:
    # (Names with line breaks never get this far: validation refuses control characters.)
    update = to_update(record({name: "x", "b": "plain"}), TP, 0)
    assert update is not None
    assert cell_risks(update, "A") == (0, 0)
    with pytest.raises(ValidationError) as refused:
        cell_risks(update, "B")
    assert refused.value.reason == "value_unsafe_under_reading_b"


_risky_values = st.one_of(
    st.text(alphabet="ab,\n\r%é", max_size=8),
    st.integers(250, 262).map(lambda n: "v" * n),
    st.integers(1, 140).map(lambda n: "w" * n),  # several of these pass 256 together
)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(_risky_values, min_size=1, max_size=5))
def test_cell_risks_counts_each_long_or_unsafe_value(values: list[str]) -> None:
    # cell_risks checks all values at once before counting one by one: the counts must be
    # per value whatever the values' total length or where a separator sits.
    update = to_update(record({f"a{i}": v or "x" for i, v in enumerate(values)}), TP, 0)
    assert update is not None
    sent = list(update.attributes.values())
    long = sum(len(v) > 256 for v in sent)
    unsafe = sum(any(c in v for c in ",\n\r") for v in sent)
    assert cell_risks(update, "A") == (long, unsafe)
    if unsafe:
        with pytest.raises(ValidationError):
            cell_risks(update, "B")
    else:
        assert cell_risks(update, "B") == (long, 0)
