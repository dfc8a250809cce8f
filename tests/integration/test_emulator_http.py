"""The emulator over real HTTP on 127.0.0.1: the documented calls, its rules, its transport."""

from __future__ import annotations

import http.client
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.fixtures.emulator import RunningEmulator
from tests.unit.emulator.harness import Target, batch, read_upload

pytestmark = pytest.mark.integration

TP = "batch=thirdPartyId"
DOC_EXAMPLE = (
    "batch=thirdPartyId,loyaltyTier,lifetimeValue,lastStoreId\n"
    "crm-0001,gold,1520.5,\n"
    "crm-0002,,88,store-17\n"
)


@pytest.fixture
def target(emulator: RunningEmulator) -> Iterator[Target]:
    with httpx.Client(base_url=emulator.url, timeout=10) as http:
        yield Target(http, emulator.client)


def curl_upload(url: str, path: Path, *form: str) -> str:
    """POST a file as curl would: ``--data-binary @file`` (or ``-F`` fields when given)."""
    curl = shutil.which("curl")
    if curl is None:  # replicate curl's request: same content type, same bytes
        if form:
            files = {"file": (path.name, path.read_bytes(), "application/octet-stream")}
            return httpx.post(url, files=files, timeout=10).text
        return httpx.post(
            url,
            content=path.read_bytes(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=10,
        ).text
    args = list(form) if form else ["--data-binary", f"@{path}"]
    done = subprocess.run(
        [curl, "-sS", "-X", "POST", *args, url], capture_output=True, timeout=30, check=True
    )
    return done.stdout.decode()


def test_the_documented_curl_upload_works_unchanged(
    emulator: RunningEmulator, target: Target, tmp_path: Path
) -> None:
    path = tmp_path / "batch.txt"
    path.write_text(DOC_EXAMPLE)
    body = curl_upload(f"{emulator.url}/m2/acme/v2/profile/batchUpdate", path)
    assert "<success>true</success>" in body
    assert f"<batchStatus>{emulator.url}/m2/acme/profile/batchStatus?batchId=acme-" in body
    assert "<message>Batch submitted for processing</message>" in body
    status = target.status(body.split("<batchStatus>")[1].split("</batchStatus>")[0])
    assert (status["status"], status["successfulUpdates"]) == ("complete", "2")
    assert target.attrs("crm-0001") == {"loyaltyTier": "gold", "lifetimeValue": "1520.5"}
    assert target.attrs("crm-0002") == {"lifetimeValue": "88", "lastStoreId": "store-17"}
    (request,) = emulator.control.requests(api="bulk")
    assert (request["method"], request["bytes"]) == ("POST", len(DOC_EXAMPLE))


def test_curl_multipart_file_field_works_too(
    emulator: RunningEmulator, target: Target, tmp_path: Path
) -> None:
    path = tmp_path / "batch.txt"
    path.write_text(DOC_EXAMPLE)
    body = curl_upload(f"{emulator.url}/m2/acme/profile/batchUpdate", path, "-F", f"file=@{path}")
    assert "<success>true</success>" in body  # v1: updates only, so nothing is found
    batch_id = body.split("batchId=")[1].split("<")[0]
    assert emulator.control.batch(batch_id)["profilesNotFound"] == 2


def test_both_bulk_versions_both_forms_and_the_fetch_json(target: Target) -> None:
    assert target.upload(batch(f"{TP},a", "p1,x"), version="v2").success
    assert target.upload(batch(f"{TP},b", "p1,y"), version="v1", multipart=True).success
    assert target.upload(batch(f"{TP},c", "p1,z"), version="v2", multipart=True).success
    response = target.fetch("p1")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    data = response.json()
    assert set(data) == {"client", "visitorId", "modifiedAt", "profileAttributes"}
    assert {k: v["value"] for k, v in data["profileAttributes"].items()} == {
        "a": "x",
        "b": "y",
        "c": "z",
    }
    assert data["modifiedAt"].endswith("+00:00")
    missing = target.fetch("nobody")
    assert missing.status_code == 404
    assert missing.json() == {
        "status": 404,
        "message": "No profile found for client acme with third party id=nobody",
    }
    by_pc = target.fetch("tnt-9", id_type="pcId")
    assert by_pc.json()["message"] == "No profile found for client acme with mboxPC=tnt-9"


def test_file_rules_over_http(emulator_server: Callable[..., RunningEmulator]) -> None:
    emulator = emulator_server(max_batch_rows=3, max_batch_bytes=200, max_profile_bytes=30)
    with httpx.Client(base_url=emulator.url, timeout=10) as http:
        target = Target(http)
        decoded = target.upload(batch(f"{TP},a,b,c", "p1,a+b,x%26y,caf%C3%A9", "p2,,,"))
        assert target.status(decoded)["successfulUpdates"] == "2"
        assert target.attrs("p1") == {"a": "a b", "b": "x&y", "c": "café"}
        assert target.attrs("p2") is None  # only empty values: nothing to create
        # A raw '&' ends the batch: p3 keeps what precedes it, p4 never arrives.
        cut = target.upload(batch(f"{TP},a,b", "p3,x,y&z", "p4,x,y"))
        assert target.status(cut)["batchSize"] == "1"
        assert (target.attrs("p3"), target.attrs("p4")) == ({"a": "x", "b": "y"}, None)
        rejected = {
            "bad %": batch(f"{TP},a", "p1,%G0"),
            "header": batch("batch=ecid,a", "p1,x"),
            "prefix": batch(f"{TP},profile.a", "p1,x"),
            "rows": batch(f"{TP},a", "p1,x", "p2,x", "p3,x", "p4,x"),
            "bytes": batch(f"{TP},a", "p1," + "x" * 200),
        }
        for name, body in rejected.items():
            up = target.upload(body)
            assert (up.success, up.status_url) == (False, ""), name
        capped = target.upload(batch(f"{TP},big", "p1," + "z" * 30))
        assert target.status(capped)["failedUpdates"] == "1"
        v1 = target.upload(batch(f"{TP},a", "p1,new", "ghost,x", "p%2F1,x"), version="v1")
        status = target.status(v1)
        assert (status["successfulUpdates"], status["profilesNotFound"]) == ("1", "1")
        assert status["failedUpdates"] == "1"  # a thirdPartyId holding '/' fails its row
        assert target.attrs("p1") == {"a": "new", "b": "x&y", "c": "café"}
    stats = emulator.control.stats()
    assert stats["rejections"] == {
        "bad_escape": 1,
        "bad_header": 1,
        "profile_prefix": 1,
        "too_many_rows": 1,
        "too_large": 1,
    }


def test_single_update_rules_over_http(emulator_server: Callable[..., RunningEmulator]) -> None:
    emulator = emulator_server(single_quota=3)
    with httpx.Client(base_url=emulator.url, timeout=10) as http:
        target = Target(http)
        target.upload(batch(f"{TP},a", "crm-1,x"))
        ok = target.single(mbox3rdPartyId="crm-1", **{"profile.b": "1"})
        assert (ok.status_code, ok.text) == (
            200,
            "<response><success>true</success><pcId></pcId>"
            "<message>Request successfully submitted</message></response>",
        )
        post = target.single("POST", mbox3rdPartyId="crm-1", **{"profile.c": "2"})
        assert post.status_code == 200
        ghost = target.single(mbox3rdPartyId="ghost", **{"profile.b": "1"})
        assert ghost.status_code == 200
        spent = target.single(mbox3rdPartyId="crm-1", **{"profile.d": "3"})
        assert spent.status_code == 429 and "<success>false</success>" in spent.text
        long_get = http.get(f"/m2/acme/profile/update?mbox3rdPartyId=crm-1&profile.e={'e' * 8200}")
        assert long_get.status_code == 414
        big_post = target.single("POST", mbox3rdPartyId="crm-1", **{"profile.f": "f" * 61500})
        assert big_post.status_code == 413
        assert target.attrs("crm-1") == {"a": "x", "b": "1", "c": "2"}
        assert target.attrs("ghost") is None
    stats = emulator.control.stats()
    assert stats["single_updates"]["not_found"] == 1
    assert stats["single_quota_used"] == 3
    assert stats["rejections"] == {"quota_exceeded": 1, "uri_too_long": 1, "body_too_large": 1}


def test_connections_are_kept_alive_across_requests(emulator: RunningEmulator) -> None:
    parts = urlsplit(emulator.url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        conn.request("GET", "/m2/acme/profile/batchStatus?batchId=none")
        first = conn.getresponse()
        first.read()
        sock = conn.sock
        body = batch(f"{TP},a", "p1,x")
        conn.request(
            "POST",
            "/m2/acme/v2/profile/batchUpdate",
            body=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        second = conn.getresponse()
        text = second.read().decode()
        assert (first.status, second.status) == (404, 200)
        assert "<success>true</success>" in text
        assert conn.sock is sock  # the same socket: no reconnect between the two
        assert first.getheader("Connection") is None  # HTTP/1.1 default: keep-alive
    finally:
        conn.close()


def test_a_refused_upload_keeps_the_connection_usable(
    emulator_server: Callable[..., RunningEmulator],
) -> None:
    emulator = emulator_server(max_batch_bytes=1000)
    with httpx.Client(base_url=emulator.url, timeout=10) as http:
        target = Target(http)
        # Refused without being read: the server drains the body before answering.
        assert not target.upload(b"batch=thirdPartyId,a\n" + b"p,x\n" * 100_000).success
        assert target.upload(batch(f"{TP},a", "p1,x")).success
    assert [r["status"] for r in emulator.control.requests()] == [200, 200]


def test_chunked_upload_is_read_whole(emulator: RunningEmulator, target: Target) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"batch=thirdPartyId,a\n"
        yield b"p1,x\n"
        yield b"p2,y\n"

    response = target.http.post(
        "/m2/acme/v2/profile/batchUpdate",
        content=chunks(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert read_upload(response).success
    assert emulator.control.state() == {
        ("thirdPartyId", "p1"): {"a": "x"},
        ("thirdPartyId", "p2"): {"a": "y"},
    }


def test_concurrent_clients_are_served_in_parallel(emulator: RunningEmulator) -> None:
    # One client holds a slow request (injected latency) while others are answered.
    emulator.control.inject({"api": "fetch", "latency": 3.0})
    finished: list[str] = []

    def slow() -> None:
        httpx.get(f"{emulator.url}/rest/v1/profiles/thirdPartyId/x?client=acme", timeout=10)
        finished.append("slow")

    thread = threading.Thread(target=slow)
    thread.start()
    try:
        emulator.control.wait_until(lambda: emulator.control.stats()["fetch_requests"], 5)
        errors: list[BaseException] = []

        def upload(n: int) -> None:
            try:
                with httpx.Client(base_url=emulator.url, timeout=10) as http:
                    for i in range(10):
                        assert Target(http).upload(batch(f"{TP},a", f"c{n}-{i},v")).success
                finished.append(f"fast-{n}")
            except BaseException as exc:  # surfaced below, in the test thread
                errors.append(exc)

        workers = [threading.Thread(target=upload, args=(n,)) for n in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(30)
        assert errors == []
        assert "slow" not in finished  # the four fast clients finished while it waited
    finally:
        thread.join(10)
    assert finished[-1] == "slow"
    assert emulator.control.stats()["profiles"] == 40
