"""Bulk Profile Update API, in-process on a fake clock."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.unit.emulator.harness import InProcess, batch

TP = "batch=thirdPartyId"


def test_documented_flow_incomplete_until_the_delay_then_complete_with_counts(
    make_emulator: Callable[..., InProcess],
) -> None:
    emu = make_emulator(bulk_apply_delay=30)
    up = emu.target.upload(
        batch(f"{TP},loyaltyTier,lifetimeValue", "crm-1,gold,1520.5", "crm-2,,88")
    )
    assert up.success and up.message == "Batch submitted for processing"
    assert emu.target.status(up, details=False) == {
        "batchId": up.batch_id,
        "status": "incomplete",
        "batchSize": "2",
    }
    assert emu.target.attrs("crm-1") is None  # not applied yet
    emu.advance(29.9)
    assert emu.target.status(up)["status"] == "incomplete"
    emu.advance(0.1)
    assert emu.target.status(up) == {
        "batchId": up.batch_id,
        "status": "complete",
        "batchSize": "2",
        "consumedCount": "2",
        "successfulUpdates": "2",
        "profilesNotFound": "0",
        "failedUpdates": "0",
    }
    assert emu.target.attrs("crm-1") == {"loyaltyTier": "gold", "lifetimeValue": "1520.5"}
    assert emu.target.attrs("crm-2") == {"lifetimeValue": "88"}


def test_batch_status_url_is_absolute_and_points_at_the_host_that_was_called(
    emu: InProcess,
) -> None:
    response = emu.http.post(
        "/m2/acme/v2/profile/batchUpdate",
        content=batch(f"{TP},a", "p1,x"),
        headers={"Host": "edge.example:8443"},
    )
    assert "<batchStatus>http://edge.example:8443/m2/acme/profile/batchStatus?batchId=acme-" in (
        response.text
    )


def test_multipart_file_field_is_accepted_like_the_raw_body(emu: InProcess) -> None:
    up = emu.target.upload(batch(f"{TP},a", "p1,x"), multipart=True)
    assert up.success
    assert emu.target.attrs("p1") == {"a": "x"}
    assert emu.control.batch(up.batch_id)["form"] == "multipart"


def test_multipart_without_a_file_field_fails(emu: InProcess) -> None:
    response = emu.http.post(
        "/m2/acme/v2/profile/batchUpdate", files={"upload": ("b.txt", batch(f"{TP},a", "p,x"))}
    )
    assert "<success>false</success>" in response.text
    assert emu.control.stats()["rejections"] == {"no_file_field": 1}


def test_v2_creates_missing_profiles_v1_counts_them_as_not_found(emu: InProcess) -> None:
    v1 = emu.target.upload(batch(f"{TP},a", "new-1,x", "new-2,y"), version="v1")
    status = emu.target.status(v1)
    assert (status["successfulUpdates"], status["profilesNotFound"]) == ("0", "2")
    assert emu.target.attrs("new-1") is None
    emu.target.upload(batch(f"{TP},a", "new-1,x"), version="v2")
    v1 = emu.target.upload(batch(f"{TP},b", "new-1,z", "new-2,y"), version="v1")
    status = emu.target.status(v1)
    assert (status["successfulUpdates"], status["profilesNotFound"]) == ("1", "1")
    assert emu.target.attrs("new-1") == {"a": "x", "b": "z"}


def test_empty_values_never_clear_a_stored_value(emu: InProcess) -> None:
    emu.target.upload(batch(f"{TP},a,b", "p1,1,2"))
    emu.target.upload(batch(f"{TP},a,b", "p1,,3"))
    assert emu.target.attrs("p1") == {"a": "1", "b": "3"}


def test_a_batch_of_only_empty_values_is_skipped_and_creates_nothing(emu: InProcess) -> None:
    up = emu.target.upload(batch(f"{TP},a,b", "p1,,", "p2,,"), version="v1")
    status = emu.target.status(up)
    assert status["status"] == "complete"
    assert status["profilesNotFound"] == "0"  # skipped: nothing was even looked up
    assert emu.control.profiles() == {"thirdPartyId": {}, "pcId": {}}
    assert emu.control.stats()["batches_skipped_empty"] == 1


def test_an_invalid_escape_fails_the_batch_and_changes_nothing(emu: InProcess) -> None:
    up = emu.target.upload(batch(f"{TP},a", "p1,fine", "p2,50%off"))
    assert not up.success and "Invalid URL encoding on line 3" in up.message
    assert up.status_url == ""
    assert emu.control.profiles()["thirdPartyId"] == {}
    stats = emu.control.stats()
    assert stats["batches_rejected"] == 1 and stats["rejections"] == {"bad_escape": 1}


def test_header_rules_fail_the_batch(emu: InProcess) -> None:
    for header in ("thirdPartyId,a", "batch=marketingCloudVisitorId,a", "batch=pcId"):
        up = emu.target.upload(batch(header, "p1,x"))
        assert not up.success, header
    assert emu.control.stats()["rejections"] == {"bad_header": 3}


def test_pcid_batches_are_a_separate_id_space(emu: InProcess) -> None:
    emu.target.upload(batch("batch=pcId,a", "same-id,pc"))
    emu.target.upload(batch(f"{TP},a", "same-id,tp"))
    assert emu.target.attrs("same-id", "pcId") == {"a": "pc"}
    assert emu.target.attrs("same-id") == {"a": "tp"}


def test_size_and_row_limits_fail_the_batch(make_emulator: Callable[..., InProcess]) -> None:
    emu = make_emulator(max_batch_bytes=40, max_batch_rows=2)
    assert emu.target.upload(batch(f"{TP},a", "p1,x", "p2,y")).success
    too_many = emu.target.upload(batch(f"{TP},a", "p1,x", "p2,y", "p3,z"))
    assert not too_many.success and "limit is 2 rows" in too_many.message
    too_big = emu.target.upload(batch(f"{TP},a", "p1," + "x" * 40))
    assert not too_big.success and "limit is 40 bytes" in too_big.message
    assert emu.control.stats()["rejections"] == {"too_many_rows": 1, "too_large": 1}


def test_profile_cap_fails_the_update_that_would_cross_it(
    make_emulator: Callable[..., InProcess],
) -> None:
    # Size = sum of UTF-8 len(name) + len(value): "a"+"12345678" = 9, "b"+"é" = 1+2 = 3.
    emu = make_emulator(max_profile_bytes=12)
    first = emu.target.upload(batch(f"{TP},a", "p1,12345678"))
    assert emu.target.status(first)["successfulUpdates"] == "1"
    cross = emu.target.upload(batch(f"{TP},b", "p1,%C3%A9x"))  # 9 + 1 + 3 = 13 > 12
    status = emu.target.status(cross)
    assert (status["successfulUpdates"], status["failedUpdates"]) == ("0", "1")
    fits = emu.target.upload(batch(f"{TP},b", "p1,%C3%A9"))  # exactly 12
    assert emu.target.status(fits)["successfulUpdates"] == "1"
    assert emu.target.attrs("p1") == {"a": "12345678", "b": "é"}
    too_big_new = emu.target.upload(batch(f"{TP},a", "p2,1234567890123"))
    assert emu.target.status(too_big_new)["failedUpdates"] == "1"
    assert emu.target.attrs("p2") is None


def test_replacing_a_value_is_measured_by_the_size_difference(
    make_emulator: Callable[..., InProcess],
) -> None:
    emu = make_emulator(max_profile_bytes=10)
    emu.target.upload(batch(f"{TP},a", "p1,123456789"))  # 10: full
    up = emu.target.upload(batch(f"{TP},a", "p1,987654321"))  # same size: still 10
    assert emu.target.status(up)["successfulUpdates"] == "1"
    assert emu.target.attrs("p1") == {"a": "987654321"}


def test_rows_apply_in_file_order_so_the_later_row_wins(emu: InProcess) -> None:
    emu.target.upload(batch(f"{TP},a,b", "p1,first,keep", "p1,second,"))
    assert emu.target.attrs("p1") == {"a": "second", "b": "keep"}


def test_bad_rows_fail_alone(emu: InProcess) -> None:
    up = emu.target.upload(batch(f"{TP},a", "p1,x", "p2,x,extra", ",x"))
    status = emu.target.status(up)
    assert (status["successfulUpdates"], status["failedUpdates"]) == ("1", "2")
    rows = emu.control.batch(up.batch_id)["rows"]
    assert [r["error"] for r in rows] == [None, "2 value cells for 1 columns", "empty profile id"]


def test_merge_mode_later_batch_merges_attribute_wise(
    make_emulator: Callable[..., InProcess],
) -> None:
    emu = make_emulator(bulk_apply_delay=10)
    emu.target.upload(batch(f"{TP},a,b", "p1,a1,b1"))
    emu.advance(1)
    emu.target.upload(batch(f"{TP},b", "p1,b2"))
    emu.advance(10)
    assert emu.target.attrs("p1") == {"a": "a1", "b": "b2"}


def test_replace_pending_discards_the_earlier_pending_rows_for_that_profile(
    make_emulator: Callable[..., InProcess],
) -> None:
    emu = make_emulator(bulk_apply_delay=10, override_mode="replace-pending")
    first = emu.target.upload(batch(f"{TP},a,b", "p1,a1,b1", "p2,a1,b1"))
    emu.advance(1)
    second = emu.target.upload(batch(f"{TP},b", "p1,b2"))
    emu.advance(10)
    # p1: only the later batch's row applied, so 'a' from the first batch is lost.
    assert emu.target.attrs("p1") == {"b": "b2"}
    assert emu.target.attrs("p2") == {"a": "a1", "b": "b1"}  # not in the later batch
    first_status = emu.target.status(first)
    assert (first_status["status"], first_status["successfulUpdates"]) == ("complete", "2")
    assert emu.control.batch(first.batch_id)["discardedRows"] == 1
    assert emu.target.status(second)["successfulUpdates"] == "1"
    assert emu.control.stats()["rows"]["discarded"] == 1


def test_replace_pending_leaves_an_already_applied_batch_alone(
    make_emulator: Callable[..., InProcess],
) -> None:
    emu = make_emulator(bulk_apply_delay=10, override_mode="replace-pending")
    emu.target.upload(batch(f"{TP},a,b", "p1,a1,b1"))
    emu.advance(10)  # due now: counts as applied even before anything reads it
    emu.target.upload(batch(f"{TP},b", "p1,b2"))
    emu.advance(10)
    assert emu.target.attrs("p1") == {"a": "a1", "b": "b2"}


def test_replace_pending_ignores_v1_batches(make_emulator: Callable[..., InProcess]) -> None:
    emu = make_emulator(bulk_apply_delay=10, override_mode="replace-pending")
    emu.target.upload(batch(f"{TP},a", "p1,a1"))
    emu.advance(10)
    emu.target.upload(batch(f"{TP},a,b", "p1,a2,b2"))
    emu.advance(1)
    emu.target.upload(batch(f"{TP},b", "p1,b3"), version="v1")
    emu.advance(10)
    assert emu.target.attrs("p1") == {"a": "a2", "b": "b3"}


def test_modified_timestamps_are_per_attribute_iso8601_with_offset(
    make_emulator: Callable[..., InProcess],
) -> None:
    emu = make_emulator(bulk_apply_delay=5)
    emu.target.upload(batch(f"{TP},a,b", "p1,1,1"))
    emu.advance(5)
    emu.target.upload(batch(f"{TP},b", "p1,2"))
    emu.advance(65)  # read a minute after the second batch was due
    body = emu.target.fetch("p1").json()
    # wall clock starts at 1_700_000_000 = 2023-11-14T22:13:20Z
    assert body["profileAttributes"]["a"]["modifiedAt"] == "2023-11-14T22:13:25.000+00:00"
    assert body["profileAttributes"]["b"]["modifiedAt"] == "2023-11-14T22:13:30.000+00:00"
    assert body["modifiedAt"] == "2023-11-14T22:13:30.000+00:00"
    assert body["client"] == "acme" and body["visitorId"] == "p1"


def test_unknown_batch_id_and_missing_batch_id(emu: InProcess) -> None:
    missing = emu.http.get("/m2/acme/profile/batchStatus")
    assert missing.status_code == 400
    unknown = emu.http.get("/m2/acme/profile/batchStatus?batchId=acme-1-1")
    assert unknown.status_code == 404 and "<success>false</success>" in unknown.text


def test_other_client_codes_and_methods_are_refused(emu: InProcess) -> None:
    other = emu.http.post("/m2/globex/v2/profile/batchUpdate", content=batch(f"{TP},a", "p,x"))
    assert other.status_code == 404
    wrong_method = emu.http.get("/m2/acme/v2/profile/batchUpdate")
    assert wrong_method.status_code == 405 and wrong_method.headers["Allow"] == "POST"


def test_upload_refused_unread_when_content_length_is_far_over_the_limit(
    make_emulator: Callable[..., InProcess],
) -> None:
    emu = make_emulator(max_batch_bytes=100)
    response = emu.http.post(
        "/m2/acme/v2/profile/batchUpdate",
        content=b"batch=thirdPartyId,a\n" + b"p,x\n" * 100,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert isinstance(response, httpx.Response)
    assert "<success>false</success>" in response.text and "limit is 100 bytes" in response.text


def test_a_large_batch_applies_in_steps_with_requests_answered_between_them(
    make_emulator: Callable[..., InProcess],
) -> None:
    # The server applies 1,000 rows at a time and lets requests in between (Target's other
    # APIs do not stop while a file applies); the outcome is the batch's, whole.
    stepped, whole = make_emulator(), make_emulator()
    stepped.app.store.read_step_rows = 1_000  # as the server sets it
    rows = [f"p{i},gold" for i in range(2_500)]
    uploads = {}
    for emu in (stepped, whole):
        emu.target.upload(batch("batch=thirdPartyId,tier", "p0,seed"))
        emu.control.tick()
        emu.target.single(mbox3rdPartyId="p0", **{"profile.city": "Lyon"})  # due first
        uploads[emu] = emu.target.upload(batch("batch=thirdPartyId,tier", *rows))
        emu.target.single(mbox3rdPartyId="p0", **{"profile.tier": "platinum"})  # due after
    assert whole.app.tick() == 3
    assert stepped.app.store.advance(max_rows=1_000) == 1  # the first single, part batch
    assert stepped.app.store.pending() == (1, 1)  # the batch under way, the later single
    # A read answers with the batch still under way (it applies 1,000 rows more at most).
    assert stepped.target.attrs("p0") == {"tier": "gold", "city": "Lyon"}
    assert stepped.app.store.applying
    assert stepped.app.tick(1_000) == 2  # the ticker: the rest of the batch, then the single
    for emu in (stepped, whole):
        assert emu.target.status(uploads[emu])["status"] == "complete"
        assert emu.target.attrs("p0") == {"tier": "platinum", "city": "Lyon"}
    assert stepped.control.profiles() == whole.control.profiles()
