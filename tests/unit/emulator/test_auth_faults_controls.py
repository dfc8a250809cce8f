"""Bearer token, fault injection and the /_emulator/ controls, in-process."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from emulator.app import DropConnection
from emulator.config import EmulatorConfig
from emulator.faults import PlanError, parse_plan
from tests.unit.emulator.harness import InProcess, Target, batch

TP = "batch=thirdPartyId"


def test_token_is_required_on_every_target_api(make_emulator: Callable[..., InProcess]) -> None:
    emu = make_emulator(token="s3cret-token")
    anonymous = Target(emu.http)
    wrong = Target(emu.http, token="other")
    for caller in (anonymous, wrong):
        assert (
            caller.http.post(
                "/m2/acme/v2/profile/batchUpdate",
                content=batch(f"{TP},a", "p1,x"),
                headers=caller.headers,
            ).status_code
            == 401
        )
        assert caller.single(mbox3rdPartyId="p1", **{"profile.a": "1"}).status_code == 401
        assert caller.fetch("p1").status_code == 401
        assert (
            caller.http.get(
                "/m2/acme/profile/batchStatus?batchId=x", headers=caller.headers
            ).status_code
            == 401
        )
    up = emu.target.upload(batch(f"{TP},a", "p1,x"))
    assert up.success and emu.target.attrs("p1") == {"a": "x"}
    stats = emu.control.stats()  # the controls need no token
    assert stats["rejections"] == {"unauthorized": 8}
    assert "s3cret-token" not in str(stats) and "s3cret-token" not in str(emu.control.requests())
    assert "s3cret-token" not in repr(emu.app.config)
    assert emu.http.get("/_emulator/config").json()["token"] == "<redacted>"


def test_token_file_is_reread_when_it_changes(
    make_emulator: Callable[..., InProcess], tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first\n")
    emu = make_emulator(token_file=str(token_file))
    assert Target(emu.http, token="first").fetch("p").status_code == 404  # authorised
    token_file.write_text("second-token\n")
    assert Target(emu.http, token="first").fetch("p").status_code == 401
    assert Target(emu.http, token="second-token").fetch("p").status_code == 404
    # Same length, same mtime granularity: the inode changes on an atomic replace.
    replacement = tmp_path / "token.new"
    replacement.write_text("third--token\n")
    os.replace(replacement, token_file)
    assert Target(emu.http, token="second-token").fetch("p").status_code == 401
    assert Target(emu.http, token="third--token").fetch("p").status_code == 404
    token_file.unlink()
    assert Target(emu.http, token="third--token").fetch("p").status_code == 401


def test_status_fault_with_retry_after_for_the_next_n_requests(emu: InProcess) -> None:
    emu.control.inject({"api": "bulk", "status": 429, "retry_after": 7, "count": 2})
    body = batch(f"{TP},a", "p1,x")
    url = emu.target.bulk_url()
    first, second, third = (emu.http.post(url, content=body) for _ in range(3))
    assert (first.status_code, first.headers["Retry-After"]) == (429, "7")
    assert second.status_code == 429
    assert third.status_code == 200 and "<success>true</success>" in third.text
    assert emu.target.single(mbox3rdPartyId="p1", **{"profile.a": "1"}).status_code == 200
    stats = emu.control.stats()
    assert stats["faults_injected"] == {"status_429": 2, "total": 2}
    assert stats["batches_accepted"] == 1  # faulted requests are not processed
    assert [r["fault"] for r in emu.control.requests(api="bulk")] == [
        "status_429",
        "status_429",
        None,
    ]


def test_probability_faults_are_seeded_and_repeatable(
    make_emulator: Callable[..., InProcess],
) -> None:
    def run() -> list[int]:
        emu = make_emulator()
        emu.control.inject({"api": "fetch", "status": 503, "probability": 0.5, "seed": 42})
        return [emu.target.fetch("p").status_code for _ in range(40)]

    first, second = run(), run()
    assert first == second
    assert 5 < first.count(503) < 35 and set(first) == {503, 404}


def test_drop_raises_so_the_server_closes_without_answering(emu: InProcess) -> None:
    emu.control.inject({"api": "single", "drop": True})
    with pytest.raises(DropConnection):
        emu.target.single(mbox3rdPartyId="p1", **{"profile.a": "1"})
    assert emu.target.single(mbox3rdPartyId="p1", **{"profile.a": "1"}).status_code == 200
    assert emu.control.requests(api="single")[0]["fault"] == "drop"
    assert emu.control.stats()["single_updates"]["accepted"] == 1


def test_latency_waits_then_processes(emu: InProcess) -> None:
    emu.control.inject({"api": "any", "latency": 2.5})
    up = emu.target.upload(batch(f"{TP},a", "p1,x"))
    assert up.success and emu.clock.slept == [2.5]
    assert emu.target.attrs("p1") == {"a": "x"}
    assert emu.control.stats()["faults_injected"] == {"latency": 1, "total": 1}


def test_stuck_batches_never_complete_and_never_apply(
    make_emulator: Callable[..., InProcess],
) -> None:
    emu = make_emulator()
    emu.control.inject({"api": "bulk", "stuck": True})
    stuck = emu.target.upload(batch(f"{TP},a", "p1,x"))
    fine = emu.target.upload(batch(f"{TP},a", "p2,y"))
    emu.advance(3600)
    assert stuck.success and emu.target.status(stuck)["status"] == "stuck"
    assert emu.target.status(stuck)["consumedCount"] == "0"
    assert emu.target.status(fine)["status"] == "complete"
    assert emu.control.profiles()["thirdPartyId"] == {"p2": {"a": "y"}}
    assert emu.control.stats()["batches"] == {"incomplete": 0, "complete": 1, "stuck": 1}


def test_first_matching_rule_decides_and_spent_rules_disappear(emu: InProcess) -> None:
    plan = emu.control.inject(
        {"faults": [{"api": "status", "status": 500}, {"api": "any", "status": 503, "count": 2}]}
    )
    assert len(plan) == 2
    assert emu.target.fetch("p").status_code == 503
    assert emu.http.get("/m2/acme/profile/batchStatus?batchId=x").status_code == 500
    assert emu.http.get("/m2/acme/profile/batchStatus?batchId=x").status_code == 503
    assert emu.control.faults() == []
    emu.control.inject([{"api": "fetch", "status": 500, "count": 5}])
    emu.control.inject({"faults": [{"api": "fetch", "status": 502}], "replace": True})
    assert [f["status"] for f in emu.control.faults()] == [502]
    emu.control.clear_faults()
    assert emu.target.fetch("p").status_code == 404


@pytest.mark.parametrize(
    "plan",
    [
        {"api": "everything", "status": 500},
        {"api": "bulk"},
        {"api": "bulk", "status": 99},
        {"api": "bulk", "retry_after": 5},
        {"api": "bulk", "drop": True, "status": 500},
        {"api": "single", "stuck": True},
        {"api": "bulk", "status": 500, "count": 0},
        {"api": "bulk", "status": 500, "probability": 1.5},
        {"api": "bulk", "status": 500, "colour": "red"},
        "not a plan",
    ],
)
def test_malformed_fault_plans_are_refused(plan: object, emu: InProcess) -> None:
    with pytest.raises(PlanError):
        parse_plan(plan)
    response = emu.http.post("/_emulator/faults", json=plan)
    assert response.status_code == 400 and "bad fault plan" in response.json()["message"]
    assert emu.control.faults() == []


def test_stats_count_requests_rows_and_batches(emu: InProcess) -> None:
    up = emu.target.upload(batch(f"{TP},a", "p1,x", "p2,y"))
    emu.target.upload(batch(f"{TP},a", "p1,%zz"))
    emu.target.status(up)
    emu.target.single(mbox3rdPartyId="p1", **{"profile.b": "1"})
    emu.target.fetch("p1")
    stats = emu.control.stats()
    assert {k: stats[k] for k in ("bulk_requests", "status_requests", "single_requests")} == {
        "bulk_requests": 2,
        "status_requests": 1,
        "single_requests": 1,
    }
    assert stats["fetch_requests"] == 1
    assert (stats["batches_accepted"], stats["batches_rejected"], stats["rows_received"]) == (
        1,
        1,
        2,
    )
    assert stats["rows"] == {
        "successful": 2,
        "not_found": 0,
        "failed": 0,
        "discarded": 0,
        "lost": 0,
    }
    assert stats["profiles"] == 2 and stats["single_quota_used"] == 1


def test_request_log_is_a_bounded_ring(make_emulator: Callable[..., InProcess]) -> None:
    emu = make_emulator(request_log_size=3)
    up = emu.target.upload(batch(f"{TP},a", "p1,x"))
    for i in range(4):
        emu.target.fetch(f"p{i}")
    log = emu.control.requests()
    assert [r["path"] for r in log] == [f"/rest/v1/profiles/thirdPartyId/p{i}" for i in (1, 2, 3)]
    assert [r["seq"] for r in log] == [3, 4, 5]
    assert log[0]["api"] == "fetch" and log[0]["status"] == 200
    assert emu.control.requests(limit=1)[0]["seq"] == 5
    emu.control.reset()
    assert emu.control.requests() == []
    emu.target.upload(batch(f"{TP},a", "p1,x"))
    entry = emu.control.requests()[0]
    assert entry["batchId"] != up.batch_id and entry["bytes"] == len(batch(f"{TP},a", "p1,x"))


def test_reset_forgets_profiles_batches_quota_and_faults(
    make_emulator: Callable[..., InProcess],
) -> None:
    emu = make_emulator(single_quota=1)
    up = emu.target.upload(batch(f"{TP},a", "p1,x"))
    emu.target.single(mbox3rdPartyId="p1", **{"profile.b": "1"})
    emu.control.inject({"api": "fetch", "status": 500})
    emu.control.reset()
    assert emu.control.profiles() == {"thirdPartyId": {}, "pcId": {}}
    assert emu.http.get(up.status_url).status_code == 404
    assert emu.control.faults() == []
    assert emu.control.stats()["single_quota_used"] == 0
    assert emu.target.single(mbox3rdPartyId="p1", **{"profile.b": "1"}).status_code == 200


def test_batch_detail_shows_decoded_rows(emu: InProcess) -> None:
    up = emu.target.upload(
        batch(f"{TP},full%20name,b", "p%201,Ada+Lovelace,", "p2,,x", "p%2B3,Bob,")
    )
    detail = emu.control.batch(up.batch_id)
    assert detail["header"] == ["full name", "b"]
    assert detail["rows"] == [
        {"row": 1, "id": "p 1", "attributes": {"full name": "Ada Lovelace"}, "error": None},
        {"row": 2, "id": "p2", "attributes": {"b": "x"}, "error": None},
        {
            "row": 3,
            "id": "p+3",
            "attributes": {},
            "error": "thirdPartyId must not contain '+' or '/'",
        },
    ]
    assert [b["batchId"] for b in emu.control.batches()] == [up.batch_id]
    assert emu.http.get("/_emulator/batches/nope").status_code == 404


def test_applied_batch_rows_are_dropped_past_the_retention_budget(
    make_emulator: Callable[..., InProcess],
) -> None:
    body = batch(f"{TP},a", "p1,x")
    emu = make_emulator(retain_batch_bytes=len(body) * 2)
    ids = [emu.target.upload(body).batch_id for _ in range(3)]
    emu.control.tick()
    assert [emu.control.batch(i)["rows"] is not None for i in ids] == [False, True, True]
    assert emu.control.batch(ids[0])["status"] == "complete"


def test_state_is_keyed_for_comparison_with_a_fold(emu: InProcess) -> None:
    emu.target.upload(batch(f"{TP},a", "p1,x"))
    emu.target.upload(batch("batch=pcId,b", "t1,y"))
    assert emu.control.state() == {("thirdPartyId", "p1"): {"a": "x"}, ("pcId", "t1"): {"b": "y"}}


def test_unknown_paths(emu: InProcess) -> None:
    assert emu.http.get("/nothing").status_code == 404
    assert emu.http.get("/_emulator/nothing").status_code == 404


def test_wait_until_returns_the_value_or_times_out(emu: InProcess) -> None:
    assert emu.control.wait_until(lambda: emu.control.stats()["now"], timeout=1) == 1000.0
    with pytest.raises(TimeoutError):
        emu.control.wait_until(lambda: emu.control.stats()["profiles"], timeout=0.05)


def test_config_rejects_bad_options() -> None:
    with pytest.raises(TypeError):
        EmulatorConfig.from_options(bulk_delay=1)
    for bad in (
        {"override_mode": "last"},
        {"bulk_apply_delay": -1},
        {"client": "a/b"},
        {"token": "x", "token_file": "/f"},
    ):
        with pytest.raises(ValueError):
            EmulatorConfig.from_options(**bad)


def test_profiles_read_by_prefix(emu: InProcess) -> None:
    emu.target.upload(batch(f"{TP},a", "probe-1,x", "probe-2,y", "probe-3,v", "other-1,z"))
    emu.advance(3600)
    assert emu.target.single(mbox3rdPartyId="probe-3", **{"profile.a": "w"}).status_code == 200
    assert emu.control.profiles(prefix="probe-")["thirdPartyId"] == {
        "probe-1": {"a": "x"},
        "probe-2": {"a": "y"},
        "probe-3": {"a": "w"},
    }
    detailed = emu.control.profiles(details=True, prefix="probe-3")["thirdPartyId"]
    assert list(detailed) == ["probe-3"] and detailed["probe-3"]["a"]["value"] == "w"
    assert set(emu.control.profiles()["thirdPartyId"]) == {
        "probe-1",
        "probe-2",
        "probe-3",
        "other-1",
    }
