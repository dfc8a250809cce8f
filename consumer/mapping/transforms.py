"""Transforms: from a decoded field value to the Target string, compiled once per attribute.

Every transform ends in the rendering rule of the event contract (schemas/README.md,
``consumer.core.validate.render_value``): strings as is, integers in decimal, doubles in
shortest round-trip form, booleans ``true``/``false``; ``None`` or ``""`` means "no change".
Decimals are exact: Avro ``decimal`` bytes become ``decimal.Decimal`` and are printed in
fixed notation, never through a float (no ``19.990000000000002``).

A value of the wrong type raises ``TransformError``; the engine turns it into a
``mapping_failed`` dead letter naming the path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from consumer.core.validate import render_value
from consumer.errors import ValidationError

Render = Callable[[Any], str | None]

# Transforms that read a value and produce a Target string. At most one per attribute.
VALUE_TRANSFORMS = frozenset(
    {"string", "decimal", "number", "boolean", "date", "join", "count", "sum", "constant"}
)
# Transforms applied to the string a value transform produced.
TEXT_TRANSFORMS = frozenset({"lower", "upper"})
TRANSFORMS = VALUE_TRANSFORMS | TEXT_TRANSFORMS
# Options each transform accepts (besides path, transform, default).
OPTIONS: dict[str, frozenset[str]] = {
    "string": frozenset(),
    "decimal": frozenset({"scale", "places"}),
    "number": frozenset({"places"}),
    "boolean": frozenset(),
    "date": frozenset({"unit", "format"}),
    "join": frozenset({"separator", "item", "scale"}),
    "count": frozenset(),
    "sum": frozenset({"item", "scale", "places"}),
    "constant": frozenset({"value"}),
    "lower": frozenset(),
    "upper": frozenset(),
}
# unit -> (multiply, divide) to reach milliseconds
DATE_UNITS = {"days": (86_400_000, 1), "seconds": (1000, 1), "millis": (1, 1), "micros": (1, 1000)}
DATE_FORMATS = ("date", "datetime")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Distinct days whose text is kept; a stream spans few, a bound keeps memory fixed anyway.
_DAY_CACHE = 4096
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})


class TransformError(ValueError):
    """A value does not fit its transform (or an option is wrong, at compile time)."""


def _fixed(value: Decimal) -> str:
    """A decimal in fixed notation, without exponent: ``1E-7`` prints as ``0.0000001``."""
    return format(value, "f")


def scaled_text(unscaled: int, scale: int) -> str:
    """The fixed-notation text of ``unscaled * 10**-scale``: integer arithmetic, no Decimal
    (three times faster, and this runs per amount per event)."""
    if scale == 0:
        return str(unscaled)
    digits = str(-unscaled if unscaled < 0 else unscaled).rjust(scale + 1, "0")
    sign = "-" if unscaled < 0 else ""
    return f"{sign}{digits[:-scale]}.{digits[-scale:]}"


def _quantizer(places: int | None) -> Decimal | None:
    return None if places is None else Decimal(1).scaleb(-places)


def to_decimal(value: Any, scale: int | None) -> Decimal:
    """An exact ``Decimal`` of an Avro decimal (bytes + scale), an int, float or Decimal."""
    kind = type(value)
    if kind is bytes:
        if scale is None:
            raise TransformError("bytes need the decimal's scale (option 'scale')")
        return Decimal(int.from_bytes(value, "big", signed=True)).scaleb(-scale)
    if kind is int:
        return Decimal(value)
    if kind is float:
        if not math.isfinite(value):
            raise TransformError(f"{value} is not a finite number")
        return Decimal(repr(value))  # the shortest form: 19.99, not 19.989999999999998...
    if kind is Decimal:
        return value  # type: ignore[no-any-return]
    if kind is str:
        try:
            parsed = Decimal(value)
        except InvalidOperation:
            raise TransformError(f"{value[:40]!r} is not a number") from None
        if not parsed.is_finite():
            raise TransformError(f"{value[:40]!r} is not a finite number")
        return parsed
    raise TransformError(f"expected a number or a decimal, got {kind.__name__}")


def _render(value: Any) -> str | None:
    try:
        return render_value(value)
    except ValidationError as exc:
        raise TransformError(exc.detail) from None


def _string() -> Render:
    def string(value: Any) -> str | None:
        if type(value) is str:
            return value or None
        if type(value) is bytes:
            raise TransformError("bytes cannot be rendered as text (a decimal? use 'decimal')")
        return _render(value)

    return string


def _decimal(scale: int | None, places: int | None) -> Render:
    quantum = _quantizer(places)

    def decimal(value: Any) -> str | None:
        if scale is not None and quantum is None and type(value) is bytes:
            return scaled_text(int.from_bytes(value, "big", signed=True), scale)
        number = to_decimal(value, scale)
        if quantum is not None:
            number = number.quantize(quantum, ROUND_HALF_EVEN)
        return _fixed(number)

    return decimal


def _number(places: int | None) -> Render:
    if places is None:

        def number(value: Any) -> str | None:
            kind = type(value)
            if kind is int or kind is float:
                return _render(value)
            if kind is Decimal:
                return _fixed(value)
            raise TransformError(f"expected a number, got {kind.__name__}")

        return number
    return _decimal(None, places)


def _boolean() -> Render:
    def boolean(value: Any) -> str | None:
        if value is True or value is False:
            return "true" if value else "false"
        if type(value) is int and value in (0, 1):
            return "true" if value else "false"
        if type(value) is str:
            text = value.strip().lower()
            if text in _TRUE:
                return "true"
            if text in _FALSE:
                return "false"
            if not text:
                return None
        raise TransformError(f"{value!r:.40} is not a boolean")

    return boolean


def _date(unit: str, fmt: str) -> Render:
    multiply, divide = DATE_UNITS[unit]
    with_time = fmt == "datetime"
    # Dates repeat (a stream covers few days): the day's text is cached, the time of day
    # computed with integer arithmetic. datetime + strftime per event cost ~2.5 us.
    days: dict[int, str] = {}

    def day_text(day: int) -> str:
        text = days.get(day)
        if text is None:
            try:
                text = (_EPOCH + timedelta(days=day)).strftime("%Y-%m-%d")
            except OverflowError:
                raise TransformError(f"day {day} is out of range") from None
            if len(days) >= _DAY_CACHE:
                days.clear()
            days[day] = text
        return text

    def date(value: Any) -> str | None:
        if type(value) is int:
            millis = value * multiply // divide
        elif type(value) is datetime:
            millis = int(value.timestamp() * 1000)
        else:
            raise TransformError(f"expected an integer in {unit}, got {type(value).__name__}")
        day, in_day = divmod(millis, 86_400_000)
        if not with_time:
            return day_text(day)
        minutes, seconds = divmod(in_day // 1000, 60)
        hours, minutes = divmod(minutes, 60)
        return f"{day_text(day)}T{hours:02d}:{minutes:02d}:{seconds:02d}Z"

    return date


def _item_getter(item: str | None) -> Callable[[Any], Any]:
    if item is None:
        return lambda v: v
    return lambda v: v.get(item) if type(v) is dict else None  # an array of records


def _join(separator: str, item: str | None, scale: int | None) -> Render:
    get = _item_getter(item)
    element = _decimal(scale, None) if scale is not None else _string()

    def join(value: Any) -> str | None:
        if type(value) is not list:
            raise TransformError(f"expected an array, got {type(value).__name__}")
        parts = []
        for entry in value:
            raw = get(entry)
            if type(raw) is str and scale is None:
                if raw:
                    parts.append(raw)
            elif raw is not None:
                text = element(raw)
                if text:
                    parts.append(text)
        return separator.join(parts) or None

    return join


def _count() -> Render:
    def count(value: Any) -> str | None:
        if type(value) is list or type(value) is dict:
            return str(len(value))
        raise TransformError(f"expected an array or a map, got {type(value).__name__}")

    return count


def _sum(item: str | None, scale: int | None, places: int | None) -> Render:
    get = _item_getter(item)
    quantum = _quantizer(places)

    def total(value: Any) -> str | None:
        if type(value) is not list:
            raise TransformError(f"expected an array, got {type(value).__name__}")
        if quantum is None:
            # Integers and decimal bytes add up exactly as integers: no Decimal needed.
            exact = 0
            raw: Any
            for entry in value:
                raw = entry if item is None else entry.get(item) if type(entry) is dict else None
                kind = type(raw)
                if kind is int:
                    if scale:
                        break
                    exact += raw
                elif kind is bytes and scale is not None:
                    exact += int.from_bytes(raw, "big", signed=True)
                elif raw is not None:
                    break
            else:
                return scaled_text(exact, scale) if scale else str(exact)
        result = Decimal(0)
        for entry in value:
            raw = get(entry)
            if raw is not None:
                result += to_decimal(raw, scale)
        if quantum is not None:
            result = result.quantize(quantum, ROUND_HALF_EVEN)
        return _fixed(result)

    return total


def _int_option(options: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    value = options.get(name)
    if value is None:
        return None
    if type(value) is not int or not low <= value <= high:
        raise TransformError(f"option {name!r} must be an integer from {low} to {high}")
    return value


def compile_render(names: list[str], options: Mapping[str, Any]) -> Render:
    """One function value -> Target string for the transform chain ``names``.

    ``names`` holds at most one value transform (default ``string``) and any text
    transforms after it. Raises ``TransformError`` for an unknown name or a bad option.
    """
    unknown = [n for n in names if n not in TRANSFORMS]
    if unknown:
        raise TransformError(
            f"unknown transform {unknown[0]!r} (known: {', '.join(sorted(TRANSFORMS))})"
        )
    values = [n for n in names if n in VALUE_TRANSFORMS]
    if len(values) > 1:
        raise TransformError(f"at most one of {', '.join(values)} per attribute")
    texts = [n for n in names if n in TEXT_TRANSFORMS]
    if values and names.index(values[0]) > 0:
        raise TransformError(f"{values[0]!r} must come before {', '.join(texts)}")
    kind = values[0] if values else "string"
    allowed = OPTIONS[kind]
    extra = sorted(set(options) - allowed)
    if extra:
        raise TransformError(f"option {extra[0]!r} does not apply to transform {kind!r}")
    scale = _int_option(options, "scale", 0, 38)
    places = _int_option(options, "places", 0, 38)
    render: Render
    if kind == "string":
        render = _string()
    elif kind == "decimal":
        render = _decimal(scale, places)
    elif kind == "number":
        render = _number(places)
    elif kind == "boolean":
        render = _boolean()
    elif kind == "date":
        unit = options.get("unit", "millis")
        fmt = options.get("format", "date")
        if unit not in DATE_UNITS:
            raise TransformError(f"unit must be one of {', '.join(DATE_UNITS)}")
        if fmt not in DATE_FORMATS:
            raise TransformError(f"format must be one of {', '.join(DATE_FORMATS)}")
        render = _date(unit, fmt)
    elif kind == "join":
        separator = options.get("separator", ",")
        if not isinstance(separator, str):
            raise TransformError("option 'separator' must be a string")
        render = _join(separator, _str_option(options, "item"), scale)
    elif kind == "count":
        render = _count()
    elif kind == "sum":
        render = _sum(_str_option(options, "item"), scale, places)
    else:  # constant: handled by the engine, which renders the value once
        render = _string()
    for index, text in enumerate(texts):
        change = str.lower if text == "lower" else str.upper
        # The common case (a string field, one case change) is fused into one call.
        fused = index == 0 and kind == "string"
        render = _text(change) if fused else _then(render, change)
    return render


def _text(change: Callable[[str], str]) -> Render:
    string = _string()

    def text(value: Any) -> str | None:
        if type(value) is str:
            return change(value) if value else None
        rendered = string(value)
        return change(rendered) if rendered else None

    return text


def _str_option(options: Mapping[str, Any], name: str) -> str | None:
    value = options.get(name)
    if value is not None and (not isinstance(value, str) or not value):
        raise TransformError(f"option {name!r} must be a field name")
    return value


def _then(render: Render, text: Callable[[str], str]) -> Render:
    def chained(value: Any) -> str | None:
        rendered = render(value)
        return text(rendered) if rendered else None

    return chained
