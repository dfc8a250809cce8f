"""The attribute loop of an entry, generated as one Python function at start-up.

A loop over ``(name, getter, render, default)`` tuples costs ~0.3 us per attribute in
tuple unpacking and closure calls; the generated function reads every path with inline
``dict.get`` calls and handles the common case (a string field, no transform) without any
call at all. Only literals go into the source, and only as ``repr`` of values the spec
parser has already validated (field names match ``[A-Za-z_][A-Za-z0-9_]*`` or are integers;
Target names are printable without spaces); renders and defaults are passed in as objects.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from consumer.errors import MappingFailed
from consumer.mapping.transforms import Render, TransformError

Fill = Callable[[Any, Any, dict[str, str]], int]


class Field(NamedTuple):
    name: str  # the Target name
    path: str  # as written, for messages
    segments: tuple[str | int, ...]
    on_root: bool  # read from the whole record, not the Debezium after image
    render: Render
    plain: bool  # no transform: a string is used as it is
    default: str | None


def _read(lines: list[str], source: str, segments: tuple[str | int, ...]) -> None:
    """Lines setting ``v`` to the value at ``segments`` (None when absent)."""
    first, *rest = segments
    if isinstance(first, int):  # the root is a record, never an array
        lines.append("    v = None")
        return
    lines.append(f"    v = {source}.get({first!r})")
    for segment in rest:
        if isinstance(segment, int):  # paths.parse allows non-negative indexes only
            lines.append(
                f"    v = v[{segment}] if type(v) is list and {segment} < len(v) else None"
            )
        else:
            lines.append(f"    v = v.get({segment!r}) if type(v) is dict else None")


def compile_fill(fields: list[Field]) -> Fill:
    """``fill(image, record, attributes) -> chars``: sets each field's rendered value in
    ``attributes`` and returns the characters added (names + values)."""
    lines = ["def fill(image, record, attributes):", "    chars = 0"]
    namespace: dict[str, Any] = {"TransformError": TransformError, "MappingFailed": MappingFailed}
    for i, field in enumerate(fields):
        namespace[f"r{i}"] = field.render
        namespace[f"d{i}"] = field.default
        name = repr(field.name)
        size = len(field.name)
        _read(lines, "record" if field.on_root else "image", field.segments)
        lines.append("    if v is None:")
        if field.default is not None:
            lines.append(f"        attributes[{name}] = d{i}")
            lines.append(f"        chars += {size + len(field.default)}")
        else:
            lines.append("        pass")
        if field.plain:
            lines.append("    elif type(v) is str and v:")
            lines.append(f"        attributes[{name}] = v")
            lines.append(f"        chars += {size} + len(v)")
        lines.append("    else:")
        lines.append("        try:")
        lines.append(f"            t = r{i}(v) or d{i}")
        lines.append("        except TransformError as exc:")
        lines.append(
            f"            raise MappingFailed({field.path!r}, "
            f"'attribute ' + {name} + ': ' + str(exc)) from None"
        )
        lines.append("        if t:")
        lines.append(f"            attributes[{name}] = t")
        lines.append(f"            chars += {size} + len(t)")
    lines.append("    return chars")
    code = compile("\n".join(lines), "<mapping attributes>", "exec")
    exec(code, namespace)  # the source holds only repr'd, validated literals (see above)
    fill: Fill = namespace["fill"]
    return fill
