"""Single Profile Update API and its ordering against bulk batches, on a fake clock."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable

import httpx
import pytest

from tests.unit.emulator.harness import InProcess, batch

TP = "batch=thirdPartyId"
# The answer the older Adobe guide prints in full; the current docs show its text content.
OK = (
    "<response><success>true</success><pcId></pcId>"
    "<message>Request successfully submitted</message></response>"
)


def failure(response: httpx.Response) -> str:
    """The message of a ``success=false`` XML answer (fails the test for any other body)."""
    assert response.headers["content-type"].startswith("application/xml"), response.text
    root = ET.fromstring(response.text)
    assert root.findtext("success") == "false", response.text
    return root.findtext("message") or ""


def seed(emu: InProcess, *ids: str, id_type: str = "thirdPartyId") -> None:
    emu.target.upload(batch(f"batch={id_type},seeded", *(f"{i},yes" for i in ids)))
    emu.control.tick()


def test_get_and_post_update_an_existing_profile(emu: InProcess) -> None:
    seed(emu, "crm-1")
    get = emu.target.single(mbox3rdPartyId="crm-1", **{"profile.tier": "gold card"})
    assert (get.status_code, get.text) == (200, OK)
    assert get.headers["content-type"].startswith("application/xml")
    assert "".join(ET.fromstring(get.text).itertext()) == "trueRequest successfully submitted"
    post = emu.target.single("POST", mbox3rdPartyId="crm-1", **{"profile.visits": "3"})
    assert (post.status_code, post.text) == (200, OK)
    assert emu.target.attrs("crm-1") == {"seeded": "yes", "tier": "gold card", "visits": "3"}


def test_mboxpc_updates_a_pcid_profile(emu: InProcess) -> None:
    seed(emu, "tnt-1", id_type="pcId")
    emu.target.single(mboxPC="tnt-1", **{"profile.kiosk": "1"})
    assert emu.target.attrs("tnt-1", "pcId") == {"seeded": "yes", "kiosk": "1"}


def test_single_update_never_creates_a_profile_and_counts_not_found(emu: InProcess) -> None:
    response = emu.target.single(mbox3rdPartyId="nobody", **{"profile.a": "1"})
    assert (response.status_code, response.text) == (200, OK)  # accepted: applied later
    assert emu.target.attrs("nobody") is None
    single = emu.control.stats()["single_updates"]
    assert (single["accepted"], single["applied"], single["not_found"]) == (1, 0, 1)


def test_empty_values_are_filtered_out(emu: InProcess) -> None:
    seed(emu, "crm-1")
    emu.target.single(mbox3rdPartyId="crm-1", **{"profile.seeded": "", "profile.b": "2"})
    assert emu.target.attrs("crm-1") == {"seeded": "yes", "b": "2"}


def test_request_errors(emu: InProcess) -> None:
    cases = {
        "missing_id": emu.target.single(**{"profile.a": "1"}),
        "bad_id": emu.target.single(mbox3rdPartyId="a/b", **{"profile.a": "1"}),
        "no_attributes": emu.target.single(mbox3rdPartyId="crm-1"),
        "bad_escape": emu.http.get("/m2/acme/profile/update?mbox3rdPartyId=x&profile.a=100%"),
    }
    assert {k: r.status_code for k, r in cases.items()} == dict.fromkeys(cases, 400)
    messages = {k: failure(r) for k, r in cases.items()}
    assert "'+' or '/'" in messages["bad_id"] and "mboxPC" in messages["missing_id"]
    assert emu.control.stats()["rejections"] == dict.fromkeys(cases, 1)
    assert emu.control.stats()["single_quota_used"] == 0  # refused calls spend no quota


def test_get_limit_is_8_kb_of_request_target(emu: InProcess) -> None:
    seed(emu, "crm-1")
    base = "/m2/acme/profile/update?mbox3rdPartyId=crm-1&profile.a="
    fits = emu.http.get(base + "x" * (8192 - len(base)))
    assert fits.status_code == 200
    over = emu.http.get(base + "x" * (8193 - len(base)))
    assert over.status_code == 414 and "8 KB" in failure(over)
    assert emu.target.attrs("crm-1") == {"seeded": "yes", "a": "x" * (8192 - len(base))}


def test_post_limit_is_60_kb_of_body(emu: InProcess) -> None:
    seed(emu, "crm-1")
    prefix = "mbox3rdPartyId=crm-1&profile.a="
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    url = "/m2/acme/profile/update"
    fits = emu.http.post(url, content=prefix + "y" * (61440 - len(prefix)), headers=headers)
    assert fits.status_code == 200
    over = emu.http.post(url, content=prefix + "y" * (61441 - len(prefix)), headers=headers)
    assert over.status_code == 413 and "60 KB" in failure(over)
    assert emu.control.stats()["rejections"] == {"body_too_large": 1}


def test_rolling_24h_quota(make_emulator: Callable[..., InProcess]) -> None:
    emu = make_emulator(single_quota=3)
    seed(emu, "crm-1")
    for _ in range(2):
        assert emu.target.single(mbox3rdPartyId="crm-1", **{"profile.a": "1"}).status_code == 200
    emu.advance(3600)
    assert emu.target.single(mbox3rdPartyId="crm-1", **{"profile.a": "2"}).status_code == 200
    refused = emu.target.single(mbox3rdPartyId="crm-1", **{"profile.a": "3"})
    assert refused.status_code == 429 and "quota" in failure(refused)
    assert emu.control.stats()["single_quota_used"] == 3
    emu.advance(24 * 3600 - 3600 + 1)  # the first two leave the window, the third stays
    assert emu.control.stats()["single_quota_used"] == 1
    assert emu.target.single(mbox3rdPartyId="crm-1", **{"profile.a": "4"}).status_code == 200
    assert emu.target.attrs("crm-1") == {"seeded": "yes", "a": "4"}


def test_single_updates_apply_after_their_own_delay(
    make_emulator: Callable[..., InProcess],
) -> None:
    emu = make_emulator(single_apply_delay=60)
    seed(emu, "crm-1")
    emu.target.single(mbox3rdPartyId="crm-1", **{"profile.a": "1"})
    emu.advance(59)
    assert emu.target.attrs("crm-1") == {"seeded": "yes"}
    assert emu.control.stats()["single_updates"]["pending"] == 1
    emu.advance(1)
    assert emu.target.attrs("crm-1") == {"seeded": "yes", "a": "1"}


def test_slow_bulk_lands_after_a_faster_single_and_wins(
    make_emulator: Callable[..., InProcess],
) -> None:
    emu = make_emulator(bulk_apply_delay=300, single_apply_delay=5)
    seed_up = emu.target.upload(batch(f"{TP},tier", "crm-1,bronze"))
    emu.advance(300)
    assert emu.target.status(seed_up)["status"] == "complete"
    emu.target.upload(batch(f"{TP},tier,city", "crm-1,silver,Paris"))  # due at +300
    emu.advance(10)
    emu.target.single(mbox3rdPartyId="crm-1", **{"profile.tier": "gold"})  # due at +5
    emu.advance(5)
    assert emu.target.attrs("crm-1") == {"tier": "gold"}
    emu.advance(300)
    assert emu.target.attrs("crm-1") == {"tier": "silver", "city": "Paris"}
    detail = emu.control.profiles(details=True)["thirdPartyId"]["crm-1"]
    assert detail["tier"]["source"].startswith("batch:")
    assert detail["tier"]["appliedAt"] == detail["city"]["appliedAt"]


def test_a_single_update_after_the_bulk_landed_wins(
    make_emulator: Callable[..., InProcess],
) -> None:
    emu = make_emulator(bulk_apply_delay=10, single_apply_delay=10)
    seed(emu, "crm-1")
    emu.advance(10)
    emu.target.upload(batch(f"{TP},tier", "crm-1,silver"))
    emu.advance(1)
    emu.target.single(mbox3rdPartyId="crm-1", **{"profile.tier": "gold"})
    emu.advance(20)
    assert emu.target.attrs("crm-1") == {"seeded": "yes", "tier": "gold"}


def test_equal_due_times_apply_in_acceptance_order(
    make_emulator: Callable[..., InProcess],
) -> None:
    emu = make_emulator(bulk_apply_delay=10, single_apply_delay=10)
    seed(emu, "crm-1")
    emu.advance(10)
    emu.target.single(mbox3rdPartyId="crm-1", **{"profile.tier": "gold"})
    emu.target.upload(batch(f"{TP},tier", "crm-1,silver"))
    emu.advance(10)
    assert emu.target.attrs("crm-1")["tier"] == "silver"  # type: ignore[index]


def test_single_update_over_the_profile_cap_fails(make_emulator: Callable[..., InProcess]) -> None:
    emu = make_emulator(max_profile_bytes=20)
    seed(emu, "crm-1")  # "seeded"+"yes" = 9
    emu.target.single(mbox3rdPartyId="crm-1", **{"profile.b": "x" * 11})  # 9 + 12 = 21
    assert emu.target.attrs("crm-1") == {"seeded": "yes"}
    assert emu.control.stats()["single_updates"]["failed"] == 1


@pytest.mark.parametrize("method", ["GET", "POST", "PUT"])
def test_refusals_outside_the_handler_answer_xml_too(
    make_emulator: Callable[..., InProcess], method: str
) -> None:
    emu = make_emulator(token="secret-token")
    response = emu.http.request(method, "/m2/acme/profile/update?mbox3rdPartyId=a&profile.b=1")
    assert response.status_code == 401
    assert "token" in failure(response) and "secret-token" not in response.text
