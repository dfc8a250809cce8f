"""Reading a bulk batch file the way Target does.

Two steps, so that accepting an upload stays cheap and the per-cell work happens once,
when the batch is applied:

- ``inspect`` runs at upload time over the whole body with C-level operations only
  (a search for ``&``, a regex for bad escapes, one decode, one split): file-level rules that
  fail the batch with ``success=false`` -- size, header, id type, invalid ``%`` escapes, row
  limit, nothing left before a raw ``&``.
- ``iter_rows`` decodes the data rows when the batch is applied (or shown by
  ``/_emulator/batches/ID``) and applies the row rules (shape, empty id, thirdPartyId rules).

The body is the form parameter ``batch``: a raw ``&`` ends it, so everything from the first
raw ``&`` on is lost (rows after it are dropped; the row holding it keeps the cells before
it). Then, under decoding A (the default), rows and cells are split and each cell is decoded
like a query-string value (``+`` is a space, ``%XX`` escapes are UTF-8; invalid UTF-8 becomes
U+FFFD). Under decoding B the whole text is decoded first and split afterwards, so an
encoded comma or line break becomes a separator. See docs/emulator.md, "Cell decoding".
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import unquote_plus

from emulator.config import MAX_THIRD_PARTY_ID_CHARS

ID_TYPES = ("thirdPartyId", "pcId")
_BOM = b"\xef\xbb\xbf"
# A '%' not followed by two hex digits: Target fails the whole batch.
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_NEEDS_DECODE = re.compile(r"[%+]")
_RS, _US = "\x1e", "\x1f"  # ASCII record and unit separators
_ESCAPED_SEPARATOR = re.compile(r"%1[EeFf]")
_PROFILE_PREFIX = "profile."


class BatchRejected(Exception):
    """The file breaks a file-level rule: the upload is answered with ``success=false``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # short key, counted in /_emulator/stats rejections
        self.message = message


@dataclass(frozen=True, slots=True)
class BatchFile:
    """An accepted file: its header decoded, its data rows still raw."""

    id_type: str
    names: tuple[str, ...]  # decoded attribute names, in column order
    lines: list[str]  # data lines (no header), blank lines already removed; raw under A
    plain: bool  # cells need no decoding: no '%' or '+' anywhere, or decoded already (B)
    clash: bool  # holds RS/US (raw or escaped): cannot be decoded in one block
    long_id: str = "fail"  # what a row does with a thirdPartyId over 256 characters
    cut_lines: int = 0  # lines (whole or partial) lost after the first raw '&'

    @property
    def row_count(self) -> int:
        return len(self.lines)


class Row(NamedTuple):
    number: int  # 1-based data row number (header and blank lines not counted)
    profile_id: str
    attributes: dict[str, str]  # non-empty values only: empty cells never clear
    error: str | None  # set when the row cannot be applied (it counts as a failed update)


def decode_cell(cell: str) -> str:
    """One name or value, decoded like a query-string value (see the module docstring)."""
    if "%" in cell or "+" in cell:
        return unquote_plus(cell, errors="replace")
    return cell


def inspect(
    body: bytes,
    *,
    max_bytes: int,
    max_rows: int,
    decoding: str = "A",
    long_id: str = "fail",
) -> BatchFile:
    """Apply the file-level rules; raise ``BatchRejected`` when the whole batch fails."""
    size = len(body)
    if size > max_bytes:
        raise BatchRejected(
            "too_large", f"Batch file is {size} bytes; the limit is {max_bytes} bytes"
        )
    if body.startswith(_BOM):
        body = body[len(_BOM) :]
    if not body.strip():
        raise BatchRejected("empty_file", "Batch file is empty")
    cut_lines = 0
    amp = body.find(b"&")
    if amp >= 0:
        # The body is the form parameter `batch`: a raw '&' starts another parameter.
        cut_lines = body.count(b"\n", amp) + (0 if body.endswith(b"\n") else 1)
        body = body[:amp]
        if b"\n" not in body.rstrip(b"\r\n") or not body.strip():
            raise BatchRejected(
                "empty_batch", "Batch is empty: no data row before the first raw '&'"
            )
    bad = _BAD_ESCAPE.search(body)
    if bad is not None:
        line_no = body.count(b"\n", 0, bad.start()) + 1
        raise BatchRejected(
            "bad_escape",
            f"Invalid URL encoding on line {line_no}: '%' is not followed by two hex digits",
        )
    text = body.decode("utf-8", errors="replace")
    decoded = decoding == "B"
    if decoded:
        # Reading B: the whole parameter is decoded before it is split.
        text = unquote_plus(text, errors="replace")
    lines = text.split("\n")
    header = lines[0].rstrip("\r")
    del lines[0]
    id_type, names = _parse_header(header, decoded)
    if "\r" in text:
        lines = [line.rstrip("\r") for line in lines]
    blanks = lines.count("")
    rows = len(lines) - blanks
    if rows > max_rows:
        raise BatchRejected(
            "too_many_rows", f"Batch file has {rows} rows; the limit is {max_rows} rows"
        )
    if blanks:
        lines = [line for line in lines if line]
    if rows == 0:
        if cut_lines:
            raise BatchRejected(
                "empty_batch", "Batch is empty: no data row before the first raw '&'"
            )
        raise BatchRejected("no_rows", "Batch file has a header but no data rows")
    plain = decoded or _NEEDS_DECODE.search(text) is None
    clash = not decoded and (
        _RS in text or _US in text or _ESCAPED_SEPARATOR.search(text) is not None
    )
    return BatchFile(id_type, names, lines, plain, clash, long_id, cut_lines)


