"""Configuration: one frozen ``Settings`` built once at start-up.

- ``settings``: the catalogue, where each setting is declared once (name, type, default,
  parser, help, secret or not) as a field of ``Settings``; ``SETTINGS`` lists them.
- ``loading``: ``load()`` from defaults, the YAML file named by ``PROFILE_SYNC_CONFIG``
  and the environment (later wins); every bad key named in one ``ConfigError``.
- ``kafka``: the librdkafka pass-through, ``KAFKA_BOOTSTRAP_SERVERS`` ->
  ``bootstrap.servers`` (the convention of Confluent's images).
- ``values``: the parsers, and ``Secret``, which never prints.
"""

from __future__ import annotations

from consumer.config.kafka import KAFKA_PREFIX, kafka_property, librdkafka_problem
from consumer.config.loading import CONFIG_FILE_ENV, load, warnings
from consumer.config.settings import (
    DEFAULT_WRITER_SCHEMA,
    ENV_PREFIX,
    SCHEMA_DIR,
    SETTINGS,
    TARGET_MAX_BATCH_BYTES,
    TARGET_MAX_BATCH_ROWS,
    TARGET_SINGLE_QUOTA,
    Setting,
    Settings,
    markdown_table,
)
from consumer.config.values import Secret

__all__ = [
    "CONFIG_FILE_ENV",
    "DEFAULT_WRITER_SCHEMA",
    "ENV_PREFIX",
    "KAFKA_PREFIX",
    "SCHEMA_DIR",
    "SETTINGS",
    "TARGET_MAX_BATCH_BYTES",
    "TARGET_MAX_BATCH_ROWS",
    "TARGET_SINGLE_QUOTA",
    "Secret",
    "Setting",
    "Settings",
    "kafka_property",
    "librdkafka_problem",
    "load",
    "markdown_table",
    "warnings",
]
