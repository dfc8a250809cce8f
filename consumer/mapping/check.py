"""``mapping check`` without I/O: does an entry fit a writer schema?

Walks the Avro schema (JSON) along each path the entry reads and checks that the path
exists and that the type at its end fits what reads it: the transform of an attribute, the
profile id (a string, or something that renders as one), ``occurred_at`` (an integer in the
unit the entry says), the id type field (every enum symbol known). Every problem is
reported as ``(where, why)`` with ``where`` = ``topic / entry / path``.

Unions are followed into every branch: a path is there if one non-null branch has it
(``payment.brand`` in ``["null", "string", Card]``); a branch without it reads as absent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from consumer.mapping.engine import ID_TYPE_NAMES, EntrySpec
from consumer.mapping.paths import ROOT_PREFIX, PathSyntaxError, parse

PRIMITIVES = frozenset(
    {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
)  # fmt: skip
_RENDERABLE = frozenset({"string", "enum", "int", "long", "float", "double", "boolean"})
_INTEGERS = frozenset({"int", "long"})
_NUMBERS = frozenset({"int", "long", "float", "double"})
# logical type of a timestamp -> the occurred_at / date unit it is in
_TIME_UNITS = {
    "timestamp-millis": "millis",
    "timestamp-micros": "micros",
    "local-timestamp-millis": "millis",
    "local-timestamp-micros": "micros",
    "date": "days",
}


@dataclass(frozen=True, slots=True)
class Leaf:
    """The Avro type at the end of a path (one union branch)."""

    kind: str  # a primitive, "record", "enum", "array", "map" or "fixed"
    schema: dict[str, Any]

    @property
    def logical(self) -> str | None:
        value = self.schema.get("logicalType")
        return str(value) if value is not None else None

    def describe(self) -> str:
        if self.logical:
            return f"{self.kind} ({self.logical})"
        name = self.schema.get("name")
        return (
            f"{self.kind} {name}"
            if name and self.kind in ("record", "enum", "fixed")
            else self.kind
        )


class _Named:
    """Named types of a schema by full name, for references such as ``"Value"``."""

    def __init__(self, schema: Any) -> None:
        self.types: dict[str, dict[str, Any]] = {}
        self._collect(schema, "")

    def _collect(self, schema: Any, namespace: str) -> None:
        if isinstance(schema, list):
            for branch in schema:
                self._collect(branch, namespace)
            return
        if not isinstance(schema, dict):
            return
        kind = schema.get("type")
        if kind in ("record", "error", "enum", "fixed") and "name" in schema:
            name = str(schema["name"])
            space = str(schema.get("namespace", namespace) or "")
            full = name if "." in name or not space else f"{space}.{name}"
            self.types[full] = schema
            self.types.setdefault(full.rsplit(".", 1)[-1], schema)
            namespace = full.rsplit(".", 1)[0] if "." in full else ""
        for field in schema.get("fields", []) if kind in ("record", "error") else []:
            self._collect(field.get("type"), namespace)
        if kind == "array":
            self._collect(schema.get("items"), namespace)
        if kind == "map":
            self._collect(schema.get("values"), namespace)
        if isinstance(kind, (dict, list)):
            self._collect(kind, namespace)

    def branches(self, schema: Any) -> tuple[list[Leaf], bool]:
        """The non-null alternatives of ``schema``, and whether null is one of them."""
        if isinstance(schema, list):
            leaves: list[Leaf] = []
            nullable = False
            for branch in schema:
                found, null = self.branches(branch)
                leaves += found
                nullable = nullable or null
            return leaves, nullable
        if isinstance(schema, str):
            if schema == "null":
                return [], True
            if schema in PRIMITIVES:
                return [Leaf(schema, {"type": schema})], False
            named = self.types.get(schema)
            return ([Leaf(_kind(named), named)] if named else []), False
        if isinstance(schema, dict):
            kind = schema.get("type")
            if isinstance(kind, (list, dict)) or (
                isinstance(kind, str) and kind not in PRIMITIVES and kind in self.types
            ):
                return self.branches(kind)
            if kind == "null":
                return [], True
            return [Leaf(_kind(schema), schema)], False
        return [], False


def _kind(schema: dict[str, Any]) -> str:
    kind = str(schema.get("type"))
    return "record" if kind == "error" else kind


class SchemaView:
    """A writer schema, ready to resolve paths."""

    def __init__(self, schema: Any) -> None:
        self.named = _Named(schema)
        self.root, _ = self.named.branches(schema)

    def resolve(self, start: list[Leaf], path: str) -> tuple[list[Leaf], bool, str | None]:
        """``(leaves, nullable, error)`` at the end of ``path`` from ``start``."""
        try:
            segments = parse(path)
        except PathSyntaxError as exc:
            return [], False, str(exc)
        current = start
        nullable = False
        walked: list[str] = []
        for segment in segments:
            following: list[Leaf] = []
            kinds = sorted({leaf.describe() for leaf in current})
            for leaf in current:
                child: Any = None
                if leaf.kind == "record" and isinstance(segment, str):
                    field = next(
                        (f for f in leaf.schema.get("fields", []) if f.get("name") == segment),
                        None,
                    )
                    child = field.get("type") if field is not None else None
                elif leaf.kind == "map" and isinstance(segment, str):
                    child, nullable = leaf.schema.get("values"), True  # a key may be absent
                elif leaf.kind == "array" and isinstance(segment, int):
                    child, nullable = leaf.schema.get("items"), True  # an index may be absent
                if child is not None:
                    found, null = self.named.branches(child)
                    following += found
                    nullable = nullable or null
            if not following:
                where = ".".join(walked) or "the record"
                return [], False, f"no field {segment!r} in {where}, a {' or '.join(kinds)}"
            nullable = nullable or len(following) < len(current)
            current = following
            walked.append(str(segment))
        return current, nullable, None


class EntryCheck:
    """Checks one entry against one writer schema; ``problems`` holds what is wrong."""

    def __init__(self, spec: EntrySpec, schema: Any, topic: str) -> None:
        self.spec = spec
        self.topic = topic
        self.view = SchemaView(schema)
        self.problems: dict[str, str] = {}
        # What works but may dead-letter records (a nullable id): printed, not failing.
        self.warnings: dict[str, str] = {}
        self.image = self.view.root
        if spec.debezium:
            self._envelope()

    def add(self, entry: str, path: str, why: str) -> None:
        self.problems.setdefault(f"{self.topic} / {entry} / {path}", why)

    def leaves(self, entry: str, path: str) -> tuple[list[Leaf], bool] | None:
        if path.startswith(ROOT_PREFIX):
            start, text = self.view.root, path[len(ROOT_PREFIX) :]
        else:
            start, text = self.image, path
        leaves, nullable, error = self.view.resolve(start, text)
        if error is not None:
            self.add(entry, path, error)
            return None
        return leaves, nullable

    def _envelope(self) -> None:
        for name in ("op", "after"):
            if self.view.resolve(self.view.root, name)[2] is not None:
                self.add("envelope", name, "not a Debezium envelope: no field " + repr(name))
                self.image = []
                return
        after, _, _ = self.view.resolve(self.view.root, "after")
        self.image = [leaf for leaf in after if leaf.kind == "record"]

    def run(self) -> dict[str, str]:
        if self.spec.debezium and not self.image:
            return self.problems
        spec = self.spec
        self._id()
        self._occurred_at()
        for entry, path in (
            ("source_from", spec.source_path),
            ("event_id", spec.event_id_path),
            ("priority_from", spec.priority_path),
        ):
            if path is not None:
                self._renderable(entry, path)
        from consumer.mapping.conditions import referenced_paths

        for entry, condition in (("urgent_when", spec.urgent_when), ("skip_when", spec.skip_when)):
            for path in referenced_paths(condition):
                self.leaves(entry, path)
        for attr in spec.attributes:
            if attr.path is not None:
                self._attribute(attr.name, attr.path, attr.transforms, attr.options)
        if spec.attributes_from is not None:
            found = self.leaves("attributes_from", spec.attributes_from)
            if found is not None and not any(leaf.kind == "map" for leaf in found[0]):
                kinds = ", ".join(sorted({leaf.describe() for leaf in found[0]}))
                self.add("attributes_from", spec.attributes_from, f"a {kinds}, not a map")
        return self.problems

    def _renderable(self, entry: str, path: str) -> None:
        found = self.leaves(entry, path)
        if found is not None:
            bad = [leaf for leaf in found[0] if leaf.kind not in _RENDERABLE]
            if bad:
                self.add(entry, path, f"a {bad[0].describe()} cannot be rendered as a string")

    def _id(self) -> None:
        spec = self.spec
        found = self.leaves("profile.id", spec.id_path)
        if found is not None:
            leaves, nullable = found
            for leaf in leaves:
                if leaf.kind not in ("string", "enum", "int", "long"):
                    self.add(
                        "profile.id",
                        spec.id_path,
                        f"a {leaf.describe()} is not an id (string, enum, int or long)",
                    )
                elif spec.id_format is not None:
                    sample: Any = 0 if leaf.kind in _INTEGERS else "x"
                    try:
                        spec.id_format.format(sample)
                    except (ValueError, TypeError):
                        self.add(
                            "profile.format",
                            spec.id_path,
                            f"format {spec.id_format!r} does not fit a {leaf.kind}",
                        )
            if nullable:
                self.warnings.setdefault(
                    f"{self.topic} / profile.id / {spec.id_path}",
                    "may be null: such records go to the DLQ (mapping_failed)",
                )
        if spec.id_type_path is not None:
            self._id_type()

    def _id_type(self) -> None:
        spec = self.spec
        assert spec.id_type_path is not None
        found = self.leaves("profile.id_type_from", spec.id_type_path)
        if found is None:
            return
        known = spec.id_type_values or ID_TYPE_NAMES
        for leaf in found[0]:
            if leaf.kind == "enum":
                unknown = [s for s in leaf.schema.get("symbols", []) if s not in known]
                if unknown:
                    self.add(
                        "profile.id_type_from",
                        spec.id_type_path,
                        f"symbols {', '.join(unknown)} have no id type (add them to id_types)",
                    )
            elif leaf.kind != "string":
                self.add(
                    "profile.id_type_from",
                    spec.id_type_path,
                    f"a {leaf.describe()}, expected a string or an enum",
                )

    def _occurred_at(self) -> None:
        spec = self.spec
        unit = spec.occurred_at_unit
        if unit == "kafka":
            return
        if unit == "debezium":
            leaves, _, error = self.view.resolve(self.view.root, "ts_ms")
            if error is not None or not any(leaf.kind in _INTEGERS for leaf in leaves):
                self.add("occurred_at", "ts_ms", "the envelope has no integer ts_ms")
            return
        assert spec.occurred_at_path is not None
        found = self.leaves("occurred_at", spec.occurred_at_path)
        if found is None:
            return
        for leaf in found[0]:
            if leaf.kind not in _INTEGERS:
                self.add("occurred_at", spec.occurred_at_path, f"a {leaf.describe()}, not a long")
                continue
            expected = _TIME_UNITS.get(leaf.logical or "")
            if expected is not None and expected != unit:
                self.add(
                    "occurred_at",
                    spec.occurred_at_path,
                    f"the schema says {leaf.logical}; set unit: {expected}",
                )

    def _attribute(
        self, name: str, path: str, transforms: tuple[str, ...], options: dict[str, Any]
    ) -> None:
        found = self.leaves(name, path)
        if found is None:
            return
        kind = next((t for t in transforms if t not in ("lower", "upper")), "string")
        for leaf in found[0]:
            why = self._fits(kind, leaf, options)
            if why is not None:
                self.add(name, path, why)
                return

    def _fits(self, transform: str, leaf: Leaf, options: dict[str, Any]) -> str | None:
        what = leaf.describe()
        if leaf.logical == "decimal" and transform in ("string", "number"):
            return f"a {what}: use transform decimal with scale {leaf.schema.get('scale', 0)}"
        if transform == "string":
            if leaf.kind not in _RENDERABLE:
                hint = "; map one of its fields" if leaf.kind == "record" else ""
                return f"a {what} cannot be rendered as a string{hint}"
        elif transform == "number":
            if leaf.kind not in _NUMBERS:
                return f"transform number needs a number, the schema has a {what}"
        elif transform == "decimal":
            return self._decimal(leaf, options.get("scale"), "decimal")
        elif transform == "boolean":
            if leaf.kind not in ("boolean", "int", "long", "string"):
                return f"transform boolean needs a boolean, int or string, not a {what}"
        elif transform == "date":
            if leaf.kind not in _INTEGERS:
                return f"transform date needs an int or long, the schema has a {what}"
            expected = _TIME_UNITS.get(leaf.logical or "")
            unit = options.get("unit", "millis")
            if expected is not None and expected != unit:
                return f"the schema says {leaf.logical}; set unit: {expected}"
        elif transform == "count":
            if leaf.kind not in ("array", "map"):
                return f"transform count needs an array or a map, not a {what}"
        elif transform in ("join", "sum"):
            return self._over_items(transform, leaf, options)
        return None

    def _decimal(self, leaf: Leaf, scale: Any, transform: str) -> str | None:
        if leaf.logical == "decimal":
            declared = int(leaf.schema.get("scale", 0))
            if scale != declared:
                return f"the schema's decimal has scale {declared}; set scale: {declared}"
            return None
        if leaf.kind in _NUMBERS or (leaf.kind == "string" and transform == "decimal"):
            return None
        return f"transform {transform} needs a number or a decimal, not a {leaf.describe()}"

    def _over_items(self, transform: str, leaf: Leaf, options: dict[str, Any]) -> str | None:
        if leaf.kind != "array":
            return f"transform {transform} needs an array, not a {leaf.describe()}"
        items, _ = self.view.named.branches(leaf.schema.get("items"))
        item = options.get("item")
        if item is not None:
            fields, _, error = self.view.resolve(items, str(item))
            if error is not None:
                return f"item: {error}"
            items = fields
        for element in items:
            if transform == "sum" or element.logical == "decimal":
                why = self._decimal(element, options.get("scale"), transform)
            else:
                why = self._fits("string", element, options)
            if why is not None:
                return f"array items: {why}"
        return None


def check_entry(spec: EntrySpec, schema: Any, topic: str) -> tuple[dict[str, str], dict[str, str]]:
    """``(problems, warnings)`` of ``spec`` against the writer ``schema`` of ``topic``."""
    check = EntryCheck(spec, schema, topic)
    return check.run(), check.warnings
