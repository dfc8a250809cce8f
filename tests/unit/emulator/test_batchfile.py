"""How the emulator reads a batch file: file-level rules and per-cell decoding."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.batchfile import BatchRejected, decode_cell, inspect, iter_rows

LIMITS = {"max_bytes": 1_000_000, "max_rows": 1000}


def rows(body: bytes) -> list[tuple[str, dict[str, str], str | None]]:
    return [(r.profile_id, r.attributes, r.error) for r in iter_rows(inspect(body, **LIMITS))]


def reason(body: bytes, **limits: int) -> str:
    with pytest.raises(BatchRejected) as caught:
        inspect(body, **{**LIMITS, **limits})
    return caught.value.reason


def test_documented_example_decodes_with_empty_cells_left_out() -> None:
    body = (
        b"batch=thirdPartyId,loyaltyTier,lifetimeValue,lastStoreId\n"
        b"crm-0001,gold,1520.5,\n"
        b"crm-0002,,88,store-17\n"
    )
    assert rows(body) == [
        ("crm-0001", {"loyaltyTier": "gold", "lifetimeValue": "1520.5"}, None),
        ("crm-0002", {"lifetimeValue": "88", "lastStoreId": "store-17"}, None),
    ]


def test_cells_decode_like_query_values() -> None:
    body = b"batch=pcId,na%20me,b,c,d\np%2C1,a+b,caf%C3%A9,x%2Cy%0Az,100%25\n"
    assert rows(body) == [("p,1", {"na me": "a b", "b": "café", "c": "x,y\nz", "d": "100%"}, None)]


def test_raw_ampersand_cuts_the_value_at_the_ampersand() -> None:
    body = b"batch=thirdPartyId,a,b,c\np1,fish&chips,%26kept,&gone\n"
    # 'c' is cut to nothing, so it is an empty value: no change.
    assert rows(body) == [("p1", {"a": "fish", "b": "&kept"}, None)]


@pytest.mark.parametrize("bad", [b"100%", b"%zz", b"%4", b"a%g1"])
def test_an_invalid_percent_escape_fails_the_whole_batch(bad: bytes) -> None:
    body = b"batch=thirdPartyId,a\np1,ok\np2," + bad + b"\n"
    assert reason(body) == "bad_escape"


def test_invalid_utf8_after_decoding_becomes_replacement_characters() -> None:
    assert rows(b"batch=thirdPartyId,a\np1,x%FFy\n") == [("p1", {"a": "x\ufffdy"}, None)]


@pytest.mark.parametrize(
    "header",
    [b"thirdPartyId,a", b"batch=ecid,a", b"batch=ThirdPartyId,a", b"batch=thirdPartyId", b"x"],
)
def test_header_must_be_batch_then_a_supported_id_type_then_attributes(header: bytes) -> None:
    assert reason(header + b"\np1,v\n") == "bad_header"


def test_empty_attribute_name_in_header_fails() -> None:
    assert reason(b"batch=pcId,a,,c\np1,1,2,3\n") == "bad_header"


def test_size_limit_counts_the_file_bytes() -> None:
    body = b"batch=thirdPartyId,a\np1,v\n"
    assert inspect(body, max_bytes=len(body), max_rows=10).row_count == 1
    assert reason(body, max_bytes=len(body) - 1) == "too_large"


def test_row_limit_counts_data_rows_not_header_or_blank_lines() -> None:
    body = b"batch=thirdPartyId,a\np1,v\n\np2,v\n\n"
    assert inspect(body, max_bytes=1000, max_rows=2).row_count == 2
    assert reason(body, max_rows=1) == "too_many_rows"


def test_empty_file_and_header_only_file_fail() -> None:
    assert reason(b"") == "empty_file"
    assert reason(b"\n\n") == "empty_file"
    assert reason(b"batch=thirdPartyId,a\n") == "no_rows"


def test_crlf_line_ends_and_a_utf8_bom_are_accepted() -> None:
    body = b"\xef\xbb\xbfbatch=thirdPartyId,a\r\np1,v\r\np2,w\r\n"
    assert rows(body) == [("p1", {"a": "v"}, None), ("p2", {"a": "w"}, None)]


def test_rows_with_more_cells_than_columns_or_no_id_fail_alone() -> None:
    body = b"batch=thirdPartyId,a,b\np1,1,2,3\n,1,2\np3,1\n"
    assert rows(body) == [
        ("p1", {}, "3 value cells for 2 columns"),
        ("", {}, "empty profile id"),
        ("p3", {"a": "1"}, None),
    ]


def test_a_repeated_column_name_keeps_the_later_column() -> None:
    assert rows(b"batch=thirdPartyId,a,a\np1,first,second\np2,only,\n") == [
        ("p1", {"a": "second"}, None),
        ("p2", {"a": "only"}, None),
    ]


def test_separator_characters_in_data_take_the_cell_by_cell_path() -> None:
    # Values holding ASCII RS/US (escaped or raw) must not be confused with the separators
    # the block decoder uses internally.
    body = b"batch=thirdPartyId,a,b\np1,x%1Ey,u\x1fv\np2,%1f,w+w\n"
    assert rows(body) == [
        ("p1", {"a": "x\x1ey", "b": "u\x1fv"}, None),
        ("p2", {"a": "\x1f", "b": "w w"}, None),
    ]


# Values as a careless producer might send them: raw '+', '&', '%' escapes, commas encoded.
_PIECES = [*"ab Z09-_.~+&é€", "%20", "%2C", "%0A", "%26", "%C3%A9"]
_cell = st.lists(st.sampled_from(_PIECES), max_size=8).map(
    lambda parts: "".join(parts).replace(" ", "%20")
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(_cell, min_size=3, max_size=3), min_size=1, max_size=20))
def test_block_decoding_matches_decoding_each_cell(table: list[list[str]]) -> None:
    lines = ["batch=thirdPartyId,a,b"] + [
        f"p{i}{row[0]},{row[1]},{row[2]}" for i, row in enumerate(table)
    ]
    body = ("\n".join(lines) + "\n").encode()
    expected = []
    for i, row in enumerate(table):
        values = {"a": decode_cell(row[1]), "b": decode_cell(row[2])}
        expected.append(
            (decode_cell(f"p{i}{row[0]}"), {k: v for k, v in values.items() if v}, None)
        )
    assert rows(body) == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=10))
def test_any_text_percent_encoded_by_a_client_comes_back_unchanged(values: list[str]) -> None:
    def enc(text: str) -> str:
        return quote(text, safe="-_.~")

    body = "batch=thirdPartyId,attr\n" + "".join(
        f"{enc(f'id{i}')},{enc(v)}\n" for i, v in enumerate(values)
    )
    expected = [(f"id{i}", {"attr": v}, None) for i, v in enumerate(values)]
    # Lone surrogates cannot be UTF-8 encoded by a client: quote() would fail first.
    assert rows(body.encode()) == expected
