"""The event contract in schemas/: both versions parse, evolve both ways, and carry every value.

Producers upgrade on their own schedule, so a consumer reading with version 1 meets version-2
data and the other way round. These tests resolve the schemas with fastavro exactly as a
reader does (``schemaless_writer`` with one schema, ``schemaless_reader`` with the writer's
and the reader's), and check the rendering rules schemas/README.md promises.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fastavro.schema import to_parsing_canonical_form
from fastavro.validation import validate
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.core.decode import Decoder
from consumer.core.validate import render_value
from consumer.errors import ValidationError

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
V1_JSON: dict[str, Any] = json.loads((SCHEMAS / "profile_change.avsc").read_text("utf-8"))
V2_JSON: dict[str, Any] = json.loads((SCHEMAS / "profile_change_v2.avsc").read_text("utf-8"))


def _plain(schema: Any) -> Any:
    """The schema without logical types, so records read back as plain str/int."""
    if isinstance(schema, dict):
        return {k: _plain(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [_plain(s) for s in schema]
    return schema


V1 = fastavro.parse_schema(_plain(V1_JSON))
V2 = fastavro.parse_schema(_plain(V2_JSON))


def write(schema: Any, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, record)
    return buf.getvalue()


def read(data: bytes, writer: Any, reader: Any | None = None) -> dict[str, Any]:
    buf = io.BytesIO(data)
    record = fastavro.schemaless_reader(buf, writer, reader)
    assert buf.tell() == len(data), "the whole value must be consumed"
    assert isinstance(record, dict)
    return record


def event(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "0b8c2f4e-5a57-4c1e-9a55-3a0f1f7d2c11",
        "source": "CRM",
        "occurred_at": 1_718_000_000_123,
        "profile": {"id_type": "THIRD_PARTY_ID", "id": "crm-000123"},
        "priority": "URGENT",
        "attributes": {"loyaltyTier": "gold", "loyaltyPoints": 1200, "emailOptIn": True},
    }
    base.update(changes)
    return base


# --- the two versions ------------------------------------------------------------------------


def test_v2_is_the_same_record_with_one_optional_field_added() -> None:
    assert (V2_JSON["name"], V2_JSON["namespace"]) == (V1_JSON["name"], V1_JSON["namespace"])
    v1_fields = {f["name"]: f for f in V1_JSON["fields"]}
    v2_fields = {f["name"]: f for f in V2_JSON["fields"]}
    added = set(v2_fields) - set(v1_fields)
    assert added == {"store_id"}
    assert set(v1_fields) <= set(v2_fields), "a field removed breaks version-1 readers"
    assert v2_fields["store_id"]["type"] == ["null", "string"]
    assert v2_fields["store_id"]["default"] is None
    # Every version-1 field keeps its type, except that Source gained a symbol at the end.
    for name, field in v1_fields.items():
        if name != "source":
            assert v2_fields[name]["type"] == field["type"], name
    v1_symbols = v1_fields["source"]["type"]["symbols"]
    v2_symbols = v2_fields["source"]["type"]["symbols"]
    assert v2_symbols[: len(v1_symbols)] == v1_symbols
    assert v1_fields["source"]["type"]["default"] == "OTHER"


def test_the_schemas_really_differ_so_reading_them_is_resolution() -> None:
    assert to_parsing_canonical_form(V1) != to_parsing_canonical_form(V2)


def test_old_writer_new_reader_gets_the_default_store_id() -> None:
    record = event()
    got = read(write(V1, record), V1, V2)
    assert got == {**record, "store_id": None}


def test_new_writer_old_reader_skips_store_id() -> None:
    record = event(source="POS", store_id="store-0042")
    got = read(write(V2, record), V2, V1)
    expected = dict(record)
    del expected["store_id"]
    assert got == expected


def test_new_enum_symbol_reads_as_other_in_an_old_reader() -> None:
    record = event(source="ECOM", store_id=None)
    got = read(write(V2, record), V2, V1)
    assert got["source"] == "OTHER"
    assert got["attributes"] == record["attributes"]
    assert got["profile"] == record["profile"]


def test_an_old_reader_without_the_enum_default_would_fail() -> None:
    """Why Source has ``"default": "OTHER"``: without it, ECOM data is unreadable to v1."""
    no_default = json.loads(json.dumps(V1_JSON))
    for field in no_default["fields"]:
        if field["name"] == "source":
            del field["type"]["default"]
    strict_v1 = fastavro.parse_schema(_plain(no_default))
    with pytest.raises(Exception, match="ECOM"):
        read(write(V2, event(source="ECOM")), V2, strict_v1)


def test_the_consumers_decoder_reads_v2_data_with_the_v1_reader() -> None:
    decoder = Decoder(reader_schema=V1_JSON, writer_schema=V2_JSON)
    record = event(source="ECOM", store_id="store-7")
    got = decoder.decode(write(fastavro.parse_schema(V2_JSON), record))
    assert got["source"] == "OTHER"
    assert "store_id" not in got
    assert got["attributes"] == record["attributes"]
    assert got["occurred_at"] == record["occurred_at"]


# --- attribute values --------------------------------------------------------------------------

EVERY_TYPE: dict[str, Any] = {
    "nothing": None,
    "firstName": 'Zoë "Łukasz" 山田, 100% & more + 😀\r\nline two',
    "empty": "",
    "loyaltyPoints": 9_223_372_036_854_775_807,
    "refund": -9_223_372_036_854_775_808,
    "zero": 0,
    "amount": 0.1,
    "tiny": 5e-324,
    "huge": 1.7976931348623157e308,
    "negativeZero": -0.0,
    "whole": 12.0,
    "emailOptIn": True,
    "smsOptIn": False,
}


@pytest.mark.parametrize(("writer", "reader"), [(V1, None), (V1, V2), (V2, V1), (V2, None)])
def test_every_attribute_value_type_round_trips_with_its_type(writer: Any, reader: Any) -> None:
    record = event(attributes=EVERY_TYPE)
    got = read(write(writer, record), writer, reader)["attributes"]
    assert got == EVERY_TYPE
    for name, value in EVERY_TYPE.items():
        # True == 1 and 12.0 == 12 in Python: the type is what Target's string depends on.
        assert type(got[name]) is type(value), name
    assert math.copysign(1.0, got["negativeZero"]) == -1.0


attribute_values = st.one_of(
    st.none(),
    st.text(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(attributes=st.dictionaries(st.text(min_size=1, max_size=40), attribute_values))
def test_any_attribute_map_survives_both_directions_of_evolution(
    attributes: dict[str, Any],
) -> None:
    record = event(attributes=attributes)
    for writer, reader in ((V1, V2), (V2, V1)):
        got = read(write(writer, record), writer, reader)["attributes"]
        assert got == attributes
        assert [type(v) for v in got.values()] == [type(v) for v in attributes.values()]


def test_nan_is_valid_avro_so_the_consumer_must_reject_it() -> None:
    """The schema cannot forbid NaN/Infinity; the README sends them to the DLQ instead."""
    record = event(attributes={"amount": math.nan, "limit": math.inf})
    got = read(write(V1, record), V1)["attributes"]
    assert math.isnan(got["amount"]) and got["limit"] == math.inf
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValidationError):
            render_value(bad)


@pytest.mark.parametrize(
    ("value", "target"),
    [
        ("José & Zoë, 100%", "José & Zoë, 100%"),
        (1200, "1200"),
        (-7, "-7"),
        (0.1, "0.1"),
        (19.99, "19.99"),
        (1e16, "1e+16"),
        (1e-7, "1e-07"),
        (12.0, "12.0"),
        (True, "true"),
        (False, "false"),
        (None, None),
        ("", None),
    ],
)
def test_values_become_target_strings_as_the_readme_says(value: object, target: str | None) -> None:
    assert render_value(value) == target


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_double_rendering_is_the_shortest_form_that_reads_back_exactly(value: float) -> None:
    text = render_value(value)
    assert text is not None
    assert float(text) == value
    assert text == repr(value)


def test_a_record_with_a_missing_field_does_not_validate() -> None:
    record = event()
    del record["profile"]
    assert not validate(record, V1, raise_errors=False)
