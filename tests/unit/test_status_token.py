"""The bearer token only goes where it should: batch-status URLs on another host or on plain
http (issue 11, item 8). The emulator stands in for the tenant's host in-process; every
other host is a recorder that must never see the token unless it is a Target edge."""

from __future__ import annotations

import httpx
import pytest

from consumer import config
from consumer.core.model import BatchFile, IdType
from consumer.target.api import StatusUnknown
from consumer.target.client import TargetClient
from consumer.target.wire import encode_batch
from emulator.app import EmulatorApp
from emulator.config import EmulatorConfig

TOKEN = "s3cret-token"
HOST = "acme.tt.omtrdc.net"


class Hosts(httpx.BaseTransport):
    """The tenant's host is the emulator; any other host records the request."""

    def __init__(self) -> None:
        self.emulator = httpx.WSGITransport(
            app=EmulatorApp(EmulatorConfig.from_options(token=TOKEN))
        )
        self.elsewhere: list[httpx.Request] = []
        self.to_tenant: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == HOST:
            self.to_tenant.append(request)
            return self.emulator.handle_request(request)
        self.elsewhere.append(request)
        body = "<response><batchId>x</batchId><status>complete</status></response>"
        return httpx.Response(200, text=body)


@pytest.fixture
def hosts() -> Hosts:
    return Hosts()


@pytest.fixture
def client(hosts: Hosts) -> TargetClient:
    settings = config.load(
        {
            "PROFILE_SYNC_TARGET_URL": f"https://{HOST}",
            "PROFILE_SYNC_TARGET_CLIENT": "acme",
            "PROFILE_SYNC_TARGET_TOKEN": TOKEN,
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
        }
    )
    return TargetClient(settings, metrics=None, transport=hosts)


def _upload(client: TargetClient) -> str:
    body = encode_batch(IdType.THIRD_PARTY_ID, [("crm-1", {"tier": "gold"})])
    accepted = client.post_batch(BatchFile(1, IdType.THIRD_PARTY_ID, body, 1, 1, "rows", 0, 0))
    return accepted.batch_status_url


def test_a_plain_http_status_url_on_the_tenant_host_is_asked_over_https(
    client: TargetClient, hosts: Hosts
) -> None:
    url = _upload(client)
    plain = url.replace("https://", "http://", 1)  # as if Target answered a plain-http URL

    status = client.get_status(plain)

    assert status.status == "complete"
    asked = hosts.to_tenant[-1]
    assert asked.url.scheme == "https" and asked.headers["Authorization"] == f"Bearer {TOKEN}"
    assert hosts.elsewhere == []


def test_a_status_url_on_another_edge_of_the_domain_is_asked_over_https(
    client: TargetClient, hosts: Hosts
) -> None:
    client.get_status("http://mboxedge45.tt.omtrdc.net/m2/acme/profile/batchStatus?batchId=x")

    [asked] = hosts.elsewhere
    assert (asked.url.scheme, asked.url.host) == ("https", "mboxedge45.tt.omtrdc.net")


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example.com/m2/acme/profile/batchStatus?batchId=x",
        "http://tt.omtrdc.net.example.org/m2/acme/profile/batchStatus?batchId=x",
    ],
)
def test_a_status_url_elsewhere_never_receives_the_token(
    client: TargetClient, hosts: Hosts, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(StatusUnknown):
        client.get_status(url)

    assert hosts.elsewhere == []
    assert "batch status URL refused" in caplog.text
    assert TOKEN not in caplog.text
