"""From a decoded ProfileChange record to a ``ProfileUpdate``: validation and rendering.

Values become Target strings by one rule (schemas/README.md): string as is, long as
decimal, double in shortest round-trip form, boolean ``true``/``false``. A null or an empty
string means "no change" (Target cannot delete an attribute), so it is dropped here. An
event left with no attribute is skipped: settled at once, nothing to send.
"""

from __future__ import annotations

import math
from typing import Any

from consumer.core.model import IdType, Priority, ProfileUpdate, TopicPartition
from consumer.errors import ValidationError

# Longest profile id we accept. Target documents none; ids are CRM ids, loyalty numbers or
# tntids (~36 chars). Anything this long is a producer bug, not a customer.
MAX_ID_LENGTH = 256
# Longest attribute name; Target's UI and mbox parameters stay far below this.
MAX_NAME_LENGTH = 250
# Target's cap on all external data of one profile; a single event over it can never apply.
MAX_PROFILE_BYTES = 64 * 1024

_ID_TYPES = {"THIRD_PARTY_ID": IdType.THIRD_PARTY_ID, "PC_ID": IdType.PC_ID}
_PRIORITIES = {"NORMAL": Priority.NORMAL, "URGENT": Priority.URGENT}
_names: dict[str, str] = {}


def render_value(value: object) -> str | None:
    """The Target string for an attribute value; None when it changes nothing."""
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError("invalid_value", f"{value} is not a finite number")
        return repr(value)
    raise ValidationError("invalid_value", f"unsupported attribute type {type(value).__name__}")


def _bad_text(text: str) -> bool:
    return not text.isprintable()


def attribute_name(raw: str) -> str:
    """The name as Target shows it without ``profile.``; interned, since names repeat."""
    cached = _names.get(raw)
    if cached is not None:
        return cached
    name = raw.removeprefix("profile.")
    if not name:
        raise ValidationError("invalid_attribute_name", f"empty attribute name {raw!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise ValidationError("invalid_attribute_name", f"name longer than {MAX_NAME_LENGTH}")
    if _bad_text(name) or " " in name:
        raise ValidationError(
            "invalid_attribute_name", f"attribute name {name!r} has spaces or control characters"
        )
    if len(_names) < 100_000:  # bounded: a producer sending random names must not grow memory
        _names[raw] = name = str(name)
    return name


def to_update(record: dict[str, Any], tp: TopicPartition, offset: int) -> ProfileUpdate | None:
    """Validate one decoded record. None: nothing to change. Raises ``ValidationError``."""
    try:
        profile = record["profile"]
        id_type = _ID_TYPES[profile["id_type"]]
        profile_id = profile["id"]
        raw_attributes = record["attributes"]
        occurred_at = record["occurred_at"]
    except (KeyError, TypeError) as exc:
        raise ValidationError("missing_field", f"record lacks {exc}") from None
    if not isinstance(profile_id, str) or not profile_id.strip():
        raise ValidationError("invalid_profile_id", "profile id is empty")
    if len(profile_id) > MAX_ID_LENGTH:
        raise ValidationError("invalid_profile_id", f"profile id longer than {MAX_ID_LENGTH}")
    if _bad_text(profile_id):
        raise ValidationError("invalid_profile_id", "profile id has control characters")
    if not isinstance(occurred_at, int) or occurred_at < 0:
        raise ValidationError("invalid_occurred_at", f"occurred_at {occurred_at!r} is invalid")

    attributes: dict[str, str] = {}
    chars = 0
    names = _names
    for raw_name, raw_value in raw_attributes.items():
        name = names.get(raw_name) or attribute_name(raw_name)
        kind = type(raw_value)
        if kind is str:
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
        size = sum(len(k.encode("utf-8")) + len(v.encode("utf-8")) for k, v in attributes.items())
        if size > MAX_PROFILE_BYTES:
            raise ValidationError(
                "profile_too_large",
                f"attributes total {size} bytes, over Target's 64 KB per profile",
            )
    if not attributes:
        return None
    return ProfileUpdate(
        id_type,
        profile_id,
        attributes,
        _PRIORITIES.get(record.get("priority", "NORMAL"), Priority.NORMAL),
        occurred_at,
        tp,
        offset,
        str(record.get("source", "OTHER")),
        str(record.get("event_id", "")),
    )
