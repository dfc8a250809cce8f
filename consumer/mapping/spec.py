"""Reading a mapping file: YAML -> checked ``EntrySpec`` values -> a ``Mappings`` set.

Every problem of the file is collected, named ``topic / entry / path`` (``pos.purchases /
basketTotal / basket.total``), and raised together as one ``MappingSpecError``, so a user
fixes the whole file in one pass. Duplicate keys are an error, not "the last one wins":
two attributes with the same Target name would silently lose one of them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from consumer.core.model import IdType
from consumer.core.validate import attribute_name
from consumer.errors import MappingSpecError, ValidationError
from consumer.mapping import paths
from consumer.mapping.conditions import ConditionError, compile_condition
from consumer.mapping.engine import (
    ID_TYPE_NAMES,
    UNITS,
    AttributeSpec,
    EntrySpec,
    SpecProblems,
    TopicMapping,
    compile_entry,
    id_formatter,
    topic_matcher,
)
from consumer.mapping.transforms import TransformError, compile_render

# The contract mapping that ships with the service: ProfileChange is one mapping among others.
# In a wheel the schemas sit inside the package; in a source checkout beside it.
_PACKAGE = Path(__file__).resolve().parent.parent
SCHEMA_DIR = (
    _PACKAGE / "schemas" if (_PACKAGE / "schemas").is_dir() else _PACKAGE.parent / "schemas"
)
BUILTIN_MAPPING = SCHEMA_DIR / "profile_change.mapping.yaml"
EXAMPLES_DIR = SCHEMA_DIR / "examples"

_ENTRY_KEYS = frozenset(
    {
        "topic", "topics", "topic_pattern", "name", "schema", "reader_schema", "envelope",
        "profile", "occurred_at", "source", "source_from", "event_id", "priority_from",
        "urgent_when", "skip_when", "attributes", "attributes_from", "keyed_by_profile",
    }
)  # fmt: skip
_PROFILE_KEYS = frozenset({"id", "id_type", "id_type_from", "id_types", "prefix", "format"})
_ATTRIBUTE_KEYS = frozenset({"path", "transform", "default"})


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key twice in one mapping."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


class Mappings:
    """The compiled entries of one file; ``for_topic`` finds a topic's entry (cached)."""

    def __init__(self, entries: list[TopicMapping], source: str) -> None:
        self.entries = entries
        self.source = source
        self._matchers = [(topic_matcher(e.spec), e) for e in entries]
        self._by_topic: dict[str, TopicMapping | None] = {}

    def for_topic(self, topic: str) -> TopicMapping | None:
        """The entry for ``topic``: exact names first, then patterns in file order."""
        try:
            return self._by_topic[topic]
        except KeyError:
            pass
        found = next((e for e in self.entries if topic in e.spec.topics), None)
        if found is None:
            found = next((e for match, e in self._matchers if match(topic)), None)
        if len(self._by_topic) < 10_000:  # topics are few; a bound keeps memory fixed anyway
            self._by_topic[topic] = found
        return found

    def keyed_by_profile(self, topic: str) -> bool:
        """True when ``topic``'s entry declares that each record's Kafka key is its profile
        id (``keyed_by_profile: true``): a profile's records then share one partition."""
        entry = self.for_topic(topic)
        return entry is not None and entry.keyed_by_profile


