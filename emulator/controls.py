"""The test controls under ``/_emulator/`` (not part of Target; never behind the token).

- ``GET /_emulator/stats``: counters (see docs/emulator.md for every key).
- ``GET /_emulator/requests[?limit=N&api=bulk]``: the most recent Target API requests.
- ``GET|POST|DELETE /_emulator/faults``: show, add (JSON plan) or clear injected faults.
- ``POST /_emulator/reset``: forget profiles, batches, quota, counters, faults and requests.
- ``GET /_emulator/profiles[?details=true&prefix=P]``: every stored profile (whose id starts
  with P).
- ``GET /_emulator/batches`` and ``GET /_emulator/batches/ID``: accepted batches; one with
  its decoded rows and the rows it lost.
- ``GET /_emulator/lost``: every row lost under ``bulk_loss_rate`` (batch, row, id, values).
- ``POST /_emulator/tick``: apply what is due now (the server also does so on its own).
- ``GET /_emulator/config``: the effective settings (token redacted).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from emulator.batchfile import iter_rows
from emulator.faults import PlanError, parse_plan
from emulator.wsgi import Reply, Request, error_reply, json_reply

if TYPE_CHECKING:
    from emulator.app import EmulatorApp
    from emulator.state import BatchRecord


def handle(app: EmulatorApp, request: Request) -> Reply:
    name = request.path[len("/_emulator/") :].rstrip("/")
    method = request.method
    if name == "stats" and method == "GET":
        return json_reply(200, stats(app))
    if name == "requests" and method == "GET":
        return json_reply(200, _requests(app, request))
    if name == "faults":
        if method == "GET":
            with app.lock:
                return json_reply(200, {"faults": [r.describe() for r in app.faults.rules]})
        if method == "DELETE":
            with app.lock:
                app.faults.clear()
            return json_reply(200, {"faults": []})
        if method == "POST":
            try:
                rules, replace = parse_plan(json.loads(request.body() or b"null"))
            except (ValueError, PlanError) as exc:
                return error_reply("control", 400, f"bad fault plan: {exc}")
            with app.lock:
                app.faults.add(rules, replace)
                return json_reply(200, {"faults": [r.describe() for r in app.faults.rules]})
    if name == "reset" and method == "POST":
        with app.lock:
            app.reset()
        return json_reply(200, {"reset": True})
    if name == "tick" and method == "POST":
        return json_reply(200, {"applied": app.tick()})
    if name == "profiles" and method == "GET":
        details = (request.param("details") or "").lower() == "true"
        with app.lock:
            profiles = app.store.dump(details, request.param("prefix") or "")
        return json_reply(200, profiles)  # a copy: encoded without holding up Target calls
    if name == "config" and method == "GET":
        settings = asdict(app.config)
        if settings.get("token"):
            settings["token"] = "<redacted>"
        return json_reply(200, settings)
    if name == "batches" and method == "GET":
        with app.lock:
            views = [_summary(app, b) for b in app.store.batches()]
        return json_reply(200, {"batches": views})
    if name == "lost" and method == "GET":
        with app.lock:
            lost = [
                {
                    "batchId": record.batch_id,
                    "idType": record.id_type,
                    "row": row.row,
                    "id": row.profile_id,
                    "attributes": row.attributes,
                }
                for record, row in app.store.lost_rows()
            ]
        return json_reply(200, {"lost": lost})
    if name.startswith("batches/") and method == "GET":
        return _batch(app, name[len("batches/") :])
    return error_reply("control", 404, f"no control {method} /_emulator/{name}")


def stats(app: EmulatorApp) -> dict[str, Any]:
    with app.lock:
        store = app.store
        store.advance()
        c = store.counts
        pending_batches, pending_single = store.pending()
        now = app.clock()
        return {
            "now": now,
            **app.counts,
            "batches_accepted": c["batches_accepted"],
            "batches": {
                "incomplete": c["batches_incomplete"],
                "complete": c["batches_complete"],
                "stuck": c["batches_stuck"],
            },
            "batches_skipped_empty": c["batches_skipped_empty"],
            "rows_received": c["rows_received"],
            "bytes_received": c["bytes_received"],
            "rows": {
                "successful": c["rows_successful"],
                "not_found": c["rows_not_found"],
                "failed": c["rows_failed"],
                "discarded": c["rows_discarded"],
                "lost": c["rows_lost"],
            },
            "single_updates": {
                "accepted": c["single_accepted"],
                "applied": c["single_applied"],
                "not_found": c["single_not_found"],
                "failed": c["single_failed"],
                "pending": pending_single,
            },
            "single_quota_used": store.quota.used(now),
            "single_quota_limit": store.quota.limit,
            "pending_batches": pending_batches,
            "bulk_rate": app.rate.describe(now),
            "rejections": dict(app.rejections),
            "faults_injected": {
                **app.faults_injected,
                "total": sum(app.faults_injected.values()),
            },
            "profiles": store.profile_count(),
        }


def _summary(app: EmulatorApp, record: BatchRecord) -> dict[str, Any]:
    """A batch as the controls show it; the caller holds the app's lock."""
    view = record.summary()
    view["statusAnswered"] = app.store.status_withheld(record) is None
    return view


def _requests(app: EmulatorApp, request: Request) -> dict[str, Any]:
    api = request.param("api")
    try:
        limit = int(request.param("limit") or 0)
    except ValueError:
        limit = 0
    with app.lock:
        entries = [e for e in app.log if api is None or e["api"] == api]
    if limit > 0:
        entries = entries[-limit:]
    return {"requests": entries}


def _batch(app: EmulatorApp, batch_id: str) -> Reply:
    with app.lock:
        record = app.store.batch(batch_id)
        if record is None:
            return error_reply("control", 404, f"unknown batch {batch_id}")
        view = _summary(app, record)
        view["lost"] = [
            {"row": row.row, "id": row.profile_id, "attributes": row.attributes}
            for row in record.lost
        ]
        file = record.file
    if file is not None:
        view["header"] = list(file.names)
        view["rows"] = [
            {"row": r.number, "id": r.profile_id, "attributes": r.attributes, "error": r.error}
            for r in iter_rows(file)
        ]
    else:
        view["rows"] = None
    return json_reply(200, view)
