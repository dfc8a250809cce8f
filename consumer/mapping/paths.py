"""Field paths: ``customer.number``, ``items.0.sku``, ``$.source.table``.

A path is parsed once, at start-up, into a getter closure that does direct ``dict.get``
calls: no per-event parsing or interpretation. A missing key, a null on the way or a type
that cannot be indexed all read as ``None`` (the attribute is absent); the caller decides
whether that is fine (an optional attribute) or poison (the profile id).

Decoded Avro is plain Python: records and maps are dicts, arrays lists, unions the value of
their branch. A numeric segment indexes an array.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Getter = Callable[[Any], Any]

# The prefix that makes a path start at the whole record instead of the Debezium ``after``
# image: ``$.op``, ``$.source.table``.
ROOT_PREFIX = "$."
_SEGMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+")


class PathSyntaxError(ValueError):
    """The text is not a path."""


def parse(path: str) -> tuple[str | int, ...]:
    """The segments of ``path`` (without a ``$.`` prefix); raises ``PathSyntaxError``."""
    if not isinstance(path, str) or not path:
        raise PathSyntaxError("a path must be a non-empty string")
    segments: list[str | int] = []
    for part in path.split("."):
        if not _SEGMENT.fullmatch(part):
            raise PathSyntaxError(f"{path!r}: segment {part!r} is not a field name or an index")
        segments.append(int(part) if part.isdigit() else part)
    return tuple(segments)


def _step(segment: str | int) -> Getter:
    if isinstance(segment, int):

        def index(value: Any) -> Any:
            if type(value) is list and -len(value) <= segment < len(value):
                return value[segment]
            return None

        return index

    def key(value: Any) -> Any:
        return value.get(segment) if type(value) is dict else None

    return key


def compile_getter(segments: tuple[str | int, ...]) -> Getter:
    """A closure reading ``segments`` from a decoded record; unrolled for 1-3 field names."""
    if all(isinstance(s, str) for s in segments):
        if len(segments) == 1:
            (a,) = segments

            def get1(r: Any) -> Any:
                return r.get(a)

            return get1
        if len(segments) == 2:
            a, b = segments

            def get2(r: Any) -> Any:
                v = r.get(a)
                return v.get(b) if type(v) is dict else None

            return get2
        if len(segments) == 3:
            a, b, c = segments

            def get3(r: Any) -> Any:
                v = r.get(a)
                if type(v) is not dict:
                    return None
                v = v.get(b)
                return v.get(c) if type(v) is dict else None

            return get3
    steps = [_step(s) for s in segments]
    first = steps[0]
    rest = steps[1:]

    def get_n(r: Any) -> Any:
        v = first(r)
        for step in rest:
            if v is None:
                return None
            v = step(v)
        return v

    # The root is always a dict (a decoded record), so the first step may be a plain get.
    return get_n
