"""Declarative mapping of users' own Avro records to profile updates (docs/mapping.md).

Start-up: ``load_file(path)`` (or ``load_builtin()``) parses and compiles a mapping file,
raising ``MappingSpecError`` (a ``ConfigError``) that names every bad topic / entry / path.
Per record: ``RecordMapper(mappings, registry).map(tp, offset, value_bytes, timestamp_ms)``
decodes and maps, returning a ``ProfileUpdate`` or a ``Skip``, or raising a ``PoisonError``
(``DecodeError``, ``MappingFailed`` and the contract's ``ValidationError``s). Lower level:
``mappings.for_topic(topic).apply(decoded, tp, offset, timestamp_ms)``.
"""

from consumer.mapping.engine import Skip, SkipReason, TopicMapping
from consumer.mapping.records import RecordMapper, decoder_for
from consumer.mapping.spec import BUILTIN_MAPPING, Mappings, load_builtin, load_file, parse_text

__all__ = [
    "BUILTIN_MAPPING",
    "Mappings",
    "RecordMapper",
    "Skip",
    "SkipReason",
    "TopicMapping",
    "decoder_for",
    "load_builtin",
    "load_file",
    "parse_text",
]
