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

# Target's limits page: an mbox3rdPartyId is at most 256 characters (we hold pcIds to it
# too: a tntid is ~36), an in-mbox profile attribute name at most 128, and values over 256
# characters are truncated for in-mbox use (sent anyway, counted: ``cell_risks``).
MAX_ID_LENGTH = 256
MAX_NAME_LENGTH = 128
MAX_MBOX_VALUE_LENGTH = 256
# Target's cap on all external data of one profile; a single event over it can never apply.
MAX_PROFILE_BYTES = 64 * 1024


def check_profile_id(id_type: IdType, profile_id: object) -> str:
    """``profile_id`` if Target can take it for ``id_type``, else ``ValidationError``."""
    if not isinstance(profile_id, str) or not profile_id.strip():
        raise ValidationError("invalid_profile_id", "profile id is empty")
    if len(profile_id) > MAX_ID_LENGTH:
        raise ValidationError("profile_id_too_long", f"profile id longer than {MAX_ID_LENGTH}")
    if _bad_text(profile_id):
        raise ValidationError("invalid_profile_id", "profile id has control characters")
    if id_type is IdType.THIRD_PARTY_ID and ("+" in profile_id or "/" in profile_id):
        raise ValidationError(
            "third_party_id_forbidden_character", "a thirdPartyId must not hold '+' or '/'"
        )
    return profile_id


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
        raise ValidationError(
            "attribute_name_too_long", f"attribute name longer than {MAX_NAME_LENGTH}"
        )
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
    profile_id = check_profile_id(id_type, profile_id)
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


def cell_risks(update: ProfileUpdate, reading: str) -> tuple[int, int]:
    """(values over 256 characters, values holding a comma or line break) of ``update``.

    Long values are sent (Target truncates them for in-mbox use). Under reading B
    (``TARGET_CELL_DECODING``) a comma or line break in a value, or a comma in the id,
    would shift the columns of its row: ``ValidationError`` (``value_unsafe_under_reading_b``).
    """
    values = update.attributes.values()
    text = "".join(values)
    if (
        len(text) <= MAX_MBOX_VALUE_LENGTH
        and "," not in text
        and "\n" not in text
        and "\r" not in text
        and reading != "B"
    ):  # the common case: no value long or unsafe, nothing to check per value
        return 0, 0
    long = unsafe = 0
    for value in values:
        if len(value) > MAX_MBOX_VALUE_LENGTH:
            long += 1
        if "," in value or "\n" in value or "\r" in value:
            unsafe += 1
    if reading == "B" and (unsafe or _separates(update.profile_id)):
        raise ValidationError(
            "value_unsafe_under_reading_b",
            "a value holds a comma or line break, which Target (cell decoding B) would read "
            "as a separator",
        )
    if reading == "B" and any(_separates(name) for name in update.attributes):
        # A header cell that splits would shift every later column of the whole file.
        raise ValidationError(
            "value_unsafe_under_reading_b",
            "an attribute name holds a comma or line break, which Target (cell decoding B) "
            "would read as a separator",
        )
    return long, unsafe


def _separates(text: str) -> bool:
    return "," in text or "\n" in text or "\r" in text
