"""What Target's profile APIs look like: URLs, request shapes, responses, failure classes.

Pure: builds requests as plain values and reads responses from plain values, so both
HTTP senders share it and it is tested without a network.
"""

from __future__ import annotations

import ipaddress
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit, urlunsplit

from consumer.core.model import IdType
from consumer.errors import PermanentError, RetryableError, TargetError
from consumer.target.wire import encode_cell

# Target's single-update API limits the GET request to 8 KB and a POST to 60 KB.
SINGLE_GET_MAX_BYTES = 8 * 1024
SINGLE_POST_MAX_BYTES = 60 * 1024
# Statuses worth retrying besides 5xx: request timeout and rate limiting.
_RETRYABLE = frozenset({408, 429})


def bulk_url(base: str, client: str, version: str) -> str:
    if version == "v1":
        return f"{base}/m2/{client}/profile/batchUpdate"
    return f"{base}/m2/{client}/v2/profile/batchUpdate"


def batch_status_url(base: str, client: str, batch_id: str) -> str:
    return f"{base}/m2/{client}/profile/batchStatus?batchId={encode_cell(batch_id)}"


def single_url(base: str, client: str) -> str:
    return f"{base}/m2/{client}/profile/update"


def fetch_url(base: str, client: str, id_type: IdType, profile_id: str) -> str:
    pid = encode_cell(profile_id)
    if id_type is IdType.THIRD_PARTY_ID:
        return f"{base}/rest/v1/profiles/thirdPartyId/{pid}?client={encode_cell(client)}"
    return f"{base}/rest/v1/profiles/{pid}?client={encode_cell(client)}"


def single_query(id_type: IdType, profile_id: str, attributes: dict[str, str]) -> str:
    """The percent-encoded parameters of a single update (query string or POST body)."""
    parts = [f"{id_type.single_param}={encode_cell(profile_id)}"]
    parts += [f"profile.{encode_cell(k)}={encode_cell(v)}" for k, v in attributes.items()]
    return "&".join(parts)


def single_id_allowed(profile_id: str) -> bool:
    """Target: an mbox3rdPartyId must not contain '+' or '/'."""
    return "+" not in profile_id and "/" not in profile_id


class StatusUnknown(PermanentError):
    """A batch-status URL that no longer answers: the status expired or was never ours to
    ask for. A normal outcome (Target keeps few statuses), never a reason to resend."""


def parse_single_response(status: int, body: str) -> None:
    """A single update succeeded only if Target's XML answer says ``success`` true.

    Target answers ``<response><success>true</success>...</response>``; the current docs
    print only its text content (``trueRequest successfully submitted``), so a body that
    is not XML is read by that text.
    """
    check_status(status, body, retry_after=None)
    try:
        root = ET.fromstring(body)
        flag = (root.findtext("success") or "").strip().lower()
        message = (root.findtext("message") or "").strip()
    except ET.ParseError:
        text = body.strip().lower()
        flag = "true" if text.startswith("true") else "false" if text.startswith("false") else ""
        message = _snippet(body)
    if flag == "true":
        return
    if flag == "false":
        raise PermanentError(f"single update refused: {message or 'success=false'}"[:500], status)
    raise RetryableError(f"unreadable single update response: {_snippet(body)}", status)


