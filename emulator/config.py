"""The emulator's settings: one frozen object, built from CLI options or keyword arguments.

Every field has the same name as its CLI option in snake_case (``--bulk-apply-delay`` is
``bulk_apply_delay``), so the test fixture ``emulator_server(**opts)`` and the command line
take the same names.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields
from typing import Any

# Target's documented limits (see docs/emulator.md for how each is measured here).
MAX_BATCH_BYTES = 50 * 1024 * 1024  # "the file must be under 50 MB"
MAX_BATCH_ROWS = 500_000  # "must not exceed 500,000 rows per upload"
MAX_PROFILE_BYTES = 64 * 1024  # all external data of one profile: 64 KB
SINGLE_GET_MAX_BYTES = 8 * 1024  # single update by GET: 8 KB
SINGLE_POST_MAX_BYTES = 60 * 1024  # single update by POST: 60 KB
SINGLE_QUOTA = 1_000_000  # single updates per rolling 24 hours per tenant
QUOTA_WINDOW_SECONDS = 24 * 3600.0
MAX_THIRD_PARTY_ID_CHARS = 256  # Target's limits page: mbox3rdPartyId, 256 characters
# "50 calls per minute for the Admin, Reporting, and bulk profile update APIs" (limits page).
BULK_RATE_LIMIT = 50
BULK_RATE_WINDOW_SECONDS = 60.0
# The older bulk guide: "only the previous 10 statuses are stored, for a maximum of 24 hours".
STATUS_RETENTION_COUNT = 10
STATUS_RETENTION_SECONDS = 24 * 3600.0

# Emulator housekeeping.
REQUEST_LOG_SIZE = 10_000  # recent requests kept for /_emulator/requests
# Raw bytes of applied batches kept for /_emulator/batches/{id}; pending batches always keep
# theirs. 256 MiB holds ~30 full-size consumer batches without letting a long benchmark grow
# the process without bound.
RETAIN_BATCH_BYTES = 256 * 1024 * 1024
# How often the real server's background thread applies due batches and single updates.
# Requests also apply what is due before they are answered, so this only bounds how stale
# the state is between requests.
TICK_SECONDS = 0.05

OVERRIDE_MODES = ("merge", "replace-pending")
# A: split rows and cells, then percent-decode each cell. B: percent-decode the whole
# `batch` parameter, then split (an encoded comma or line break shifts cells or rows).
DECODINGS = ("A", "B")
# What a bulk row does with a thirdPartyId over 256 characters (Target's docs are silent).
LONG_ID_MODES = ("fail", "accept", "truncate")


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    client: str = "acme"
    bulk_apply_delay: float = 0.0
    single_apply_delay: float = 0.0
    max_batch_bytes: int = MAX_BATCH_BYTES
    max_batch_rows: int = MAX_BATCH_ROWS
    max_profile_bytes: int = MAX_PROFILE_BYTES
    single_get_max_bytes: int = SINGLE_GET_MAX_BYTES
    single_post_max_bytes: int = SINGLE_POST_MAX_BYTES
    override_mode: str = "merge"
    decoding: str = "A"
    long_id: str = "fail"
    single_quota: int = SINGLE_QUOTA
    bulk_rate_limit: int = BULK_RATE_LIMIT
    bulk_rate_window: float = BULK_RATE_WINDOW_SECONDS
    status_retention_count: int = STATUS_RETENTION_COUNT
    status_retention_seconds: float = STATUS_RETENTION_SECONDS
    bulk_loss_rate: float = 0.0
    bulk_loss_seed: int = 0
    token: str | None = None
    token_file: str | None = None
    request_log_size: int = REQUEST_LOG_SIZE
    retain_batch_bytes: int = RETAIN_BATCH_BYTES
    tick_seconds: float = TICK_SECONDS

    def __post_init__(self) -> None:
        if not self.client or "/" in self.client:
            raise ValueError("client must be a non-empty client code without '/'")
        if self.override_mode not in OVERRIDE_MODES:
            raise ValueError(f"override_mode must be one of {', '.join(OVERRIDE_MODES)}")
        if self.decoding not in DECODINGS:
            raise ValueError(f"decoding must be one of {', '.join(DECODINGS)}")
        if self.long_id not in LONG_ID_MODES:
            raise ValueError(f"long_id must be one of {', '.join(LONG_ID_MODES)}")
        for name in (
            "bulk_apply_delay",
            "single_apply_delay",
            "retain_batch_bytes",
            "bulk_rate_limit",
            "status_retention_count",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        for name in (
            "max_batch_bytes",
            "max_batch_rows",
            "max_profile_bytes",
            "single_get_max_bytes",
            "single_post_max_bytes",
            "request_log_size",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        for name in ("bulk_rate_window", "status_retention_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if not 0.0 <= self.bulk_loss_rate <= 1.0:
            raise ValueError("bulk_loss_rate must be between 0 and 1")
        if self.single_quota < 0:
            raise ValueError("single_quota must be >= 0")
        if self.tick_seconds <= 0:
            raise ValueError("tick_seconds must be > 0")
        if self.token is not None and self.token_file is not None:
            raise ValueError("give token or token_file, not both")

    def __repr__(self) -> str:
        # The token is a secret: never print it.
        def show(name: str) -> str:
            value = getattr(self, name)
            return "'<redacted>'" if name == "token" and value else repr(value)

        shown = ", ".join(f"{f.name}={show(f.name)}" for f in fields(self))
        return f"EmulatorConfig({shown})"

    @classmethod
    def from_options(cls, **options: Any) -> EmulatorConfig:
        """Build from keyword options; unknown names are an error (catches typos in tests)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown emulator option(s): {', '.join(unknown)}")
        return cls(**options)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> EmulatorConfig:
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The CLI options, one per field of ``EmulatorConfig`` (plus --host and --port)."""
    d = EmulatorConfig()
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument(
        "--port", type=int, default=8080, help="port to bind; 0 = any free port (default 8080)"
    )
    parser.add_argument("--client", default=d.client, help="tenant client code (default acme)")
    parser.add_argument(
        "--bulk-apply-delay",
        type=float,
        default=d.bulk_apply_delay,
        metavar="SECONDS",
        help="seconds from accepting a batch to applying it; status is 'incomplete' until then",
    )
    parser.add_argument(
        "--single-apply-delay",
        type=float,
        default=d.single_apply_delay,
        metavar="SECONDS",
        help="seconds from accepting a single update to applying it",
    )
    parser.add_argument(
        "--max-batch-bytes",
        type=int,
        default=d.max_batch_bytes,
        metavar="BYTES",
        help="largest accepted batch file (default 50 MiB)",
    )
    parser.add_argument(
        "--max-batch-rows",
        type=int,
        default=d.max_batch_rows,
        metavar="ROWS",
        help="most data rows per batch file (default 500000)",
    )
    parser.add_argument(
        "--max-profile-bytes",
        type=int,
        default=d.max_profile_bytes,
        metavar="BYTES",
        help="cap on one profile's stored attributes (default 65536)",
    )
    parser.add_argument(
        "--single-get-max-bytes",
        type=int,
        default=d.single_get_max_bytes,
        metavar="BYTES",
        help="longest single-update GET request target (default 8192; longer: HTTP 414)",
    )
    parser.add_argument(
        "--single-post-max-bytes",
        type=int,
        default=d.single_post_max_bytes,
        metavar="BYTES",
        help="largest single-update POST body (default 61440; larger: HTTP 413)",
    )
    parser.add_argument(
        "--override-mode",
        choices=OVERRIDE_MODES,
        default=d.override_mode,
        help="how a v2 batch treats an earlier pending batch for the same profile",
    )
    parser.add_argument(
        "--decoding",
        choices=DECODINGS,
        default=d.decoding,
        help="A: split the file, then decode each cell (default); "
        "B: decode the whole batch, then split (encoded commas and line breaks shift cells)",
    )
    parser.add_argument(
        "--long-id",
        choices=LONG_ID_MODES,
        default=d.long_id,
        help="a bulk row whose thirdPartyId is over 256 characters: fail the row (default), "
        "accept it as is, or truncate the id to 256 characters",
    )
    parser.add_argument(
        "--bulk-rate-limit",
        type=int,
        default=d.bulk_rate_limit,
        metavar="N",
        help="bulk uploads plus batch-status calls allowed per rolling --bulk-rate-window; "
        "past it HTTP 503 (default 50; 0 turns the limit off)",
    )
    parser.add_argument(
        "--bulk-rate-window",
        type=float,
        default=d.bulk_rate_window,
        metavar="SECONDS",
        help="the rolling window of --bulk-rate-limit (default 60)",
    )
    parser.add_argument(
        "--status-retention-count",
        type=int,
        default=d.status_retention_count,
        metavar="N",
        help="batch statuses answered: only the last N accepted batches (default 10; 0 = all)",
    )
    parser.add_argument(
        "--status-retention-seconds",
        type=float,
        default=d.status_retention_seconds,
        metavar="SECONDS",
        help="a batch status is answered at most this long after the upload (default 86400)",
    )
    parser.add_argument(
        "--bulk-loss-rate",
        type=float,
        default=d.bulk_loss_rate,
        metavar="SHARE",
        help="share of the rows of each applied batch silently lost, as Target may "
        "(0 to 1; default 0; Adobe documents up to 0.001)",
    )
    parser.add_argument(
        "--bulk-loss-seed",
        type=int,
        default=d.bulk_loss_seed,
        metavar="N",
        help="seed of the lost-row draw, so a run replays identically (default 0)",
    )
    parser.add_argument(
        "--single-quota",
        type=int,
        default=d.single_quota,
        metavar="N",
        help="single updates allowed per rolling 24 hours (default 1000000; past it HTTP 429)",
    )
    auth = parser.add_mutually_exclusive_group()
    auth.add_argument(
        "--token",
        default=None,
        help="require 'Authorization: Bearer TOKEN' (prefer --token-file: argv is visible)",
    )
    auth.add_argument(
        "--token-file",
        default=None,
        metavar="PATH",
        help="require the bearer token held in this file; re-read whenever it changes",
    )
    parser.add_argument(
        "--request-log-size",
        type=int,
        default=d.request_log_size,
        metavar="N",
        help="recent requests kept for /_emulator/requests (default 10000)",
    )
    parser.add_argument(
        "--retain-batch-bytes",
        type=int,
        default=d.retain_batch_bytes,
        metavar="BYTES",
        help="raw bytes of applied batches kept for /_emulator/batches/ID (default 256 MiB)",
    )
    parser.add_argument(
        "--tick-seconds",
        type=float,
        default=d.tick_seconds,
        metavar="SECONDS",
        help="how often due batches and single updates are applied in the background",
    )
