"""Before anything is consumed: does the configured URL answer like Target, and does
Target know the client code? (guarantee 6 in docs/guarantees.md)

A typo in ``PROFILE_SYNC_TARGET_URL`` or ``PROFILE_SYNC_TARGET_CLIENT`` must stop the
service with a clear error, not turn every batch into dead letters. One batchStatus GET
for a batch id that cannot exist tells the cases apart:

- Target's own XML answer (``<response>`` with ``<success>`` or ``<status>``): the URL is
  Target; unless its message says the client code is unknown or invalid, start;
- an answer that is not Target's (an HTML page, foreign XML, JSON): stop (exit 3);
- no answer, 401/403, 408, 429 or 5xx: Target is down or the token is being rotated,
  which is waited out by the normal retries, so start and let them do it.
"""

from __future__ import annotations

import logging
import re

from consumer.errors import FatalError, RetryableError
from consumer.target.api import target_answer
from consumer.target.client import TargetClient

log = logging.getLogger("profile_sync.startup")

# A batch id Target cannot have issued (its ids are CLIENT-<millis>-<n>).
PROBE_BATCH_ID = "profile-sync-startup-check"
_UNKNOWN_CLIENT = re.compile(r"\b(unknown|invalid|no such)\b.*\bclient\b", re.IGNORECASE)


def check_target(client: TargetClient, url: str, client_code: str) -> None:
    """Raise ``FatalError`` when the Target URL or client code is certainly wrong."""
    try:
        status, body = client.raw_status(PROBE_BATCH_ID)
    except RetryableError as exc:
        log.warning(
            "start-up check of Target inconclusive, starting anyway",
            extra={"fields": {"error": str(exc)}},
        )
        return
    root = target_answer(body)
    if root is None:
        snippet = " ".join(body.split())[:200]
        raise FatalError(
            f"PROFILE_SYNC_TARGET_URL {url} answered HTTP {status} with something that is "
            f"not Target's answer: {snippet!r}; check the URL (and any proxy in between)"
        )
    message = (root.findtext("message") or "").strip()
    if _UNKNOWN_CLIENT.search(message):
        raise FatalError(
            f"Target does not know the client code {client_code!r} "
            f"(PROFILE_SYNC_TARGET_CLIENT): {message[:200]}"
        )
    log.info("start-up check of Target passed", extra={"fields": {"status": status}})
