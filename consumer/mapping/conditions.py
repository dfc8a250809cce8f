"""Conditions for ``urgent_when`` and ``skip_when``, compiled once into closures.

A condition is a small YAML mapping::

    {path: tier, equals: gold}              {path: op, in: [c, u]}
    {path: email, exists: true}             {path: basket_total, gte: 100, scale: 2}
    {changed: tier}                         (Debezium: ``before`` and ``after`` differ)
    {all: [...]}  {any: [...]}  {not: {...}}

Paths read the record (for Debezium: the ``after`` image); ``$.``-paths read the whole
record. A missing field never matches ``equals``/``in``/comparisons and matches
``exists: false``. Each compiled condition takes ``(image, root)`` and returns a bool.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from consumer.mapping import paths
from consumer.mapping.transforms import TransformError, to_decimal

Condition = Callable[[Any, Any], bool]

_COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}
TESTS = frozenset({"equals", "not_equals", "in", "not_in", "exists", *_COMPARISONS})


class ConditionError(ValueError):
    """The condition is not well formed; the message says where."""


def path_getter(path: str) -> tuple[bool, paths.Getter]:
    """``(reads_root, getter)`` for a condition or entry path."""
    try:
        if path.startswith(paths.ROOT_PREFIX):
            return True, paths.compile_getter(paths.parse(path[len(paths.ROOT_PREFIX) :]))
        return False, paths.compile_getter(paths.parse(path))
    except paths.PathSyntaxError as exc:
        raise ConditionError(str(exc)) from None


def referenced_paths(spec: Any) -> list[str]:
    """Every path a condition reads (for ``mapping check``); assumes ``compile`` accepted it."""
    if not isinstance(spec, dict):
        return []
    found: list[str] = []
    for key in ("all", "any"):
        for child in spec.get(key) or []:
            found += referenced_paths(child)
    if "not" in spec:
        found += referenced_paths(spec["not"])
    for key in ("path", "changed"):
        if isinstance(spec.get(key), str):
            found.append(spec[key])
    return found


def compile_condition(spec: Any, debezium: bool) -> Condition:
    """A closure for ``spec``; raises ``ConditionError`` naming what is wrong."""
    if not isinstance(spec, dict) or not spec:
        raise ConditionError("a condition is a mapping such as {path: tier, equals: gold}")
    keys = set(spec)
    for combinator in ("all", "any"):
        if combinator in keys:
            if keys != {combinator}:
                raise ConditionError(f"{combinator!r} stands alone in its mapping")
            children = spec[combinator]
            if not isinstance(children, list) or not children:
                raise ConditionError(f"{combinator!r} takes a non-empty list of conditions")
            parts = tuple(compile_condition(c, debezium) for c in children)
            if combinator == "all":
                return lambda image, root: all(p(image, root) for p in parts)
            return lambda image, root: any(p(image, root) for p in parts)
    if "not" in keys:
        if keys != {"not"}:
            raise ConditionError("'not' stands alone in its mapping")
        inner = compile_condition(spec["not"], debezium)
        return lambda image, root: not inner(image, root)
    if "changed" in keys:
        return _changed(spec, debezium)
    return _test(spec)


def _changed(spec: dict[str, Any], debezium: bool) -> Condition:
    if set(spec) != {"changed"}:
        raise ConditionError("'changed' stands alone in its mapping")
    if not debezium:
        raise ConditionError("'changed' needs a Debezium envelope (before and after)")
    on_root, get = path_getter(spec["changed"])
    if on_root:
        raise ConditionError("'changed' compares a field of the images, not a $. path")

    def changed(image: Any, root: Any) -> bool:
        before = root.get("before")
        # No before image (a create, or a table without full replica identity): a value
        # that is there now counts as changed.
        old = get(before) if type(before) is dict else None
        return bool(get(image) != old)

    return changed


def _test(spec: dict[str, Any]) -> Condition:
    if "path" not in spec:
        raise ConditionError("a test needs 'path' (or use all/any/not/changed)")
    tests = set(spec) - {"path", "scale"}
    if len(tests) != 1 or not tests <= TESTS:
        raise ConditionError(f"a test has exactly one of {', '.join(sorted(TESTS))}")
    (test,) = tests
    on_root, get = path_getter(spec["path"])
    pick: Callable[[Any, Any], Any] = (
        (lambda image, root: get(root)) if on_root else (lambda image, root: get(image))
    )
    operand = spec[test]
    if test in ("equals", "not_equals"):
        if isinstance(operand, (list, dict)):
            raise ConditionError(f"{test!r} takes a single value (use 'in' for a list)")
        if test == "equals":
            if on_root:
                return lambda image, root: bool(get(root) == operand)
            return lambda image, root: bool(get(image) == operand)
        return lambda image, root: bool(pick(image, root) != operand)
    if test in ("in", "not_in"):
        if not isinstance(operand, list) or not operand:
            raise ConditionError(f"{test!r} takes a non-empty list")
        try:
            members = frozenset(operand)
        except TypeError:
            raise ConditionError(f"{test!r} takes a list of plain values") from None
        negate = test == "not_in"
        return lambda image, root: (pick(image, root) in members) != negate
    if test == "exists":
        if not isinstance(operand, bool):
            raise ConditionError("'exists' takes true or false")
        return lambda image, root: (pick(image, root) is not None) == operand
    try:
        threshold = Decimal(str(operand))
    except InvalidOperation:
        raise ConditionError(f"{test!r} takes a number") from None
    if isinstance(operand, bool) or not threshold.is_finite():
        raise ConditionError(f"{test!r} takes a number")
    compare = _COMPARISONS[test]
    scale = spec.get("scale")
    if scale is not None and (type(scale) is not int or scale < 0):
        raise ConditionError("'scale' must be a non-negative integer")

    # Integers (and decimal bytes, as unscaled integers) compare exactly with a Decimal:
    # no Decimal is built per event for them.
    unscaled = threshold.scaleb(scale) if scale is not None else threshold

    def comparison(image: Any, root: Any) -> bool:
        value = pick(image, root)
        kind = type(value)
        if kind is int and scale is None:
            return bool(compare(value, threshold))
        if kind is bytes and scale is not None:
            return bool(compare(int.from_bytes(value, "big", signed=True), unscaled))
        if value is None:
            return False
        try:
            return bool(compare(to_decimal(value, scale), threshold))
        except TransformError:
            return False

    return comparison
