"""Value parsers of the settings, and ``Secret``, the wrapper a secret value lives in.

A parser takes the raw string (from the environment or the YAML file) and returns the
value, or raises ``ValueError`` saying what is wrong; the loader prefixes the key.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path


class Secret:
    """A string that never prints. Call ``reveal()`` at the one place that needs the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def int_range(lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip().replace("_", ""))
        except ValueError:
            raise ValueError(f"expected a whole number, got {raw!r}") from None
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo:,} and {hi:,}, got {value:,}")
        return value

    return parse


def float_range(lo: float, hi: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"expected a number, got {raw!r}") from None
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo:g} and {hi:g}, got {value:g}")
        return value

    return parse


def choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {raw!r}")
        return value

    return parse


def boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


def topics(raw: str) -> tuple[str, ...]:
    names = tuple(t.strip() for t in raw.split(",") if t.strip())
    if not names:
        raise ValueError("needs at least one topic")
    return names


def url(raw: str) -> str:
    value = raw.strip().rstrip("/")
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"must be an http:// or https:// URL, got {redact_url(raw)!r}")
    return value


_USER_INFO = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)?[^/@\s]*@")


def redact_url(value: str) -> str:
    """``value`` with any ``user:password@`` part shown as ``***@``."""
    return _USER_INFO.sub(lambda m: (m.group("scheme") or "") + "***@", value.strip(), count=1)


# What one HTTP header value may hold after "Bearer ": visible ASCII, no blanks.
_HEADER_TOKEN = re.compile(r"[\x21-\x7e]+")


def bearer_problem(token: str) -> str | None:
    """Why ``token`` cannot be sent as ``Authorization: Bearer ...``; None when it can.

    Never quotes the token: a line break or a space in it would otherwise put the rest of
    the secret into a log line or an error message.
    """
    if _HEADER_TOKEN.fullmatch(token):
        return None
    if any(c in token for c in "\r\n"):
        return "holds a line break (a copy-paste artefact?); a header value cannot"
    if not token.isascii():
        return "holds non-ASCII characters; a header value cannot"
    return "holds whitespace or control characters; a bearer token cannot"


def optional_url(raw: str) -> str:
    return url(raw) if raw.strip() else ""


def nonempty(raw: str) -> str:
    if not raw.strip():
        raise ValueError("must not be empty")
    return raw.strip()


def text(raw: str) -> str:
    """Any string, surrounding blanks removed (client codes, paths that may be empty)."""
    return raw.strip()


def existing_file(raw: str) -> str:
    path = raw.strip()
    if path and not Path(path).is_file():
        raise ValueError(f"file not found: {path}")
    return path
