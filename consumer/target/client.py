"""The HTTP edge: every call to Target goes through ``TargetClient`` (the only httpx user).

httpx exceptions are translated into ours here: network errors and timeouts become
``RetryableError``; statuses are classified by ``consumer.target.api``. 401 and 403 are
retryable too: an expired or rotated token is an outage to wait out (the token file is
re-read), never a reason to dead-letter customer data.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from consumer.config import Secret, Settings
from consumer.config.values import bearer_problem
from consumer.core.model import BatchFile, IdType
from consumer.errors import RetryableError
from consumer.metrics import Metrics, status_class
from consumer.target import api as target

log = logging.getLogger("profile_sync.http")


# What a response read in full keeps as its stream (``_request``).
_READ = httpx.ByteStream(b"")


class TokenSource:
    """The bearer token: from a file (re-read when it changes or after a 401) or a value."""

    def __init__(self, path: str, static: Secret, on_reload: Callable[[], None]) -> None:
        self._path = path
        self._static = static
        self._on_reload = on_reload
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._token = static.reveal()

    def header(self) -> dict[str, str]:
        if self._path:
            self._refresh(force=False)
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def invalidate(self) -> None:
        """After a 401: read the file again on the next call, even if it looks unchanged."""
        with self._lock:
            self._stamp = None

    def _refresh(self, force: bool) -> None:
        try:
            st = os.stat(self._path)
        except OSError:
            return  # keep the last token; the file may be mid-rotation (Kubernetes symlink swap)
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp and not force:
            return
        with self._lock:
            try:
                with open(self._path, encoding="utf-8") as fh:
                    token = fh.read().strip()
            except OSError:
                return
            self._stamp = stamp
            why = bearer_problem(token) if token else None
            if why:
                # Keep the last good token; never quote this one (guarantee 12).
                log.error(
                    "target token file rejected, keeping the previous token",
                    extra={"fields": {"token_file": self._path, "problem": why}},
                )
                return
            if token:
                self._token = token
        self._on_reload()
        log.info("target token loaded", extra={"fields": {"token_file": self._path}})


class TargetClient:
    """Single attempts at each Target API. Thread-safe; retries are the caller's business."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics | None,
        transport: httpx.BaseTransport | None = None,
        pool_size: int = 8,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self.tokens = TokenSource(
            settings.target_token_file,
            settings.target_token,
            (lambda: metrics.token_reloads.inc()) if metrics is not None else (lambda: None),
        )
        self._http = httpx.Client(
            timeout=httpx.Timeout(settings.target_timeout_seconds, connect=10.0),
            limits=httpx.Limits(max_connections=pool_size, max_keepalive_connections=pool_size),
            transport=transport,
            headers={"User-Agent": "target-profile-sync"},
        )

    def close(self) -> None:
        self._http.close()

    # -- APIs

    def post_batch(self, batch: BatchFile) -> target.BulkAccepted:
        s = self._settings
        version = "v2" if batch.id_type is IdType.THIRD_PARTY_ID else s.pcid_bulk_version
        url = target.bulk_url(s.target_url, s.target_client, version)
        kwargs: dict[str, Any]
        if s.upload_form == "multipart":
            kwargs = {"files": {"file": ("batch.txt", batch.body, "text/plain")}}
        else:
            kwargs = {
                "content": batch.body,
                "headers": {"Content-Type": "application/x-www-form-urlencoded"},
            }
        response = self._request("bulk", "POST", url, **kwargs)
        return target.parse_bulk_response(response.status_code, response.text)

    def get_status(self, url: str) -> target.BatchStatus:
        try:
            safe = target.status_url(url, self._settings.target_url)
        except target.StatusUnknown as exc:
            log.error(
                "batch status URL refused: the token is not sent to it",
                extra={"fields": {"error": str(exc)}},
            )
            raise
        if not safe.startswith(url.split(":", 1)[0] + ":"):
            log.warning(
                "batch status URL was plain http: asked over https instead",
                extra={"fields": {"url": safe.split("?", 1)[0]}},
            )
        url = safe
        sep = "&" if "?" in url else "?"
        response = self._request("status", "GET", f"{url}{sep}showDetails=true")
        return target.parse_batch_status(response.status_code, response.text)

    def single_update(self, id_type: IdType, profile_id: str, attrs: dict[str, str]) -> None:
        s = self._settings
        url = target.single_url(s.target_url, s.target_client)
        params = target.single_query(id_type, profile_id, attrs)
        if len(url) + 1 + len(params) <= target.SINGLE_GET_MAX_BYTES - 512:
            response = self._request("single", "GET", f"{url}?{params}")
        else:
            response = self._request(
                "single",
                "POST",
                url,
                content=params.encode("ascii"),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        target.parse_single_response(response.status_code, response.text)

    def raw_status(self, batch_id: str) -> tuple[int, str]:
        """One batchStatus GET for ``batch_id`` on the configured client: (status, body).
        Raises ``RetryableError`` like every call (network, 401/403, 408, 429, 5xx)."""
        s = self._settings
        response = self._request(
            "status", "GET", target.batch_status_url(s.target_url, s.target_client, batch_id)
        )
        return response.status_code, response.text

    def fetch_profile(self, id_type: IdType, profile_id: str) -> dict[str, Any] | None:
        s = self._settings
        url = target.fetch_url(s.target_url, s.target_client, id_type, profile_id)
        response = self._request("fetch", "GET", url)
        if response.status_code == 404:
            return None
        target.check_status(response.status_code, response.text, None)
        data: dict[str, Any] = response.json()
        return data

    # -- one request, timed and classified

    def _request(self, api: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        headers.update(self.tokens.header())
        started = time.perf_counter()
        status: int | None = None
        try:
            response = self._http.request(method, url, headers=headers, **kwargs)
            status = response.status_code
            # An httpx response and its stream refer to each other: ~40 objects in a
            # reference cycle per request, left to the cyclic collector, which the service
            # runs rarely (consumer/interpreter.py). The body is read and the stream closed
            # by now: the cycle is cut here and reference counting frees the rest.
            response.stream = _READ
        except httpx.TimeoutException as exc:
            raise RetryableError(f"{api} call timed out: {type(exc).__name__}") from exc
        except httpx.HTTPError as exc:
            # Transport errors, and also a body that cannot be decoded (a broken gzip
            # stream from a proxy): nothing Target said about the data, so worth a retry.
            raise RetryableError(f"{api} call failed: {type(exc).__name__}: {exc}") from exc
        finally:
            if self._metrics is not None:
                self._metrics.target_requests.labels(api, status_class(status)).inc()
                self._metrics.target_latency.labels(api).observe(time.perf_counter() - started)
        if status in (401, 403):
            self.tokens.invalidate()
            raise RetryableError(
                f"{api} call not authorised (HTTP {status}): check the token", status
            )
        if status in (408, 429) or (status is not None and status >= 500):
            retry_after = target.parse_retry_after(response.headers.get("Retry-After"))
            raise RetryableError(f"{api} call got HTTP {status}", status, retry_after)
        return response
