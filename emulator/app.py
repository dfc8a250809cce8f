"""The emulator as a WSGI application: Target's profile APIs plus the ``/_emulator/`` controls.

``EmulatorApp(config, clock=..., wall=..., sleep=...)`` is a plain WSGI callable. Tests drive
it in-process with ``httpx.Client(transport=httpx.WSGITransport(app=app))`` and a fake
clock; ``emulator.server`` serves the same object on a real port.

Every Target API request goes: count -> fault plan -> bulk rate limit (bulk uploads and
batch-status calls only) -> bearer token -> handler -> record in the request log. Reads
(batch status, fetch, controls) first apply whatever is due, so they never show a state
older than the clock; uploads only queue work. A fault that drops the
connection raises ``DropConnection``; the real server then closes the socket without
answering (in-process, the exception reaches the test).
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from emulator import controls
from emulator.auth import TokenCheck
from emulator.batchfile import BatchRejected, inspect
from emulator.config import EmulatorConfig
from emulator.faults import FaultPlan, FaultRule
from emulator.ratelimit import RollingRateLimit
from emulator.state import QuotaExceeded, Store, iso
from emulator.wsgi import (
    Reply,
    Request,
    error_reply,
    json_reply,
    multipart_boundary,
    multipart_field,
    text_reply,
    xml_reply,
)

StartResponse = Callable[..., Any]

# Room for the multipart envelope around a file of max_batch_bytes before the upload is
# refused without being read.
_MULTIPART_SLACK = 64 * 1024
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
# The single-update answer as the older Adobe guide prints it in full.
_SINGLE_OK = [("success", "true"), ("pcId", ""), ("message", "Request successfully submitted")]
# The APIs that share the tenant's budget of bulk-API calls.
_RATE_LIMITED = ("bulk", "status")
_API_COUNTERS = {
    "bulk": "bulk_requests",
    "single": "single_requests",
    "status": "status_requests",
    "fetch": "fetch_requests",
    "other": "other_requests",
}


class DropConnection(Exception):
    """A fault asks the server to close the connection without sending any response."""


class EmulatorApp:
    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        self.config = config or EmulatorConfig()
        self.clock = clock
        self.wall = wall
        self._closing = threading.Event()
        # Injected latency waits on an event so that close() can cut it short.
        self._sleep = sleep if sleep is not None else self._closing.wait
        self.lock = threading.Lock()
        self.store = Store(self.config, clock, wall)
        self.faults = FaultPlan()
        self.tokens = TokenCheck(self.config.token, self.config.token_file)
        self._m2_routes: dict[str, tuple[str, Callable[[Request, bool], tuple[Reply, str | None]]]]
        self._m2_routes = {
            "v2/profile/batchUpdate": ("bulk", self._bulk_v2),
            "profile/batchUpdate": ("bulk", self._bulk_v1),
            "profile/batchStatus": ("status", self._status),
            "profile/update": ("single", self._single),
        }
        self.reset()

    def reset(self) -> None:
        """Forget everything: profiles, batches, quota, counters, faults, request log."""
        self.store.reset()
        self.faults.clear()
        self.rate = RollingRateLimit(self.config.bulk_rate_limit, self.config.bulk_rate_window)
        self.log: deque[dict[str, Any]] = deque(maxlen=self.config.request_log_size)
        self._log_seq = 0
        self.counts: dict[str, int] = dict.fromkeys(_API_COUNTERS.values(), 0)
        self.counts["control_requests"] = 0
        self.counts["batches_rejected"] = 0
        self.rejections: dict[str, int] = {}
        self.faults_injected: dict[str, int] = {}

    def close(self) -> None:
        """End any injected latency still being waited out (the server is stopping)."""
        self._closing.set()

    def tick(self, step_rows: int | None = None) -> int:
        """Apply every batch and single update that is due (the server calls this regularly).

        ``step_rows``: let go of the lock after about that many rows of a batch and take it
        again, so that requests are answered while a large batch applies."""
        applied = 0
        while True:
            with self.lock:
                applied += self.store.advance(step_rows)
                if not self.store.applying:
                    return applied
            time.sleep(0)  # a request thread waiting for the lock takes it now

    # -- WSGI

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        request = Request(environ)
        if request.path.startswith("/_emulator/"):
            with self.lock:
                self.counts["control_requests"] += 1
            reply = controls.handle(self, request)
        else:
            reply = self._target_api(request)
        headers = [("Content-Type", reply.content_type), ("Content-Length", str(len(reply.body)))]
        headers.extend(reply.headers)
        start_response(f"{reply.status} {_reason(reply.status)}", headers)
        return [b"" if request.method == "HEAD" else reply.body]

    def _target_api(self, request: Request) -> Reply:
        started = time.perf_counter()
        api, handler, own_client = self._route(request.path)
        with self.lock:
            self.counts[_API_COUNTERS[api]] += 1
            rule = self.faults.pick(api) if api != "other" else None
            if rule is not None:
                self._count_fault(rule)
            # A call answered or dropped by a fault never reached Target: it uses none of
            # the tenant's budget (latency and stuck faults let the call through).
            reaches_target = rule is None or (not rule.drop and rule.status is None)
            limited = (
                reaches_target
                and own_client
                and api in _RATE_LIMITED
                and not self.rate.try_admit(self.clock())
            )
        batch_id: str | None = None
        reply: Reply | None = None
        if rule is not None:
            if rule.latency:
                self._sleep(rule.latency)
            if rule.drop:
                self._record(request, api, 0, None, "drop", started)
                raise DropConnection
            if rule.status is not None:
                headers = [("Retry-After", rule.retry_after)] if rule.retry_after else []
                if rule.body is not None:
                    reply = text_reply(rule.status, rule.body, headers)
                else:
                    message = f"injected fault: HTTP {rule.status}"
                    reply = error_reply(api, rule.status, message, headers)
        if reply is None and limited:
            self._reject("rate_limited")
            limit, window = self.config.bulk_rate_limit, self.config.bulk_rate_window
            reply = error_reply(
                api,
                503,
                f"Service unavailable: more than {limit} bulk API calls "
                f"in {window:g} seconds for this client",
            )
        if reply is None:
            if api != "other" and not self.tokens.allows(request.header("Authorization")):
                self._reject("unauthorized")
                reply = error_reply(
                    api,
                    401,
                    "Authentication required: missing or invalid profile authentication token",
                    [("WWW-Authenticate", "Bearer")],
                )
            else:
                reply, batch_id = handler(request, rule is not None and rule.stuck)
        self._record(request, api, reply.status, batch_id, rule.kind if rule else None, started)
        return reply

    def _route(
        self, path: str
    ) -> tuple[str, Callable[[Request, bool], tuple[Reply, str | None]], bool]:
        """(API class, handler, whether the path names this emulator's client code)."""
        if path.startswith("/m2/"):
            _, _, rest = path.partition("/m2/")
            client, _, tail = rest.partition("/")
            route = self._m2_routes.get(tail)
            if route is not None:
                api, handler = route
                if client != self.config.client:
                    return api, functools.partial(self._unknown_client, api), False
                return api, handler, True
        elif path.startswith("/rest/v1/profiles/"):
            return "fetch", self._fetch, True
        return "other", self._not_found, False

    # -- bookkeeping (callers hold no lock)

    def _record(
        self,
        request: Request,
        api: str,
        status: int,
        batch_id: str | None,
        fault: str | None,
        started: float,
    ) -> None:
        entry = {
            "seq": 0,
            "time": iso(self.wall()),
            "method": request.method,
            "path": request.path,
            "api": api,
            "status": status,
            "bytes": request.content_length,
            "batchId": batch_id,
            "fault": fault,
            "ms": round((time.perf_counter() - started) * 1000, 3),
        }
        with self.lock:
            self._log_seq += 1
            entry["seq"] = self._log_seq
            self.log.append(entry)

    def _reject(self, reason: str) -> None:
        with self.lock:
            self.rejections[reason] = self.rejections.get(reason, 0) + 1

    def _count_fault(self, rule: FaultRule) -> None:
        kinds = [rule.kind]
        if rule.latency and rule.kind != "latency":
            kinds.append("latency")
        for kind in kinds:
            self.faults_injected[kind] = self.faults_injected.get(kind, 0) + 1

    def _method_not_allowed(self, api: str, allowed: str) -> tuple[Reply, None]:
        self._reject("method_not_allowed")
        return error_reply(api, 405, "Method not allowed", [("Allow", allowed)]), None

    def _unknown_client(self, api: str, request: Request, stuck: bool) -> tuple[Reply, str | None]:
        self._reject("unknown_client")
        return error_reply(api, 404, "Unknown client code"), None

    # -- bulk

    def _bulk_v1(self, request: Request, stuck: bool) -> tuple[Reply, str | None]:
        return self._bulk(request, "v1", stuck)

    def _bulk_v2(self, request: Request, stuck: bool) -> tuple[Reply, str | None]:
        return self._bulk(request, "v2", stuck)

    def _bulk(self, request: Request, version: str, stuck: bool) -> tuple[Reply, str | None]:
        if request.method != "POST":
            return self._method_not_allowed("bulk", "POST")
        cfg = self.config
        boundary = multipart_boundary(request.content_type)
        slack = _MULTIPART_SLACK if boundary is not None else 0
        try:
            if request.content_length > cfg.max_batch_bytes + slack:
                # Refused unread: the server drains the body to keep the connection usable.
                raise BatchRejected(
                    "too_large",
                    f"Batch file is {request.content_length} bytes; "
                    f"the limit is {cfg.max_batch_bytes} bytes",
                )
            body = request.body()
            form = "raw"
            if boundary is not None:
                form = "multipart"
                try:
                    found = multipart_field(body, boundary, "file")
                except ValueError as exc:
                    raise BatchRejected(
                        "bad_multipart", f"Malformed multipart body: {exc}"
                    ) from None
                if found is None:
                    raise BatchRejected("no_file_field", "Multipart upload has no 'file' field")
                body = found
            batch = inspect(
                body,
                max_bytes=cfg.max_batch_bytes,
                max_rows=cfg.max_batch_rows,
                decoding=cfg.decoding,
                long_id=cfg.long_id,
            )
        except BatchRejected as exc:
            self._reject(exc.reason)
            with self.lock:
                self.counts["batches_rejected"] += 1
            return xml_reply(200, [("success", "false"), ("message", exc.message)]), None
        with self.lock:
            record = self.store.accept_batch(version, batch, len(body), form, stuck)
        url = (
            f"{request.scheme}://{request.host}/m2/{cfg.client}/profile/batchStatus"
            f"?batchId={record.batch_id}"
        )
        fields = [("success", "true"), ("batchStatus", url)]
        fields.append(("message", "Batch submitted for processing"))
        return xml_reply(200, fields), record.batch_id

    # -- batch status

    def _status(self, request: Request, stuck: bool) -> tuple[Reply, str | None]:
        if request.method not in ("GET", "HEAD"):
            return self._method_not_allowed("status", "GET")
        batch_id = request.param("batchId")
        if not batch_id:
            self._reject("missing_batch_id")
            return error_reply("status", 400, "Parameter batchId is required"), None
        withheld = None
        with self.lock:
            record = self.store.batch(batch_id)
            if record is not None:
                withheld = self.store.status_withheld(record)
            if record is None or withheld is not None:
                reply = None
            else:
                fields: list[tuple[str, object]] = [
                    ("batchId", record.batch_id),
                    ("status", record.status),
                    ("batchSize", record.row_count),
                ]
                if (request.param("showDetails") or "").lower() == "true":
                    fields += [
                        ("consumedCount", record.consumed),
                        ("successfulUpdates", record.successful),
                        ("profilesNotFound", record.not_found),
                        ("failedUpdates", record.failed),
                    ]
                reply = xml_reply(200, fields)
        if reply is None:
            # Evicted, expired and never-seen ids get the same answer: Target keeps nothing
            # to tell them apart. The rejection reason in the stats does.
            self._reject(withheld or "unknown_batch")
            return error_reply("status", 404, f"Batch {batch_id} not found"), batch_id
        return reply, batch_id

    # -- single update

    def _single(self, request: Request, stuck: bool) -> tuple[Reply, str | None]:
        cfg = self.config
        if request.method == "GET":
            if len(request.raw_target.encode("utf-8")) > cfg.single_get_max_bytes:
                self._reject("uri_too_long")
                message = "Request-URI Too Long: the GET limit is 8 KB"
                return error_reply("single", 414, message), None
            params = request.query
        elif request.method == "POST":
            if request.content_length > cfg.single_post_max_bytes:
                self._reject("body_too_large")
                return error_reply(
                    "single", 413, "Request Entity Too Large: the POST limit is 60 KB"
                ), None
            if len(request.raw_target.encode("utf-8")) > cfg.single_get_max_bytes:
                self._reject("uri_too_long")
                return error_reply("single", 414, "Request-URI Too Long"), None
            body = request.body().decode("utf-8", errors="replace")
            params = f"{request.query}&{body}" if request.query else body
        else:
            return self._method_not_allowed("single", "GET, POST")
        if _BAD_ESCAPE.search(params):
            self._reject("bad_escape")
            return error_reply(
                "single", 400, "Invalid URL encoding: '%' not followed by two hex digits"
            ), None
        third_party = pc = None
        attributes: dict[str, str] = {}
        any_profile_param = False
        for key, value in parse_qsl(params, keep_blank_values=True, errors="replace"):
            if key.startswith("profile.") and len(key) > 8:
                any_profile_param = True
                if value:  # empty values never clear
                    attributes[key[8:]] = value
            elif key == "mbox3rdPartyId":
                third_party = value
            elif key == "mboxPC":
                pc = value
        if third_party:
            id_type, profile_id = "thirdPartyId", third_party
            if "+" in profile_id or "/" in profile_id:
                self._reject("bad_id")
                message = "mbox3rdPartyId must not contain '+' or '/'"
                return error_reply("single", 400, message), None
        elif pc:
            id_type, profile_id = "pcId", pc
        else:
            self._reject("missing_id")
            message = "Parameter mbox3rdPartyId or mboxPC is required"
            return error_reply("single", 400, message), None
        if not any_profile_param:
            self._reject("no_attributes")
            return error_reply("single", 400, "No profile.* parameter given"), None
        try:
            with self.lock:
                self.store.accept_single(id_type, profile_id, attributes)
        except QuotaExceeded:
            self._reject("quota_exceeded")
            return error_reply(
                "single",
                429,
                "Single profile update quota exceeded for the last 24 hours: use the bulk API",
            ), None
        return xml_reply(200, _SINGLE_OK), None

    # -- fetch

    def _fetch(self, request: Request, stuck: bool) -> tuple[Reply, str | None]:
        if request.method not in ("GET", "HEAD"):
            return self._method_not_allowed("fetch", "GET")
        rest = request.path[len("/rest/v1/profiles/") :]
        if rest.startswith("thirdPartyId/"):
            id_type, profile_id = "thirdPartyId", rest[len("thirdPartyId/") :]
            label = f"third party id={profile_id}"
        else:
            id_type, profile_id = "pcId", rest
            label = f"mboxPC={profile_id}"
        client = request.param("client")
        if not client:
            self._reject("missing_client")
            return error_reply("fetch", 400, "Parameter client is required"), None
        if not profile_id or "/" in profile_id:
            return error_reply(
                "fetch", 404, f"No profile found for client {client} with {label}"
            ), None
        view = None
        if client == self.config.client:
            with self.lock:
                profile = self.store.profile(id_type, profile_id)
                if profile is not None:
                    attrs = {
                        name: {"value": value, "modifiedAt": iso(write.modified)}
                        for name, (value, write) in profile.attrs.items()
                    }
                    newest = max(write.modified for _, write in profile.attrs.values())
                    view = {
                        "client": client,
                        "visitorId": profile_id,
                        "modifiedAt": iso(newest),
                        "profileAttributes": attrs,
                    }
        if view is None:
            return error_reply(
                "fetch", 404, f"No profile found for client {client} with {label}"
            ), None
        return json_reply(200, view), None

    def _not_found(self, request: Request, stuck: bool) -> tuple[Reply, str | None]:
        return text_reply(404, "Not found"), None


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
