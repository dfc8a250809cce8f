"""The mapping ``profile-sync run`` reads records with, refused before anything runs.

``build_mapper(settings, registry)`` loads ``PROFILE_SYNC_MAPPING_FILE`` (empty: the
built-in ``ProfileChange`` mapping), requires an entry for every configured topic, and
checks each topic's entry against the writer schema records will be written with: the
latest registered version of ``<topic>-value`` with a Schema Registry, else the entry's
``schema:`` file (for the built-in mapping, ``PROFILE_SYNC_WRITER_SCHEMA``). Every problem
is raised at once as a ``MappingSpecError`` (a ``ConfigError``: exit code 2) naming topic,
entry and path, as ``profile-sync mapping check`` prints them.

A subject with no version yet is not an error (nothing was produced yet; each record is
still mapped on its own, and one that does not fit goes to the DLQ as ``mapping_failed``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

from consumer.config import Settings
from consumer.core.decode import WriterSchemas, load_schema
from consumer.errors import MappingSpecError
from consumer.mapping.check import check_entry
from consumer.mapping.records import RecordMapper
from consumer.mapping.spec import Mappings, load_builtin, load_file

log = logging.getLogger("profile_sync.mapping")


class LatestSchemas(WriterSchemas, Protocol):
    """A registry that can also say what a subject's latest writer schema is."""

    def latest_schema(self, subject: str) -> dict[str, Any] | None:
        """The latest version's schema, None when the subject has none. Raises
        ``FatalError`` when the registry cannot be reached."""
        ...


def load_mappings(settings: Settings) -> Mappings:
    """The mapping file of the settings, or the built-in contract mapping."""
    return load_file(settings.mapping_file) if settings.mapping_file else load_builtin()


def build_mapper(settings: Settings, registry: LatestSchemas | None) -> RecordMapper:
    """The checked ``RecordMapper`` for ``settings.topics``; raises ``MappingSpecError``."""
    mappings = load_mappings(settings)
    # PROFILE_SYNC_WRITER_SCHEMA is the contract's plain-Avro writer schema.
    writer = (
        load_schema(settings.writer_schema_path)
        if registry is None and not settings.mapping_file
        else None
    )
    mapper = RecordMapper(mappings, registry, writer)
    mapper.require(settings.topics)
    problems: dict[str, str] = {}
    for topic in settings.topics:
        entry = mappings.for_topic(topic)
        assert entry is not None  # require() refused unmapped topics
        schema, origin = _writer_schema(topic, entry.spec.schema, writer, registry)
        if schema is None:
            log.info(
                "no writer schema registered yet, the mapping is checked per record",
                extra={"fields": {"topic": topic}},
            )
            continue
        found, warnings = check_entry(entry.spec, schema, topic)
        for where, why in found.items():
            problems.setdefault(where, f"{why} [{origin}]")
        for where, why in warnings.items():
            log.warning("mapping warning", extra={"fields": {"where": where, "why": why}})
    if problems:
        raise MappingSpecError(problems)
    log.info(
        "mapping loaded",
        extra={
            "fields": {
                "file": mappings.source,
                "topics": {t: _label(mappings, t) for t in settings.topics},
            }
        },
    )
    return mapper


def _writer_schema(
    topic: str,
    entry_schema: str | None,
    writer: dict[str, Any] | None,
    registry: LatestSchemas | None,
) -> tuple[dict[str, Any] | None, str]:
    if registry is not None:
        subject = f"{topic}-value"
        return registry.latest_schema(subject), f"{subject} latest"
    if writer is not None:
        return writer, "PROFILE_SYNC_WRITER_SCHEMA"
    assert entry_schema is not None  # require() refused plain Avro without a schema
    return load_schema(Path(entry_schema)), Path(entry_schema).name


def _label(mappings: Mappings, topic: str) -> str:
    entry = mappings.for_topic(topic)
    return entry.spec.label if entry is not None else "-"
