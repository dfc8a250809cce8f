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


def test_raw_ampersand_truncates_the_batch_at_the_first_ampersand() -> None:
    body = b"batch=thirdPartyId,a,b\np0,%26kept,x\np1,fish&chips,y\np2,z,z\np3,&,w\n"
    batch = inspect(body, **LIMITS)
    # The row holding the '&' keeps what precedes it; every later row is gone.
    assert [(r.profile_id, r.attributes) for r in iter_rows(batch)] == [
        ("p0", {"a": "&kept", "b": "x"}),
        ("p1", {"a": "fish"}),
    ]
    assert batch.row_count == 2 and batch.cut_lines == 3


@pytest.mark.parametrize(
    "body",
    [
        b"batch=thirdPartyId,a&b\np1,x\n",  # the header itself is cut
        b"batch=thirdPartyId,a\n&p1,x\np2,y\n",  # nothing left of the first row
        b"batch=thirdPartyId,a\n\n&p1,x\n",
    ],
)
def test_a_batch_with_no_row_before_the_first_ampersand_is_empty(body: bytes) -> None:
    with pytest.raises(BatchRejected) as caught:
        inspect(body, **LIMITS)
    assert caught.value.reason == "empty_batch"
    assert caught.value.message.startswith("Batch is empty")


def test_an_escape_after_the_first_ampersand_is_never_read() -> None:
    # What follows a raw '&' is another form parameter; the batch is only what precedes it.
    assert rows(b"batch=thirdPartyId,a\np1,x\n&p2,100%\n") == [("p1", {"a": "x"}, None)]


@pytest.mark.parametrize("name", ["profile.tier", "profile%2Etier"])
def test_a_profile_prefix_in_the_header_fails_the_batch(name: str) -> None:
    body = f"batch=thirdPartyId,city,{name}\np1,x,y\n".encode()
    with pytest.raises(BatchRejected) as caught:
        inspect(body, **LIMITS)
    assert caught.value.reason == "profile_prefix"
    assert "profile.tier" in caught.value.message and "without" in caught.value.message


def test_a_name_merely_containing_profile_is_fine() -> None:
    assert rows(b"batch=thirdPartyId,myprofile.x,profile\np1,a,b\n") == [
        ("p1", {"myprofile.x": "a", "profile": "b"}, None)
    ]


@pytest.mark.parametrize("pid", [b"crm%2B1", b"crm%2F1", b"crm/1"])
def test_a_third_party_id_with_plus_or_slash_fails_only_its_row(pid: bytes) -> None:
    body = b"batch=thirdPartyId,a\np1,x\n" + pid + b",y\np2,z\n"
    result = rows(body)
    assert [r[0] for r in result] == [
        "p1",
        pid.decode().replace("%2B", "+").replace("%2F", "/"),
        "p2",
    ]
    assert result[0][2] is None and result[2][2] is None
    assert result[1][1] == {} and "'+' or '/'" in (result[1][2] or "")


def test_plus_and_slash_are_fine_in_a_pc_id_and_a_raw_plus_is_a_space() -> None:
    assert rows(b"batch=pcId,a\np%2B1/2,x\n") == [("p+1/2", {"a": "x"}, None)]
    assert rows(b"batch=thirdPartyId,a\ncrm+1,x\n") == [("crm 1", {"a": "x"}, None)]


@pytest.mark.parametrize(
    ("mode", "expected_id", "failed"),
    [("fail", "x" * 257, True), ("accept", "x" * 257, False), ("truncate", "x" * 256, False)],
)
def test_a_third_party_id_over_256_characters_follows_the_long_id_setting(
    mode: str, expected_id: str, failed: bool
) -> None:
    body = b"batch=thirdPartyId,a\n" + b"x" * 256 + b",ok\n" + b"x" * 257 + b",long\n"
    result = list(iter_rows(inspect(body, **LIMITS, long_id=mode)))
    assert result[0].error is None and result[0].profile_id == "x" * 256
    assert result[1].profile_id == expected_id
    assert (result[1].error is not None) is failed
    assert result[1].attributes == ({} if failed else {"a": "long"})


def test_decoding_b_decodes_the_whole_batch_before_splitting() -> None:
    body = b"batch=thirdPartyId,a,b,c\np1,x%2Cy,second,third\np2,one%0Anew-row,v\np3,caf%C3%A9,+\n"
    under_a = rows(body)
    assert under_a[0] == ("p1", {"a": "x,y", "b": "second", "c": "third"}, None)
    under_b = [
        (r.profile_id, r.attributes, r.error)
        for r in iter_rows(inspect(body, **LIMITS, decoding="B"))
    ]
    assert under_b == [
        # the encoded comma is a separator: one cell too many, the row fails
        ("p1", {}, "4 value cells for 3 columns"),
        # the encoded line break starts a row whose id is the rest of the value
        ("p2", {"a": "one"}, None),
        ("new-row", {"a": "v"}, None),
        ("p3", {"a": "café", "b": " "}, None),
    ]


def test_decoding_b_shifts_a_middle_column_silently() -> None:
    body = b"batch=thirdPartyId,city,tier,store\np1,Paris%2C%20FR,gold\n"
    under_b = [
        (r.profile_id, r.attributes, r.error)
        for r in iter_rows(inspect(body, **LIMITS, decoding="B"))
    ]
    # 'gold' lands in 'store' and ' FR' in 'tier': no error, the profile is corrupted.
    assert under_b == [("p1", {"city": "Paris", "tier": " FR", "store": "gold"}, None)]
    assert rows(body) == [("p1", {"city": "Paris, FR", "tier": "gold"}, None)]


def test_decoding_b_counts_rows_after_decoding() -> None:
    body = b"batch=thirdPartyId,a\np1,x%0Ap2,y%0Ap3,z\n"
    assert inspect(body, **LIMITS).row_count == 1
    assert inspect(body, **LIMITS, decoding="B").row_count == 3
    with pytest.raises(BatchRejected) as caught:
        inspect(body, max_bytes=1000, max_rows=2, decoding="B")
    assert caught.value.reason == "too_many_rows"


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


# Values as a careless producer might send them: raw '+', '%' escapes, commas encoded.
# (A raw '&' truncates the whole batch: tested on its own above.)
_PIECES = [*"ab Z09-_.~+é€", "%20", "%2C", "%0A", "%26", "%C3%A9"]
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