def status_url(url: str, base: str) -> str:
    """The batch-status URL the token may be sent to, or ``StatusUnknown`` if none.

    Target may answer with a status host other than the one posted to (an edge of the
    same domain). The bearer token only goes to the configured host or a host of its
    domain, over https whenever the configured base is https: an ``http://`` status URL
    is upgraded; any other host is refused.
    """
    parts = urlsplit(url)
    conf = urlsplit(base)
    host = (parts.hostname or "").lower()
    conf_host = (conf.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        raise StatusUnknown(f"batch status URL is not an http(s) URL: {url[:200]!r}")
    if host == conf_host and (parts.port or _default_port(parts.scheme)) in (
        conf.port or _default_port(conf.scheme),
        conf.port or _default_port("https"),
    ):
        return urlunsplit((conf.scheme, conf.netloc, parts.path, parts.query, ""))
    domain = _domain(conf_host)
    if domain and host.endswith("." + domain):
        return urlunsplit(("https", host, parts.path, parts.query, ""))
    raise StatusUnknown(
        f"batch status URL on host {host!r} is outside the configured Target domain "
        f"{domain or conf_host!r}: the token is not sent there"
    )


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def _domain(host: str) -> str:
    """``tt.omtrdc.net`` for ``acme.tt.omtrdc.net``; empty for an IP or a short name."""
    try:
        ipaddress.ip_address(host)
        return ""
    except ValueError:
        pass
    labels = host.split(".")
    return ".".join(labels[1:]) if len(labels) >= 3 else ""


@dataclass(frozen=True, slots=True)
class BulkAccepted:
    batch_status_url: str
    message: str


def _xml(status: int, body: str, what: str) -> ET.Element:
    """The XML root of a 2xx response; a garbled body is worth another try."""
    check_status(status, body, retry_after=None)
    try:
        return ET.fromstring(body)
    except ET.ParseError as exc:
        raise RetryableError(f"unreadable {what} response: {exc}", status) from exc


def target_answer(body: str) -> ET.Element | None:
    """The XML root if ``body`` is Target's answer (``<response>`` with ``<success>`` or
    ``<status>``); None for anything else: a proxy's page, an edge's error, foreign XML."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return None
    if root.tag != "response" or (root.find("success") is None and root.find("status") is None):
        return None
    return root


def parse_bulk_response(status: int, body: str) -> BulkAccepted:
    """Read a batchUpdate response; raise the right ``TargetError`` when it failed.

    Only Target's own answer can reject a batch for good (its rows then go to the DLQ).
    Whatever else answers (a proxy's page, foreign XML, a 404 from an edge) is retried:
    dead-lettering good data because something in between misbehaved would empty the
    stream into the DLQ. A wrong URL or client code, which also answers 404, is found by
    the start-up check (consumer/target/startup.py) before anything is consumed.
    """
    if status in _RETRYABLE or status >= 500:
        check_status(status, body, retry_after=None)
    root = target_answer(body)
    if root is None:
        raise RetryableError(
            f"HTTP {status}, not Target's answer (a proxy or edge page?): {_snippet(body)}",
            status,
        )
    if status == 404:
        raise RetryableError(f"HTTP 404 from the bulk API: {_snippet(body)}", status)
    check_status(status, body, retry_after=None)
    success = (root.findtext("success") or "").strip().lower()
    message = (root.findtext("message") or "").strip()
    if success != "true":
        raise PermanentError(f"batch rejected: {message or 'success=false'}"[:500], status)
    return BulkAccepted((root.findtext("batchStatus") or "").strip(), message)


@dataclass(frozen=True, slots=True)
class BatchStatus:
    batch_id: str
    status: str  # complete | incomplete | stuck
    batch_size: int
    consumed: int | None = None
    successful: int | None = None
    not_found: int | None = None
    failed: int | None = None


def _int(root: ET.Element, tag: str) -> int | None:
    text = root.findtext(tag)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def parse_batch_status(status: int, body: str) -> BatchStatus:
    """Read a batchStatus answer; an unknown or forgotten batch raises ``StatusUnknown``."""
    if status == 404 or (400 <= status < 500 and status not in _RETRYABLE):
        raise StatusUnknown(f"batch status: HTTP {status}: {_snippet(body)}", status)
    check_status(status, body, retry_after=None)
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        # An error page where the status was: Target no longer answers for this batch.
        raise StatusUnknown(f"batch status unreadable: {_snippet(body)}", status) from None
    if (root.findtext("success") or "").strip().lower() == "false" or not root.findtext("status"):
        message = (root.findtext("message") or "no status").strip()
        raise StatusUnknown(f"batch status unknown: {message}"[:300], status)
    return BatchStatus(
        batch_id=(root.findtext("batchId") or "").strip(),
        status=(root.findtext("status") or "").strip().lower(),
        batch_size=_int(root, "batchSize") or 0,
        consumed=_int(root, "consumedCount"),
        successful=_int(root, "successfulUpdates"),
        not_found=_int(root, "profilesNotFound"),
        failed=_int(root, "failedUpdates"),
    )


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date (relative to its own Date)."""
    if not value:
        return None
    value = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def check_status(status: int, body: str, retry_after: float | None) -> None:
    """Raise for a non-2xx status: retryable (408, 429, 5xx) or permanent (other 4xx)."""
    if 200 <= status < 300:
        return
    snippet = _snippet(body)
    if status in _RETRYABLE or status >= 500:
        raise RetryableError(f"HTTP {status}: {snippet}", status, retry_after)
    raise PermanentError(f"HTTP {status}: {snippet}", status)


def _snippet(body: str) -> str:
    # A response body never holds our token, but keep it short for logs and DLQ headers.
    text = " ".join(body.split())
    return text[:300]


__all__ = [
    "SINGLE_GET_MAX_BYTES",
    "SINGLE_POST_MAX_BYTES",
    "BatchStatus",
    "BulkAccepted",
    "StatusUnknown",
    "TargetError",
    "bulk_url",
    "fetch_url",
    "parse_batch_status",
    "parse_bulk_response",
    "parse_single_response",
    "single_query",
    "single_url",
    "status_url",
]
