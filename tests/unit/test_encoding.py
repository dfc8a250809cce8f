"""The batch file's cell encoding: what Target URL-decodes must be exactly what was sent."""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.core.batcher import Batcher, BatchLimits
from consumer.core.model import IdType
from consumer.target.wire import decode_batch, encode_cell, header_line
from tests.utils import make_update, parse_batch

# Unreserved characters as themselves, everything else as %XX with upper-case hex.
_ENCODED = re.compile(r"(?:[A-Za-z0-9\-_.~]|%[0-9A-F]{2})*")

# Astral-plane characters (emoji, rare CJK): 4 UTF-8 bytes each, never surrogates.
_astral = st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF, categories=["So", "Lo"])
_any_text = st.text() | st.text(st.characters(codec="utf-8") | _astral, min_size=1)


@settings(max_examples=300, deadline=None)
@given(_any_text)
def test_encoded_cell_uses_only_the_safe_alphabet_and_decodes_back(text: str) -> None:
    encoded = encode_cell(text)
    assert _ENCODED.fullmatch(encoded), encoded
    assert unquote(encoded, errors="strict") == text
    # The same bytes a standard strict percent-encoder produces.
    assert encoded == quote(text, safe="")


def test_characters_target_would_misread_are_escaped() -> None:
    # "+" would become a space, "&" would cut the value, a raw "%" can fail the batch,
    # "," and line breaks would break the CSV.
    assert encode_cell("a b") == "a%20b"
    assert encode_cell("a+b") == "a%2Bb"
    assert encode_cell("x&y=z") == "x%26y%3Dz"
    assert encode_cell("100%") == "100%25"
    assert encode_cell("a,b\nc\r\n") == "a%2Cb%0Ac%0D%0A"
    assert encode_cell("José") == "Jos%C3%A9"
    assert encode_cell("😀") == "%F0%9F%98%80"
    assert encode_cell("crm-0001_A.b~") == "crm-0001_A.b~"


def test_header_line_names_the_id_type_first() -> None:
    assert header_line(IdType.THIRD_PARTY_ID, ["tier", "city"]) == "batch=thirdPartyId,tier,city\n"
    assert header_line(IdType.PC_ID, []) == "batch=pcId\n"


_id = st.text(min_size=1, max_size=12)
_name = st.text(min_size=1, max_size=8)
_value = st.text(min_size=1, max_size=20)


@settings(max_examples=150, deadline=None)
@given(
    id_type=st.sampled_from(IdType),
    profiles=st.dictionaries(_id, st.dictionaries(_name, _value, min_size=1), min_size=1),
)
def test_decode_batch_inverts_a_file_the_batcher_built(
    id_type: IdType, profiles: dict[str, dict[str, str]]
) -> None:
    batcher = Batcher(BatchLimits(max_rows=10_000, max_bytes=10_000_000, linger_seconds=10))
    for offset, (pid, attrs) in enumerate(profiles.items()):
        batcher.add(make_update(pid, attrs, id_type=id_type, offset=offset), now=0.0)
    batcher.cut_all("test")
    [batch] = batcher.take_ready()

    decoded_type, rows = decode_batch(batch.body)
    assert decoded_type is id_type
    assert dict(rows) == profiles
    # And Target's reading of the file (an independent parser) agrees.
    name, target_rows = parse_batch(batch.body)
    assert name == id_type.value
    assert dict(target_rows) == profiles