def _parse_header(header: str, decoded: bool) -> tuple[str, tuple[str, ...]]:
    cells = header.split(",")
    first = cells[0]
    if not first.startswith("batch="):
        raise BatchRejected(
            "bad_header", "The first line must start with batch=thirdPartyId or batch=pcId"
        )
    id_type = first[len("batch=") :]
    if id_type not in ID_TYPES:
        raise BatchRejected(
            "bad_header",
            f"Unsupported profile id type '{id_type[:64]}': use thirdPartyId or pcId",
        )
    names = tuple(cells[1:]) if decoded else tuple(decode_cell(c) for c in cells[1:])
    if not names:
        raise BatchRejected("bad_header", "The header names no profile attribute")
    if "" in names:
        raise BatchRejected("bad_header", "The header has an empty attribute name")
    prefixed = [name for name in names if name.startswith(_PROFILE_PREFIX)]
    if prefixed:
        raise BatchRejected(
            "profile_prefix",
            f"Header cell '{prefixed[0][:64]}': parameter names go without the "
            "'profile.' prefix (Target adds it)",
        )
    return id_type, names


def row_ids(batch: BatchFile) -> Iterator[str]:
    """The decoded profile id of every data row, cheaply (for replace-pending bookkeeping)."""
    trim = batch.id_type == "thirdPartyId" and batch.long_id == "truncate"
    for line in batch.lines:
        cut = line.find(",")
        cell = line if cut < 0 else line[:cut]
        if not batch.plain:
            cell = decode_cell(cell)
        yield cell[:MAX_THIRD_PARTY_ID_CHARS] if trim else cell


def iter_rows(batch: BatchFile) -> Iterator[Row]:
    """Decode the data rows in file order."""
    names = batch.names
    width = len(names)
    third_party = batch.id_type == "thirdPartyId"
    truncate = batch.long_id == "truncate"
    check_length = batch.long_id != "accept"
    for number, values in enumerate(_decoded_cells(batch), start=1):
        profile_id = values[0]
        if len(values) - 1 > width:
            yield Row(number, profile_id, {}, f"{len(values) - 1} value cells for {width} columns")
            continue
        if not profile_id:
            yield Row(number, profile_id, {}, "empty profile id")
            continue
        if third_party:
            if "+" in profile_id or "/" in profile_id:
                yield Row(number, profile_id, {}, "thirdPartyId must not contain '+' or '/'")
                continue
            if check_length and len(profile_id) > MAX_THIRD_PARTY_ID_CHARS:
                if not truncate:
                    yield Row(
                        number,
                        profile_id,
                        {},
                        f"thirdPartyId is {len(profile_id)} characters; "
                        f"the limit is {MAX_THIRD_PARTY_ID_CHARS}",
                    )
                    continue
                profile_id = profile_id[:MAX_THIRD_PARTY_ID_CHARS]
        attributes = {name: value for name, value in zip(names, values[1:], strict=False) if value}
        yield Row(number, profile_id, attributes, None)


def _decoded_cells(batch: BatchFile) -> list[list[str]]:
    """Every row as its list of decoded cells.

    Decoding cell by cell costs a Python call per cell; instead the whole block is decoded
    at once, with the row and cell separators first swapped for ASCII RS/US so that decoded
    commas and line breaks cannot be mistaken for them, and ``%XX`` decoded by the C
    quoted-printable decoder (after ``=`` is escaped and ``%`` turned into ``=``). A file
    that already holds RS/US, raw or escaped, takes the cell-by-cell path.
    """
    if batch.plain:
        return [line.split(",") for line in batch.lines]
    block = _RS.join(batch.lines)
    if batch.clash:
        return [[decode_cell(cell) for cell in line.split(",")] for line in batch.lines]
    block = block.replace("+", " ").replace(",", _US)
    if "%" in block:
        raw = block.encode("utf-8").replace(b"=", b"=3D").replace(b"%", b"=")
        block = binascii.a2b_qp(raw).decode("utf-8", errors="replace")
    return [row.split(_US) for row in block.split(_RS)]
