"""The reference's tenant rules, in-process on a fake clock: the raw '&' truncation, header
and id rules, decoding B, the bulk rate limit, status retention, row loss and the 64 KB cap."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable

import httpx
import pytest

from emulator.config import EmulatorConfig
from tests.unit.emulator.harness import InProcess, batch

TP = "batch=thirdPartyId"


def status_of(emu: InProcess, url: str) -> httpx.Response:
    return emu.http.get(url + "&showDetails=true")


# -- the batch file


def test_a_raw_ampersand_drops_the_rest_of_the_batch(emu: InProcess) -> None:
    up = emu.target.upload(batch(f"{TP},a,b", "p1,x,y", "p2,fish&chips,z", "p3,lost,lost"))
    assert up.success
    assert emu.target.status(up)["batchSize"] == "2"
    assert emu.target.attrs("p1") == {"a": "x", "b": "y"}
    assert emu.target.attrs("p2") == {"a": "fish"}
    assert emu.target.attrs("p3") is None
    assert emu.control.batch(up.batch_id)["cutLines"] == 2


def test_nothing_before_the_first_ampersand_is_an_empty_batch(emu: InProcess) -> None:
    up = emu.target.upload(batch(f"{TP},a", "&p1,x", "p2,y"))
    assert not up.success and up.batch_id == "" and up.message.startswith("Batch is empty")
    stats = emu.control.stats()
    assert stats["batches_accepted"] == 0 and stats["rejections"] == {"empty_batch": 1}


def test_a_profile_prefixed_header_fails_the_batch(emu: InProcess) -> None:
    up = emu.target.upload(batch(f"{TP},profile.loyaltyTier", "p1,gold"))
    assert not up.success and "profile." in up.message
    assert emu.target.attrs("p1") is None
    assert emu.control.stats()["rejections"] == {"profile_prefix": 1}


def test_a_third_party_id_with_plus_or_slash_fails_its_row_and_the_rest_applies(
    emu: InProcess,
) -> None:
    up = emu.target.upload(batch(f"{TP},a", "ok-1,x", "bad%2B1,x", "bad/2,x", "ok-2,y"))
    status = emu.target.status(up)
    assert (status["successfulUpdates"], status["failedUpdates"]) == ("2", "2")
    assert emu.control.state() == {
        ("thirdPartyId", "ok-1"): {"a": "x"},
        ("thirdPartyId", "ok-2"): {"a": "y"},
    }


@pytest.mark.parametrize(("mode", "stored"), [("fail", None), ("truncate", "x" * 256)])
def test_long_third_party_ids_follow_the_setting(
    make_emulator: Callable[..., InProcess], mode: str, stored: str | None
) -> None:
    emu = make_emulator(long_id=mode)
    up = emu.target.upload(batch(f"{TP},a", "x" * 300 + ",v"))
    failed = emu.target.status(up)["failedUpdates"]
    assert failed == ("1" if stored is None else "0")
    ids = [pid for _, pid in emu.control.state()]
    assert ids == ([] if stored is None else [stored])


def test_decoding_b_corrupts_columns_and_rows_the_way_target_would(
    make_emulator: Callable[..., InProcess],
) -> None:
    body = batch(f"{TP},city,tier", "p1,Paris%2C%20FR,gold", "p2,Lyon%0Aintruder,silver")
    a = make_emulator()
    a.target.upload(body)
    assert a.control.state() == {
        ("thirdPartyId", "p1"): {"city": "Paris, FR", "tier": "gold"},
        ("thirdPartyId", "p2"): {"city": "Lyon\nintruder", "tier": "silver"},
    }
    b = make_emulator(decoding="B")
    up = b.target.upload(body)
    # p1 has one cell too many: the row fails. The line break splits p2 in two rows, and
    # the second creates a profile named after the rest of the value.
    assert b.control.state() == {
        ("thirdPartyId", "p2"): {"city": "Lyon"},
        ("thirdPartyId", "intruder"): {"city": "silver"},
    }
    status = b.target.status(up)
    assert (status["batchSize"], status["successfulUpdates"], status["failedUpdates"]) == (
        "3",
        "2",
        "1",
    )


def test_the_default_64_kb_cap_fails_the_row_that_would_cross_it(emu: InProcess) -> None:
    assert emu.app.config.max_profile_bytes == 64 * 1024
    # name "a" + 65,000 bytes fits; adding "b" + 600 bytes would cross 65,536.
    first = emu.target.upload(batch(f"{TP},a", "p1," + "x" * 65_000))
    cross = emu.target.upload(batch(f"{TP},b,c", "p1," + "y" * 600 + ",z", "p2,ok,ok"))
    assert emu.target.status(first)["successfulUpdates"] == "1"
    status = emu.target.status(cross)
    assert (status["successfulUpdates"], status["failedUpdates"]) == ("1", "1")
    assert emu.target.attrs("p1") == {"a": "x" * 65_000}


# -- the tenant-wide limit of bulk-API calls


def test_the_bulk_rate_limit_is_on_by_default_at_50_a_minute() -> None:
    config = EmulatorConfig()
    assert (config.bulk_rate_limit, config.bulk_rate_window) == (50, 60.0)


def test_uploads_and_status_polls_share_the_budget_and_the_51st_call_gets_503(
    make_emulator: Callable[..., InProcess],
) -> None:
    emu = make_emulator(bulk_rate_limit=5)
    up = emu.target.upload(batch(f"{TP},a", "p1,x"))
    for _ in range(2):
        assert status_of(emu, up.status_url).status_code == 200
    emu.advance(30)
    emu.target.upload(batch(f"{TP},a", "p2,y"))
    assert status_of(emu, up.status_url).status_code == 200  # 5th call in the minute
    refused = emu.http.post(
        emu.target.bulk_url(), content=batch(f"{TP},a", "p3,z"), headers={"Content-Type": "x"}
    )
    assert refused.status_code == 503
    root = ET.fromstring(refused.text)
    assert root.findtext("success") == "false" and "5 bulk API calls" in (
        root.findtext("message") or ""
    )
    assert status_of(emu, up.status_url).status_code == 503
    # Single updates and profile reads are outside the limit.
    assert emu.target.single(mbox3rdPartyId="p1", **{"profile.b": "1"}).status_code == 200
    assert emu.target.fetch("p1").status_code == 200
    assert emu.target.attrs("p3") is None  # the refused upload was not processed
    emu.advance(30)  # the first three calls leave the window
    assert status_of(emu, up.status_url).status_code == 200
    rate = emu.control.stats()["bulk_rate"]
    assert rate == {
        "limit": 5,
        "window_seconds": 60.0,
        "calls_counted": 6,
        "refused_503": 2,
        "calls_in_window": 5,  # the two refused, the 4th, 5th and the last admitted
        "admitted_in_window": 3,
        "peak_calls_in_window": 7,
        "peak_admitted_in_window": 5,
    }
    assert emu.control.stats()["rejections"]["rate_limited"] == 2


def test_with_the_limit_off_calls_per_minute_are_still_measured(
    make_emulator: Callable[..., InProcess],
) -> None:
    emu = make_emulator(bulk_rate_limit=0)
    up = emu.target.upload(batch(f"{TP},a", "p1,x"))
    for _ in range(80):
        assert status_of(emu, up.status_url).status_code == 200
    rate = emu.control.bulk_rate()
    assert (rate["refused_503"], rate["peak_calls_in_window"], rate["calls_counted"]) == (
        0,
        81,
        81,
    )


def test_calls_for_another_client_and_injected_faults_do_not_use_the_budget(
    make_emulator: Callable[..., InProcess],
) -> None:
    emu = make_emulator(bulk_rate_limit=1)
    emu.control.inject({"api": "bulk", "status": 500, "count": 3})
    for _ in range(3):
        assert emu.http.post(emu.target.bulk_url(), content=b"x").status_code == 500
    assert emu.http.post("/m2/other/v2/profile/batchUpdate", content=b"x").status_code == 404
    assert emu.target.upload(batch(f"{TP},a", "p1,x")).success
    assert emu.http.post(emu.target.bulk_url(), content=b"x").status_code == 503


def test_reset_empties_the_window(make_emulator: Callable[..., InProcess]) -> None:
    emu = make_emulator(bulk_rate_limit=1)
    emu.target.upload(batch(f"{TP},a", "p1,x"))
    emu.control.reset()
    assert emu.target.upload(batch(f"{TP},a", "p1,x")).success


# -- status retention


def test_only_the_last_n_statuses_are_answered_but_every_batch_applies(
    make_emulator: Callable[..., InProcess],
) -> None:
    emu = make_emulator(status_retention_count=3, bulk_apply_delay=10)
    ups = [emu.target.upload(batch(f"{TP},a", f"p{i},v{i}")) for i in range(5)]
    answers = [status_of(emu, up.status_url) for up in ups]
    assert [r.status_code for r in answers] == [404, 404, 200, 200, 200]
    # An evicted status looks exactly like an id Target never saw.
    unknown = emu.http.get(ups[0].status_url.replace(ups[0].batch_id, "acme-1-999"))
    assert answers[0].text.replace(ups[0].batch_id, "ID") == unknown.text.replace(
        "acme-1-999", "ID"
    )
    emu.advance(10)
    assert len(emu.control.state()) == 5  # forgotten statuses, applied batches
    views = {b["batchId"]: b["statusAnswered"] for b in emu.control.batches()}
    assert [views[up.batch_id] for up in ups] == [False, False, True, True, True]
    assert emu.control.stats()["rejections"] == {"status_evicted": 2, "unknown_batch": 1}


def test_a_status_is_answered_for_at_most_the_retention_time(
    make_emulator: Callable[..., InProcess],
) -> None:
    emu = make_emulator(status_retention_seconds=3600)
    up = emu.target.upload(batch(f"{TP},a", "p1,x"))
    emu.advance(3599)
    assert status_of(emu, up.status_url).status_code == 200
    emu.advance(1)
    assert status_of(emu, up.status_url).status_code == 404
    assert emu.control.stats()["rejections"] == {"status_expired": 1}


def test_defaults_keep_ten_statuses_for_24_hours(emu: InProcess) -> None:
    ups = [emu.target.upload(batch(f"{TP},a", f"p{i},x")) for i in range(11)]
    assert status_of(emu, ups[0].status_url).status_code == 404
    assert status_of(emu, ups[1].status_url).status_code == 200
    emu.advance(24 * 3600)
    assert status_of(emu, ups[10].status_url).status_code == 404


# -- Adobe's documented loss


def test_lost_rows_are_reported_complete_and_listed_by_the_controls(
    make_emulator: Callable[..., InProcess],
) -> None:
    rows = [f"p{i},v{i}" for i in range(1000)]
    emu = make_emulator(bulk_loss_rate=0.01, bulk_loss_seed=7)
    up = emu.target.upload(batch(f"{TP},a", *rows))
    status = emu.target.status(up)
    assert status["status"] == "complete"
    assert (status["successfulUpdates"], status["failedUpdates"]) == ("1000", "0")
    lost = emu.control.batch(up.batch_id)["lost"]
    assert len(lost) == 10
    state = emu.control.state()
    assert len(state) == 990
    for row in lost:
        assert ("thirdPartyId", row["id"]) not in state
        assert row["attributes"] == {"a": "v" + row["id"][1:]}
        assert row["row"] == int(row["id"][1:]) + 1
    assert [(x["batchId"], x["row"], x["id"]) for x in emu.control.lost()] == [
        (up.batch_id, row["row"], row["id"]) for row in lost
    ]
    assert emu.control.stats()["rows"]["lost"] == 10
    # Same seed, same batches: the same rows are lost.
    again = make_emulator(bulk_loss_rate=0.01, bulk_loss_seed=7)
    up2 = again.target.upload(batch(f"{TP},a", *rows))
    assert again.control.batch(up2.batch_id)["lost"] == lost
    other = make_emulator(bulk_loss_rate=0.01, bulk_loss_seed=8)
    up3 = other.target.upload(batch(f"{TP},a", *rows))
    assert other.control.batch(up3.batch_id)["lost"] != lost


def test_a_lost_v1_row_for_a_missing_profile_still_counts_not_found(
    make_emulator: Callable[..., InProcess],
) -> None:
    emu = make_emulator(bulk_loss_rate=1.0)
    up = emu.target.upload(batch(f"{TP},a", "nobody,x"), version="v1")
    status = emu.target.status(up)
    assert (status["successfulUpdates"], status["profilesNotFound"]) == ("0", "1")
    assert emu.control.batch(up.batch_id)["lost"] == []


def test_no_loss_by_default(emu: InProcess) -> None:
    up = emu.target.upload(batch(f"{TP},a", *(f"p{i},x" for i in range(2000))))
    assert emu.control.batch(up.batch_id)["lost"] == []
    assert len(emu.control.state()) == 2000
