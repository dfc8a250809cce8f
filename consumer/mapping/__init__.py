"""Declarative mapping of users' own Avro records to profile updates (docs/mapping.md).

Start-up: ``load_file(path)`` (or ``load_builtin()``) parses and compiles a mapping file,
raising ``MappingSpecError`` (a ``ConfigError``) that names every bad topic / entry / path.
Per record: ``mappings.for_topic(topic).apply(decoded, tp, offset, timestamp_ms)`` returns a
``ProfileUpdate`` or a ``Skip``, or raises a ``PoisonError`` (``MappingFailed`` and the
contract's ``ValidationError``s).
"""

from consumer.mapping.engine import Skip, SkipReason, TopicMapping
from consumer.mapping.spec import BUILTIN_MAPPING, Mappings, load_builtin, load_file, parse_text

__all__ = [
    "BUILTIN_MAPPING",
    "Mappings",
    "Skip",
    "SkipReason",
    "TopicMapping",
    "load_builtin",
    "load_file",
    "parse_text",
]
