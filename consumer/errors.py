"""Every error the service raises, in one place.

The split that matters is what the pipeline does with a failure::

    ProfileSyncError
     +-- ConfigError            a setting is wrong; names the key. Fatal at start-up.
     |    +-- MappingSpecError  the mapping file is wrong; names topic, entry and path
     +-- PoisonError            one record cannot become a profile update -> DLQ, never retried.
     |    +-- DecodeError       bytes are not Avro of a known schema (stage "decode")
     |    +-- ValidationError   decoded, but breaks the contract (stage "validate")
     |         +-- MappingFailed reason "mapping_failed": a mapped path (the id) is missing
     +-- TargetError            a call to Adobe Target failed
     |    +-- RetryableError    network error, timeout, 408, 429, 5xx: back off and retry
     |    +-- PermanentError    other 4xx or success=false: the batch is rejected
     +-- FatalError             the service cannot go on (e.g. a rejected batch with
                                PROFILE_SYNC_ON_REJECTED=stop)

Messages never carry secrets: tokens and passwords stay inside ``config.Secret``.
"""

from __future__ import annotations


class ProfileSyncError(Exception):
    """Root of the hierarchy."""


class ConfigError(ProfileSyncError):
    """One or more settings are invalid. ``problems`` maps each bad key to why."""

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = dict(problems)
        lines = "; ".join(f"{key}: {why}" for key, why in sorted(self.problems.items()))
        super().__init__(f"invalid configuration: {lines}")


class PoisonError(ProfileSyncError):
    """A record that can never be processed. ``reason`` is a short, low-cardinality label."""

    stage = "decode"

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class DecodeError(PoisonError):
    """The bytes are not Avro of a schema we can resolve."""

    stage = "decode"


class ValidationError(PoisonError):
    """The record decoded but breaks the event contract."""

    stage = "validate"


class TargetError(ProfileSyncError):
    """A call to Target failed. ``status`` is the HTTP status, or None for network errors."""

    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class RetryableError(TargetError):
    """Worth retrying. ``retry_after`` is Target's Retry-After in seconds, when it sent one."""

    def __init__(
        self, message: str, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status)
        self.retry_after = retry_after


class PermanentError(TargetError):
    """Target rejected the request; sending it again will not help."""


class FatalError(ProfileSyncError):
    """The service must stop (exit non-zero) instead of going on."""


class MappingFailed(ValidationError):
    """A mapped record lacks what its mapping needs (a profile id, a type that fits a
    transform). ``path`` is the field path in the record, named in the DLQ message."""

    def __init__(self, path: str, detail: str) -> None:
        self.path = path
        super().__init__("mapping_failed", f"{path}: {detail}")


class MappingSpecError(ConfigError):
    """A mapping file is invalid. ``problems`` maps ``topic / entry / path`` to why."""