def load_file(path: str | Path) -> Mappings:
    """Parse and compile a mapping file; raises ``MappingSpecError`` listing every problem."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingSpecError({str(file): f"cannot read: {exc.strerror}"}) from None
    return parse_text(text, file.parent, str(file))


def load_builtin() -> Mappings:
    """The bundled mapping of the ``ProfileChange`` contract."""
    return load_file(BUILTIN_MAPPING)


def parse_text(text: str, base: Path, source: str = "mapping") -> Mappings:
    try:
        document = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise MappingSpecError({source: f"not valid YAML: {exc}"}) from None
    return parse_document(document, base, source)


def parse_document(document: Any, base: Path, source: str = "mapping") -> Mappings:
    problems = SpecProblems()
    if not isinstance(document, dict) or not isinstance(document.get("mappings"), list):
        raise MappingSpecError({source: "expected a mapping with a list under 'mappings'"})
    if document.get("version", 1) != 1:
        problems.add(f"{source}: version", "only version 1 is known")
    extra = set(document) - {"version", "mappings"}
    if extra:
        problems.add(f"{source}: {sorted(extra)[0]}", "unknown key")
    specs: list[EntrySpec] = []
    claimed: dict[str, str] = {}
    for index, raw in enumerate(document["mappings"]):
        spec = _entry(raw, index, base, problems)
        if spec is None:
            continue
        for topic in spec.topics:
            if topic in claimed:
                problems.add(f"{topic}", f"mapped twice (entries {claimed[topic]} and {index})")
            claimed[topic] = str(index)
        specs.append(spec)
    entries: list[TopicMapping] = []
    if not problems.problems:
        for spec in specs:
            try:
                entries.append(compile_entry(spec))
            except (TransformError, ConditionError, paths.PathSyntaxError) as exc:
                problems.add(spec.label, str(exc))
    if problems.problems:
        raise MappingSpecError(problems.problems)
    return Mappings(entries, source)


def _label(raw: dict[str, Any], index: int) -> str:
    for key in ("name", "topic", "topic_pattern"):
        if isinstance(raw.get(key), str) and raw[key]:
            return str(raw[key])
    topics = raw.get("topics")
    if isinstance(topics, list) and topics and isinstance(topics[0], str):
        return str(topics[0])
    return f"mappings[{index}]"


def _path(
    value: Any, where: str, problems: SpecProblems, allow_root: bool, required: bool = True
) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str):
        problems.add(where, "expected a field path such as customer.number")
        return None
    text = value
    if text.startswith(paths.ROOT_PREFIX):
        if not allow_root:
            problems.add(where, "'$.' paths need envelope: debezium")
            return None
        text = text[len(paths.ROOT_PREFIX) :]
    try:
        paths.parse(text)
    except paths.PathSyntaxError as exc:
        problems.add(where, str(exc))
        return None
    return value


def _entry(raw: Any, index: int, base: Path, problems: SpecProblems) -> EntrySpec | None:
    if not isinstance(raw, dict):
        problems.add(f"mappings[{index}]", "an entry is a mapping (topic, profile, ...)")
        return None
    label = _label(raw, index)
    before = len(problems.problems)
    for key in sorted(set(raw) - _ENTRY_KEYS):
        problems.add(f"{label} / {key}", "unknown key")

    topics: tuple[str, ...] = ()
    pattern: str | None = None
    chosen = [k for k in ("topic", "topics", "topic_pattern") if k in raw]
    if len(chosen) != 1:
        problems.add(f"{label} / topic", "give exactly one of topic, topics, topic_pattern")
    elif chosen[0] == "topic" and isinstance(raw["topic"], str) and raw["topic"]:
        topics = (raw["topic"],)
    elif chosen[0] == "topics" and isinstance(raw["topics"], list) and raw["topics"]:
        topics = tuple(str(t) for t in raw["topics"])
    elif chosen[0] == "topic_pattern" and isinstance(raw["topic_pattern"], str):
        pattern = raw["topic_pattern"]
        try:
            re.compile(pattern)
        except re.error as exc:
            problems.add(f"{label} / topic_pattern", f"not a regular expression: {exc}")
    else:
        problems.add(f"{label} / {chosen[0]}", "expected a topic name (or a list, or a regex)")

    schema = _file(raw, "schema", base, label, problems)
    reader_schema = _file(raw, "reader_schema", base, label, problems)
    envelope = raw.get("envelope")
    if envelope not in (None, "none", "debezium"):
        problems.add(f"{label} / envelope", "envelope is 'none' or 'debezium'")
    debezium = envelope == "debezium"

    def path_at(key: str, value: Any, required: bool = True) -> str | None:
        return _path(value, f"{label} / {key}", problems, debezium, required)

    profile = raw.get("profile")
    id_path: str | None = None
    id_type: IdType | None = None
    id_type_path: str | None = None
    id_type_values: dict[str, IdType] = {}
    id_format: str | None = None
    id_prefix = ""
    if not isinstance(profile, dict):
        problems.add(f"{label} / profile", "required: where the profile id is (profile.id)")
    else:
        for key in sorted(set(profile) - _PROFILE_KEYS):
            problems.add(f"{label} / profile.{key}", "unknown key")
        id_path = path_at("profile.id", profile.get("id"))
        if "id_type" in profile and "id_type_from" in profile:
            problems.add(f"{label} / profile.id_type", "give id_type or id_type_from, not both")
        if "id_type_from" in profile:
            id_type_path = path_at("profile.id_type_from", profile["id_type_from"])
        else:
            id_type = ID_TYPE_NAMES.get(profile.get("id_type", "THIRD_PARTY_ID"))
            if id_type is None:
                problems.add(f"{label} / profile.id_type", "THIRD_PARTY_ID or PC_ID")
        values = profile.get("id_types") or {}
        if not isinstance(values, dict):
            problems.add(f"{label} / profile.id_types", "a mapping of field value to id type")
        else:
            for value, name in values.items():
                if name not in ID_TYPE_NAMES:
                    problems.add(f"{label} / profile.id_types.{value}", "THIRD_PARTY_ID or PC_ID")
                else:
                    id_type_values[str(value)] = ID_TYPE_NAMES[name]
        prefix = profile.get("prefix", "")
        fmt = profile.get("format")
        if not isinstance(prefix, str) or (fmt is not None and not isinstance(fmt, str)):
            problems.add(f"{label} / profile.prefix", "prefix and format are strings")
        else:
            id_prefix = prefix
            id_format = _id_format(fmt, f"{label} / profile.format", problems)

    occurred = raw.get("occurred_at")
    occurred_path: str | None = None
    unit = "millis"
    if isinstance(occurred, str):
        occurred = {"path": occurred}
    if not isinstance(occurred, dict):
        problems.add(f"{label} / occurred_at", "required: {path: ..., unit: millis}")
    else:
        unit = occurred.get("unit", "millis")
        if unit not in UNITS:
            problems.add(f"{label} / occurred_at.unit", f"one of {', '.join(UNITS)}")
        elif unit == "debezium" and not debezium:
            problems.add(f"{label} / occurred_at.unit", "'debezium' needs envelope: debezium")
        if unit in ("kafka", "debezium"):
            if "path" in occurred:
                problems.add(f"{label} / occurred_at.path", f"unit {unit} takes no path")
        else:
            occurred_path = path_at("occurred_at.path", occurred.get("path"))

    source = raw.get("source", "OTHER")
    if not isinstance(source, str) or not source:
        problems.add(f"{label} / source", "a constant such as POS (or use source_from)")
        source = "OTHER"
    source_path = path_at("source_from", raw.get("source_from"), required=False)
    event_id_path = path_at("event_id", raw.get("event_id"), required=False)
    priority_path = path_at("priority_from", raw.get("priority_from"), required=False)
    conditions = {}
    for key in ("urgent_when", "skip_when"):
        if raw.get(key) is not None:
            try:
                compile_condition(raw[key], debezium)
                conditions[key] = raw[key]
            except ConditionError as exc:
                problems.add(f"{label} / {key}", str(exc))

    keyed_by_profile = raw.get("keyed_by_profile", False)
    if not isinstance(keyed_by_profile, bool):
        problems.add(f"{label} / keyed_by_profile", "true or false")
    attributes = _attributes(raw.get("attributes"), label, problems, path_at)
    attributes_from = path_at("attributes_from", raw.get("attributes_from"), required=False)
    if not attributes and attributes_from is None and "attributes" not in raw:
        problems.add(f"{label} / attributes", "required: Target name -> field path")
    if len(problems.problems) > before or id_path is None:
        return None
    return EntrySpec(
        label=label,
        topics=topics,
        pattern=pattern,
        schema=schema,
        reader_schema=reader_schema,
        debezium=debezium,
        id_path=id_path,
        id_type=id_type,
        id_type_path=id_type_path,
        id_type_values=id_type_values,
        id_prefix=id_prefix,
        id_format=id_format,
        occurred_at_path=occurred_path,
        occurred_at_unit=unit,
        source=source,
        source_path=source_path,
        event_id_path=event_id_path,
        priority_path=priority_path,
        urgent_when=conditions.get("urgent_when"),
        skip_when=conditions.get("skip_when"),
        attributes=tuple(attributes),
        attributes_from=attributes_from,
        keyed_by_profile=keyed_by_profile is True,
    )


def _file(
    raw: dict[str, Any], key: str, base: Path, label: str, problems: SpecProblems
) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        problems.add(f"{label} / {key}", "expected a file path")
        return None
    return str((base / value).resolve())


def _id_format(fmt: str | None, where: str, problems: SpecProblems) -> str | None:
    if fmt is None:
        return None
    try:
        id_formatter(fmt, "")
    except TransformError as exc:
        problems.add(where, str(exc))
        return None
    return fmt


def _attributes(
    raw: Any,
    label: str,
    problems: SpecProblems,
    path_at: Callable[..., str | None],
) -> list[AttributeSpec]:
    if raw is None:
        return []
    if not isinstance(raw, dict):
        problems.add(f"{label} / attributes", "a mapping of Target name -> field path")
        return []
    found: list[AttributeSpec] = []
    seen: dict[str, str] = {}
    for raw_name, body in raw.items():
        where = f"{label} / {raw_name}"
        try:
            name = attribute_name(str(raw_name))
        except ValidationError as exc:
            problems.add(where, exc.detail)
            continue
        if name in seen:
            problems.add(where, f"duplicate Target name {name!r} (also {seen[name]!r})")
            continue
        seen[name] = str(raw_name)
        if isinstance(body, str):
            body = {"path": body}
        if not isinstance(body, dict):
            problems.add(where, "a field path, or {path, transform, default, options}")
            continue
        chain = body.get("transform", [])
        chain = [chain] if isinstance(chain, str) else chain
        if not isinstance(chain, list) or not all(isinstance(t, str) for t in chain):
            problems.add(f"{where} / transform", "a transform name or a list of them")
            continue
        options = {k: v for k, v in body.items() if k not in _ATTRIBUTE_KEYS}
        default = body.get("default")
        if default is not None:
            default = _render_constant(default, f"{where} / default", problems)
        if chain[:1] == ["constant"]:
            if "path" in body or "value" not in options:
                problems.add(where, "'constant' takes a 'value' and no path")
                continue
            _render_constant(options["value"], f"{where} / value", problems)
            found.append(AttributeSpec(name, None, tuple(chain), options, None))
            continue
        path = path_at(f"{raw_name}.path", body.get("path"))
        try:
            compile_render(chain, options)
        except TransformError as exc:
            problems.add(f"{where} / transform", str(exc))
            continue
        if path is not None:
            found.append(AttributeSpec(name, path, tuple(chain), options, default))
    return found


def _render_constant(value: Any, where: str, problems: SpecProblems) -> str | None:
    from consumer.core.validate import render_value

    try:
        rendered = render_value(value)
    except ValidationError as exc:
        problems.add(where, exc.detail)
        return None
    if rendered is None:
        problems.add(where, "an empty value changes nothing; leave it out")
    return rendered
