"""Logging set-up: JSON lines on stdout for machines, readable text for people.

Call ``configure()`` once at start-up. Code logs through ``logging.getLogger(__name__)``
and passes structured fields as ``extra={"fields": {...}}``::

    log.info("batch accepted", extra={"fields": {"batch_id": bid, "rows": 812}})

JSON (one object per line)::

    {"ts": "2025-01-31T12:00:00.123Z", "level": "info", "logger": "profile_sync.pipeline",
     "event": "batch accepted", "batch_id": "...", "rows": 812}

Text: ``2025-01-31T12:00:00.123Z INFO  profile_sync.pipeline batch accepted batch_id=... rows=812``.

Secrets should never reach a log call (they live in ``config.Secret``), but a safety net
sits on the handler anyway: ``RedactingFilter`` masks the values of fields whose key looks
secret, and ``Bearer`` credentials, ``password=...``-style pairs (``Authorization: ...``
too) and URL user-info in messages, string field values and tracebacks.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any

MASK = "***"

# Chatty libraries: their INFO lines are per request, which is per batch or per event here.
_QUIET_LOGGERS = ("httpx", "httpcore", "hpack", "urllib3")

# A key "looks secret" when one of these appears in it (case-insensitive) ...
_SECRET_KEY = re.compile(
    r"pass(word|wd)?|secret|token|authorization|api[-_.]?key|credential|cookie"
    r"|user[-_.]?info|private[-_.]?key|key[-_.]pem|\bpem\b",
    re.IGNORECASE,
)
# ... unless it names where a secret lives, or counts something, not the secret itself.
_NOT_SECRET_KEY = re.compile(
    r"([-_.](file|path|location|reloads?|count|total|type|id|name))$", re.IGNORECASE
)
_SECRET_TEXT = (
    # A bearer credential anywhere: "Bearer eyJhbGci..." (HTTP errors quote headers).
    (re.compile(r"\bBearer\s+[A-Za-z0-9\-._~+/]+=*", re.IGNORECASE), "Bearer " + MASK),
    # password=..., "token": "...", sasl.password: ..., Authorization: Basic ... in text.
    (
        re.compile(
            r"(?P<key>\b[\w.-]*(?:pass(?:word|wd)?|secret|token|api[-_.]?key|authorization)"
            r"[\"']?\s*[=:]\s*)(?P<q>[\"']?)(?:(?:Basic|Bearer|Digest)\s+)?[^\s\"',;&]+",
            re.IGNORECASE,
        ),
        r"\g<key>\g<q>" + MASK,
    ),
    # https://user:password@host
    (
        re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@", re.IGNORECASE),
        r"\g<scheme>" + MASK + "@",
    ),
)
_RESERVED = frozenset({"ts", "level", "logger", "event"})


def is_secret_key(key: str) -> bool:
    """True when a field named ``key`` probably holds a credential."""
    return bool(_SECRET_KEY.search(key)) and not _NOT_SECRET_KEY.search(key)


def redact_text(text: str) -> str:
    """``text`` with credentials that follow a recognisable pattern replaced by ``***``."""
    for pattern, replacement in _SECRET_TEXT:
        text = pattern.sub(replacement, text)
    return text


def redact_value(key: str, value: Any) -> Any:
    """``value`` of field ``key`` with secrets masked, recursing into mappings and lists."""
    if is_secret_key(key) and value not in (None, ""):
        return MASK
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {str(k): redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(key, v) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """Masks secrets in a record's message, fields and traceback. Never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
            record.msg = redact_text(message)
            record.args = None
            fields = getattr(record, "fields", None)
            if isinstance(fields, Mapping):
                record.fields = {str(k): redact_value(str(k), v) for k, v in fields.items()}
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = redact_text(record.exc_text)
            if record.stack_info:
                record.stack_info = redact_text(record.stack_info)
        except Exception:  # a broken log call must not break the service
            record.msg, record.args = "log record could not be redacted; message dropped", None
            record.fields = {}
        return True


def _timestamp(record: logging.LogRecord) -> str:
    when = datetime.fromtimestamp(record.created, tz=UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    if not isinstance(fields, Mapping):
        return {}
    # A field never overwrites the envelope: {"level": ...} becomes "level_".
    return {(f"{k}_" if k in _RESERVED else str(k)): v for k, v in fields.items()}


def _traceback(record: logging.LogRecord, formatter: logging.Formatter) -> str | None:
    if record.exc_info and not record.exc_text:
        record.exc_text = formatter.formatException(record.exc_info)
    parts = [p for p in (record.exc_text, record.stack_info) if p]
    return "\n".join(parts) if parts else None


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, event, then the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        line.update(_fields(record))
        trace = _traceback(record, self)
        if trace:
            line["exc"] = trace
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``ts LEVEL logger event key=value ...``, then the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), f"{record.levelname:<7}", record.name, record.getMessage()]
        for key, value in _fields(record).items():
            parts.append(f"{key}={_text_value(value)}")
        text = " ".join(parts)
        trace = _traceback(record, self)
        return f"{text}\n{trace}" if trace else text


def _text_value(value: Any) -> str:
    if isinstance(value, str):
        return (
            value if value and not any(c.isspace() or c in "\"'=" for c in value) else repr(value)
        )
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler ``configure()`` installed, so a second call replaces it."""


def configure(level: str = "info", fmt: str = "auto", stream: IO[str] | None = None) -> None:
    """Send every log record to ``stream`` (default stdout) as JSON lines or text.

    ``level``: debug, info, warning or error (any case). ``fmt``: ``json``, ``text``, or
    ``auto`` (text when ``stream`` is a terminal, JSON otherwise). Calling it again
    replaces the previous set-up; handlers installed by others (pytest's) are kept.
    """
    out: IO[str] = sys.stdout if stream is None else stream
    fmt = fmt.lower()
    if fmt not in ("auto", "json", "text"):
        raise ValueError(f"log format must be auto, json or text, got {fmt!r}")
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    if fmt == "auto":
        fmt = "text" if _isatty(out) else "json"
    handler = _Handler(out)
    handler.setFormatter(TextFormatter() if fmt == "text" else JsonFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, numeric))


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
