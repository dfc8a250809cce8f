"""Confluent Schema Registry: wire-format framing and writer schemas by id.

Uses confluent-kafka's own ``SchemaRegistryClient`` (which caches by id) and its
``SchemaId`` framing reader; nothing here re-implements the protocol. A schema id the
registry does not know is poison (``DecodeError``); a registry that cannot be reached is
not: it is retried for a while, then the service stops (``FatalError``) rather than
dead-lettering good events during a registry outage.
"""

from __future__ import annotations

import json
import logging
import time
from io import BytesIO
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.serde import SchemaId

from consumer.clock import Clock, SystemClock
from consumer.config import Settings
from consumer.errors import DecodeError, FatalError

log = logging.getLogger("profile_sync.registry")

# How long a registry outage may last before the service gives up and restarts.
REGISTRY_OUTAGE_SECONDS = 60.0


class RegistrySchemas:
    """``decode.WriterSchemas`` backed by a Schema Registry."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        conf: dict[str, Any] = {"url": settings.schema_registry_url}
        user_info = settings.schema_registry_user_info.reveal()
        if user_info:
            conf["basic.auth.user.info"] = user_info
        self._client = SchemaRegistryClient(conf)

    def read_schema_id(self, buf: BytesIO) -> int:
        if buf.getbuffer().nbytes < 5:
            raise DecodeError("not_wire_format", "shorter than the 5-byte wire-format header")
        schema_id = SchemaId("AVRO")
        try:
            schema_id.from_bytes(buf)
        except Exception as exc:
            raise DecodeError("not_wire_format", f"bad wire-format header: {exc}") from exc
        if schema_id.id is None:
            raise DecodeError("not_wire_format", "schema referenced by GUID is not supported")
        return int(schema_id.id)

    def schema_for(self, schema_id: int) -> dict[str, Any]:
        deadline = self._clock.monotonic() + REGISTRY_OUTAGE_SECONDS
        delay = 0.5
        while True:
            try:
                schema = self._client.get_schema(schema_id)
                break
            except SchemaRegistryError as exc:
                if exc.http_status_code == 404:
                    raise DecodeError(
                        "unknown_schema", f"schema id {schema_id} is not in the registry"
                    ) from exc
                error: Exception = exc
            except Exception as exc:  # network errors from the registry client
                error = exc
            if self._clock.monotonic() >= deadline:
                raise FatalError(f"schema registry unreachable: {type(error).__name__}") from error
            log.warning(
                "schema registry call failed, retrying",
                extra={"fields": {"schema_id": schema_id, "error": type(error).__name__}},
            )
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
        if (schema.schema_type or "AVRO") != "AVRO":
            raise DecodeError("incompatible_schema", f"schema id {schema_id} is not Avro")
        try:
            parsed: dict[str, Any] = json.loads(schema.schema_str or "")
        except ValueError as exc:
            raise DecodeError("incompatible_schema", f"schema id {schema_id} is not JSON") from exc
        return parsed

    def latest_schema(self, subject: str) -> dict[str, Any] | None:
        """The latest registered schema of ``subject`` (None: no version yet), for the
        mapping check at start-up (consumer/mapping/startup.py). One attempt: a registry
        that cannot be reached at start-up stops the service (``FatalError``, a restart)."""
        try:
            found = self._client.get_latest_version(subject)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                return None
            raise FatalError(f"schema registry: {subject}: HTTP {exc.http_status_code}") from exc
        except Exception as exc:  # network errors from the registry client
            raise FatalError(f"schema registry unreachable: {type(exc).__name__}") from exc
        try:
            parsed: dict[str, Any] = json.loads(found.schema.schema_str or "")
        except ValueError as exc:
            raise FatalError(f"schema registry: {subject}: the latest schema is not JSON") from exc
        return parsed
