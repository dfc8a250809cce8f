"""Compile mapping entries into one closure per topic: decoded record -> ``ProfileUpdate``.

Everything a mapping says is decided here, once, at start-up: paths become ``dict.get``
chains, transforms become render functions, conditions become predicates, fixed id types
and sources become constants. Per event, ``TopicMapping.apply`` runs a loop over prepared
``(name, getter, render, default)`` tuples and builds the ``ProfileUpdate``: no parsing,
no lookup by name, no interpretation of the spec.

Outcomes of ``apply``:

- a ``ProfileUpdate`` (the same value ``consumer.core.validate.to_update`` builds);
- a ``Skip`` (a filter matched, a Debezium delete or tombstone, nothing left to change):
  not an error, the caller counts it by ``reason`` and settles the offset;
- ``MappingFailed`` (reason ``mapping_failed``, the path in the detail) or another
  ``ValidationError`` (the contract's limits): poison, for the dead-letter topic.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

from consumer.core.model import IdType, Priority, ProfileUpdate, TopicPartition
from consumer.core.validate import (
    MAX_ID_LENGTH,
    MAX_PROFILE_BYTES,
    attribute_name,
    check_profile_id,
    render_value,
)
from consumer.errors import DecodeError, MappingFailed, ValidationError
from consumer.mapping import paths
from consumer.mapping.codegen import Field, compile_fill
from consumer.mapping.conditions import Condition, ConditionError, compile_condition, path_getter
from consumer.mapping.transforms import TransformError, compile_render

# occurred_at units: how many milliseconds one unit is, or where the value comes from.
UNITS = ("millis", "micros", "seconds", "debezium", "kafka")
# Debezium ops whose ``after`` image is the current row: create, update, snapshot read.
DEBEZIUM_UPSERTS = frozenset({"c", "u", "r"})
ID_TYPE_NAMES = {
    "THIRD_PARTY_ID": IdType.THIRD_PARTY_ID,
    "PC_ID": IdType.PC_ID,
    "thirdPartyId": IdType.THIRD_PARTY_ID,
    "pcId": IdType.PC_ID,
}
_PRIORITIES = {"NORMAL": Priority.NORMAL, "URGENT": Priority.URGENT}
# Path names in messages for values that do not come from a field.
KAFKA_TIMESTAMP = "@timestamp"


class SkipReason(StrEnum):
    """Why a record produced no update. A metric label: keep the set small."""

    FILTERED = "filtered"  # skip_when matched
    DELETED = "deleted"  # Debezium delete ("d") or another op that is not a row image
    TOMBSTONE = "tombstone"  # a null value after a Debezium delete
    NO_CHANGE = "no_change"  # every mapped value was null or empty


class Skip(NamedTuple):
    """A record that changes nothing. Not poison: count it and settle its offset."""

    reason: SkipReason


SKIPS = {reason: Skip(reason) for reason in SkipReason}


@dataclass(frozen=True, slots=True)
class AttributeSpec:
    """One attribute as written in the file, kept for ``mapping check``."""

    name: str
    path: str | None
    transforms: tuple[str, ...]
    options: dict[str, Any]
    default: str | None


@dataclass(frozen=True, slots=True)
class EntrySpec:
    """The parsed entry, kept beside the compiled closure for ``mapping check``/``preview``."""

    label: str
    topics: tuple[str, ...]
    pattern: str | None
    schema: str | None  # the writer schema: for plain Avro, and for mapping check
    reader_schema: str | None  # read records with this schema (resolution), not as written
    debezium: bool
    id_path: str
    id_type: IdType | None
    id_type_path: str | None
    id_type_values: dict[str, IdType]
    id_prefix: str
    id_format: str | None
    occurred_at_path: str | None
    occurred_at_unit: str
    source: str
    source_path: str | None
    event_id_path: str | None
    priority_path: str | None
    urgent_when: Any
    skip_when: Any
    attributes: tuple[AttributeSpec, ...]
    attributes_from: str | None
    # The Kafka record key is the profile id (UTF-8), as the contract's producers do.
    keyed_by_profile: bool = False


Apply = Callable[[Any, TopicPartition, int, int | None], "ProfileUpdate | Skip"]


@dataclass(frozen=True, slots=True)
class TopicMapping:
    """A compiled entry. ``apply(record, tp, offset, timestamp_ms)`` maps one record.

    ``record`` is the decoded value, or None for a null value (a tombstone).
    ``timestamp_ms`` is the Kafka record timestamp (None or negative when it has none).
    """

    spec: EntrySpec
    apply: Apply = field(repr=False)

    @property
    def keyed_by_profile(self) -> bool:
        """Whether the entry declares its records keyed by profile id (``keyed_by_profile``).
        Only a declaration: the service does not compare keys with ids."""
        return self.spec.keyed_by_profile


class SpecProblems:
    """Collects every problem of a file, keyed ``topic / entry / path``, instead of the first."""

    def __init__(self) -> None:
        self.problems: dict[str, str] = {}

    def add(self, where: str, why: str) -> None:
        self.problems.setdefault(where, why)


def id_formatter(fmt: str | None, prefix: str) -> Callable[[Any], str]:
    if fmt is None:
        if prefix:
            return lambda value: prefix + (value if type(value) is str else str(value))
        return lambda value: value if type(value) is str else str(value)
    fields = list(string.Formatter().parse(fmt))
    replacements = [f for f in fields if f[1] is not None]
    if len(replacements) != 1 or replacements[0][1] != "" or replacements[0][3]:
        raise TransformError("'format' holds exactly one '{}' (with an optional spec: '{:08d}')")
    template = prefix.replace("{", "{{").replace("}", "}}") + fmt

    def formatted(value: Any) -> str:
        try:
            return template.format(value)
        except (ValueError, TypeError) as exc:
            raise TransformError(
                f"format {fmt!r} does not fit {type(value).__name__}: {exc}"
            ) from None

    return formatted


def _occurred_at(unit: str, path: str | None, debezium: bool) -> Callable[[Any, Any, Any], int]:
    """(image, root, kafka_timestamp) -> millis since the epoch."""
    if unit == "kafka":

        def from_kafka(image: Any, root: Any, timestamp: Any) -> int:
            if type(timestamp) is not int or timestamp < 0:
                raise MappingFailed(KAFKA_TIMESTAMP, "the Kafka record has no timestamp")
            return timestamp

        return from_kafka
    if unit == "debezium":
        where = "ts_ms"
        get = paths.compile_getter(("ts_ms",))
        on_root = True
        divisor, factor = 1, 1
    else:
        assert path is not None
        where = path
        on_root, get = path_getter(path)
        on_root = on_root or not debezium
        divisor = 1000 if unit == "micros" else 1
        factor = 1000 if unit == "seconds" else 1

    def from_field(image: Any, root: Any, timestamp: Any) -> int:
        value = get(root if on_root else image)
        if type(value) is not int:
            if value is None:
                raise MappingFailed(where, "occurred_at is missing")
            raise MappingFailed(where, f"occurred_at is a {type(value).__name__}, not an integer")
        if value < 0:
            raise ValidationError("invalid_occurred_at", f"occurred_at {value!r} is invalid")
        return value * factor // divisor

    return from_field


def _check_id(profile_id: str, path: str) -> str:
    if not profile_id.strip():
        raise ValidationError("invalid_profile_id", "profile id is empty")
    if len(profile_id) > MAX_ID_LENGTH:
        raise ValidationError("profile_id_too_long", f"profile id longer than {MAX_ID_LENGTH}")
    if not profile_id.isprintable():
        raise ValidationError("invalid_profile_id", "profile id has control characters")
    return profile_id


def _too_large(attributes: dict[str, str]) -> None:
    size = sum(len(k.encode("utf-8")) + len(v.encode("utf-8")) for k, v in attributes.items())
    if size > MAX_PROFILE_BYTES:
        raise ValidationError(
            "profile_too_large", f"attributes total {size} bytes, over Target's 64 KB per profile"
        )


def compile_entry(spec: EntrySpec) -> TopicMapping:
    """The closure for one entry. Raises ``TransformError``/``ConditionError`` on bad specs
    (the parser has already reported those with their location)."""
    debezium = spec.debezium
    id_on_root, get_id = path_getter(spec.id_path)
    id_on_root = id_on_root or not debezium
    id_path = spec.id_path
    prefix_format = id_formatter(spec.id_format, spec.id_prefix)
    fixed_id_type = spec.id_type or IdType.THIRD_PARTY_ID
    type_values = spec.id_type_values or ID_TYPE_NAMES
    get_type: paths.Getter | None = None
    type_on_root = False
    if spec.id_type_path is not None:
        type_on_root, get_type = path_getter(spec.id_type_path)
        type_on_root = type_on_root or not debezium
    type_path = spec.id_type_path or ""
    occurred = _occurred_at(spec.occurred_at_unit, spec.occurred_at_path, debezium)

    def side(path: str | None) -> tuple[bool, paths.Getter] | None:
        if path is None:
            return None
        on_root, get = path_getter(path)
        return on_root or not debezium, get

    source_get = side(spec.source_path)
    fixed_source = spec.source
    event_get = side(spec.event_id_path)
    priority_get = side(spec.priority_path)
    urgent: Condition | None = (
        compile_condition(spec.urgent_when, debezium) if spec.urgent_when is not None else None
    )
    skip: Condition | None = (
        compile_condition(spec.skip_when, debezium) if spec.skip_when is not None else None
    )
    constants: dict[str, str] = {}
    fields: list[Field] = []
    for attr in spec.attributes:
        if attr.transforms and attr.transforms[0] == "constant":
            render = compile_render(list(attr.transforms[1:]), {})
            value = render(attr.options["value"])
            if value:
                constants[attr.name] = value
            continue
        assert attr.path is not None
        on_root = attr.path.startswith(paths.ROOT_PREFIX)
        text = attr.path[len(paths.ROOT_PREFIX) :] if on_root else attr.path
        plain = not attr.transforms and not attr.options
        render = _PLAIN if plain else compile_render(list(attr.transforms), attr.options)
        fields.append(
            Field(
                attr.name,
                attr.path,
                paths.parse(text),
                on_root or not debezium,
                render,
                plain,
                attr.default,
            )
        )
    fill = compile_fill(fields)
    constants_chars = sum(len(k) + len(v) for k, v in constants.items())
    map_get = side(spec.attributes_from)
    names: dict[str, str] = {}

    def apply(record: Any, tp: TopicPartition, offset: int, timestamp: int | None) -> Any:
        if record is None:
            if debezium:
                return SKIPS[SkipReason.TOMBSTONE]
            raise DecodeError("empty_value", "record has no value (tombstone or empty)")
        if debezium:
            op = record.get("op")
            if op not in DEBEZIUM_UPSERTS:
                if op is None:
                    raise MappingFailed("op", "not a Debezium envelope: 'op' is missing")
                return SKIPS[SkipReason.DELETED]
            image = record.get("after")
            if type(image) is not dict:
                raise MappingFailed("after", f"op {op!r} without an 'after' image")
        else:
            image = record
        if skip is not None and skip(image, record):
            return SKIPS[SkipReason.FILTERED]

        raw_id = get_id(record if id_on_root else image)
        if raw_id is None:
            raise MappingFailed(id_path, "the profile id is missing")
        try:
            profile_id = prefix_format(raw_id)
        except TransformError as exc:
            raise MappingFailed(id_path, str(exc)) from None
        _check_id(profile_id, id_path)
        if get_type is not None:
            raw_type = get_type(record if type_on_root else image)
            id_type = type_values.get(raw_type) if type(raw_type) is str else None
            if id_type is None:
                raise MappingFailed(type_path, f"{raw_type!r:.40} is not a known id type")
        else:
            id_type = fixed_id_type
        if id_type is IdType.THIRD_PARTY_ID and ("+" in profile_id or "/" in profile_id):
            check_profile_id(id_type, profile_id)  # raises: Target refuses + and / (issue 11)
        occurred_at = occurred(image, record, timestamp)

        attributes = dict(constants) if constants else {}
        chars = constants_chars + fill(image, record, attributes)
        if map_get is not None:
            on_root, get = map_get
            raw_map = get(record if on_root else image)
            if type(raw_map) is dict:
                for raw_name, raw_value in raw_map.items():
                    name = names.get(raw_name) or _name(raw_name)
                    if type(raw_value) is str:
                        if not raw_value:
                            continue
                        value = raw_value
                    elif raw_value is None:
                        continue
                    else:
                        rendered = render_value(raw_value)
                        if rendered is None:
                            continue
                        value = rendered
                    attributes[name] = value
                    chars += len(name) + len(value)
        # A UTF-8 character is at most 4 bytes: count exactly only when it could matter.
        if chars * 4 > MAX_PROFILE_BYTES:
            _too_large(attributes)
        if not attributes:
            return SKIPS[SkipReason.NO_CHANGE]
        if urgent is not None and urgent(image, record):
            priority = Priority.URGENT
        elif priority_get is not None:
            on_root, get = priority_get
            priority = _PRIORITIES.get(get(record if on_root else image), Priority.NORMAL)
        else:
            priority = Priority.NORMAL
        if source_get is not None:
            on_root, get = source_get
            raw_source = get(record if on_root else image)
            source = "OTHER" if raw_source is None else str(raw_source)
        else:
            source = fixed_source
        if event_get is not None:
            on_root, get = event_get
            raw_event = get(record if on_root else image)
            event_id = "" if raw_event is None else str(raw_event)
        else:
            event_id = ""
        return ProfileUpdate(
            id_type, profile_id, attributes, priority, occurred_at, tp, offset, source, event_id
        )

    def _name(raw: str) -> str:
        name = attribute_name(raw)
        if len(names) < 100_000:  # bounded, as in consumer.core.validate
            names[raw] = name
        return name

    return TopicMapping(spec, apply)


_PLAIN = compile_render([], {})


def topic_matcher(spec: EntrySpec) -> Callable[[str], bool]:
    if spec.pattern is not None:
        regex = re.compile(spec.pattern)
        return lambda topic: regex.fullmatch(topic) is not None
    topics = frozenset(spec.topics)
    return topics.__contains__


__all__ = [
    "SKIPS",
    "UNITS",
    "AttributeSpec",
    "ConditionError",
    "EntrySpec",
    "Skip",
    "SkipReason",
    "SpecProblems",
    "TopicMapping",
    "compile_entry",
    "topic_matcher",
]
