"""WSGI plumbing shared by the handlers: the request view, replies, multipart extraction."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, quote
from xml.sax.saxutils import escape

_DISPOSITION_NAME = re.compile(r'(?im)^content-disposition:[^\r\n]*?;\s*name="([^"]*)"')


class Request:
    """A read-only view of one WSGI request."""

    __slots__ = ("environ", "method", "path", "query")

    def __init__(self, environ: dict[str, Any]) -> None:
        self.environ = environ
        self.method: str = environ["REQUEST_METHOD"].upper()
        self.path: str = environ.get("PATH_INFO", "") or "/"
        self.query: str = environ.get("QUERY_STRING", "")

    def header(self, name: str) -> str | None:
        key = name.upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            value = self.environ.get(key)
        else:
            value = self.environ.get("HTTP_" + key)
        return value if isinstance(value, str) else None

    @property
    def content_type(self) -> str:
        return str(self.environ.get("CONTENT_TYPE", ""))

    @property
    def content_length(self) -> int:
        try:
            return max(0, int(self.environ.get("CONTENT_LENGTH") or 0))
        except ValueError:
            return 0

    def body(self) -> bytes:
        length = self.content_length
        if not length:
            return b""
        data: bytes = self.environ["wsgi.input"].read(length)
        return data

    @property
    def raw_target(self) -> str:
        """The request target as sent (path and query), for the single-update size limit."""
        raw = self.environ.get("RAW_URI")
        if isinstance(raw, str):
            return raw
        target = quote(self.path, safe="/%:@!$&'()*+,;=-._~")
        return f"{target}?{self.query}" if self.query else target

    def param(self, name: str) -> str | None:
        """The last value of a query parameter, decoded; None when absent."""
        found = None
        for key, value in parse_qsl(self.query, keep_blank_values=True, errors="replace"):
            if key == name:
                found = value
        return found

    @property
    def host(self) -> str:
        host = self.environ.get("HTTP_HOST")
        if isinstance(host, str) and host:
            return host
        return f"{self.environ.get('SERVER_NAME', '127.0.0.1')}:{self.environ.get('SERVER_PORT')}"

    @property
    def scheme(self) -> str:
        return str(self.environ.get("wsgi.url_scheme", "http"))


class Reply:
    __slots__ = ("body", "content_type", "headers", "status")

    def __init__(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = list(headers)


def xml_reply(status: int, fields: Iterable[tuple[str, object]]) -> Reply:
    inner = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in fields)
    return Reply(status, f"<response>{inner}</response>".encode(), "application/xml;charset=UTF-8")


def json_reply(status: int, data: object, headers: Iterable[tuple[str, str]] = ()) -> Reply:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Reply(status, body, "application/json;charset=UTF-8", headers)


def text_reply(status: int, text: str | bytes, headers: Iterable[tuple[str, str]] = ()) -> Reply:
    body = text if isinstance(text, bytes) else text.encode("utf-8")
    return Reply(status, body, "text/plain;charset=UTF-8", headers)


def error_reply(
    api: str, status: int, message: str, headers: Iterable[tuple[str, str]] = ()
) -> Reply:
    """An error in the shape of the API that was called."""
    if api in ("bulk", "status", "single"):
        reply = xml_reply(status, [("success", "false"), ("message", message)])
        reply.headers.extend(headers)
        return reply
    if api == "fetch" or api == "control":
        return json_reply(status, {"status": status, "message": message}, headers)
    return text_reply(status, message, headers)


def multipart_boundary(content_type: str) -> bytes | None:
    """The boundary of a multipart/form-data Content-Type, or None if it is not one."""
    kind, _, params = content_type.partition(";")
    if kind.strip().lower() != "multipart/form-data":
        return None
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary" and value:
            return value.strip().strip('"').encode("latin-1")
    return b""


def multipart_field(body: bytes, boundary: bytes, name: str) -> bytes | None:
    """The content of the form field ``name``; None if absent. ValueError if malformed."""
    if not boundary:
        raise ValueError("multipart body without a boundary")
    delimiter = b"--" + boundary
    pos = body.find(delimiter)
    if pos < 0:
        raise ValueError("multipart body without its boundary")
    while True:
        start = pos + len(delimiter)
        if body.startswith(b"--", start):
            return None  # the closing delimiter: no such field
        head_end = body.find(b"\r\n\r\n", start)
        if head_end < 0:
            raise ValueError("multipart part without a header end")
        headers = body[start:head_end].decode("latin-1")
        content_start = head_end + 4
        end = body.find(b"\r\n" + delimiter, content_start)
        if end < 0:
            raise ValueError("multipart part without a closing boundary")
        match = _DISPOSITION_NAME.search(headers)
        if match is not None and match.group(1) == name:
            return body[content_start:end]
        pos = end + 2
