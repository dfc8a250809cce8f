"""A small Target client for the emulator's tests, over any httpx transport.

Unit tests drive the WSGI app in-process (``httpx.WSGITransport``) with a fake clock;
integration tests use the same helpers against the real server.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from emulator.app import EmulatorApp
from emulator.client import EmulatorControl
from emulator.config import EmulatorConfig
from tests.utils import FakeClock


def batch(header: str, *rows: str, newline: str = "\n") -> bytes:
    """A batch file from its header and rows, e.g. ``batch("batch=thirdPartyId,a", "p1,x")``."""
    return (newline.join([header, *rows]) + newline).encode("utf-8")


@dataclass(frozen=True)
class Upload:
    status_code: int
    success: bool
    message: str
    status_url: str
    batch_id: str


class Target:
    """The Target APIs of one emulator, as a test uses them."""

    def __init__(self, http: httpx.Client, client: str = "acme", token: str | None = None):
        self.http = http
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def bulk_url(self, version: str = "v2") -> str:
        if version == "v1":
            return f"/m2/{self.client}/profile/batchUpdate"
        return f"/m2/{self.client}/v2/profile/batchUpdate"

    def upload(self, body: bytes, version: str = "v2", multipart: bool = False) -> Upload:
        if multipart:
            response = self.http.post(
                self.bulk_url(version),
                files={"file": ("batch.txt", body, "text/plain")},
                headers=self.headers,
            )
        else:
            response = self.http.post(
                self.bulk_url(version),
                content=body,
                headers={"Content-Type": "application/x-www-form-urlencoded", **self.headers},
            )
        return read_upload(response)

    def status(self, upload: Upload | str, details: bool = True) -> dict[str, str]:
        url = upload.status_url if isinstance(upload, Upload) else upload
        if details:
            url += "&showDetails=true"
        response = self.http.get(url, headers=self.headers)
        assert response.status_code == 200, response.text
        return {child.tag: child.text or "" for child in ET.fromstring(response.text)}

    def single(self, method: str = "GET", **params: str) -> httpx.Response:
        url = f"/m2/{self.client}/profile/update"
        if method == "GET":
            return self.http.get(url, params=params, headers=self.headers)
        return self.http.post(url, data=params, headers=self.headers)

    def fetch(self, profile_id: str, id_type: str = "thirdPartyId") -> httpx.Response:
        path = f"thirdPartyId/{profile_id}" if id_type == "thirdPartyId" else profile_id
        return self.http.get(
            f"/rest/v1/profiles/{path}", params={"client": self.client}, headers=self.headers
        )

    def attrs(self, profile_id: str, id_type: str = "thirdPartyId") -> dict[str, str] | None:
        """A profile's attribute values as the fetch API shows them; None if not found."""
        response = self.fetch(profile_id, id_type)
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return {k: v["value"] for k, v in data["profileAttributes"].items()}


def read_upload(response: httpx.Response) -> Upload:
    assert response.status_code == 200, response.text
    root = ET.fromstring(response.text)
    url = root.findtext("batchStatus") or ""
    batch_id = parse_qs(urlsplit(url).query).get("batchId", [""])[0] if url else ""
    return Upload(
        response.status_code,
        (root.findtext("success") or "") == "true",
        root.findtext("message") or "",
        url,
        batch_id,
    )


class InProcess:
    """An ``EmulatorApp`` on a fake clock, with a Target client and a control client."""

    def __init__(self, **options: Any) -> None:
        self.clock = FakeClock()
        self.wall = FakeClock(1_700_000_000.0)
        self.app = EmulatorApp(
            EmulatorConfig.from_options(**options),
            clock=self.clock,
            wall=self.wall,
            sleep=self.clock.sleep,
        )
        transport = httpx.WSGITransport(app=self.app)
        self.http = httpx.Client(transport=transport, base_url="http://target.test")
        self.target = Target(self.http, self.app.config.client, options.get("token"))
        self.control = EmulatorControl("http://target.test", transport=transport)

    def advance(self, seconds: float) -> None:
        """Move both clocks (the apply clock and the wall clock behind modifiedAt)."""
        self.clock.advance(seconds)
        self.wall.advance(seconds)

    def close(self) -> None:
        self.http.close()
        self.control.close()
