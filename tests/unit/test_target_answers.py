"""Reading Target's answers: the single update's success flag, status URLs and expiry."""

from __future__ import annotations

import pytest

from consumer.errors import PermanentError, RetryableError
from consumer.target.api import (
    StatusUnknown,
    parse_batch_status,
    parse_single_response,
    status_url,
)

OK = (
    "<response><success>true</success><pcId></pcId>"
    "<message>Request successfully submitted</message></response>"
)
REFUSED = "<response><success>false</success><message>no such profile</message></response>"


def test_a_single_update_succeeds_only_when_target_says_success_true() -> None:
    parse_single_response(200, OK)
    parse_single_response(200, "trueRequest successfully submitted")  # the page's text form
    with pytest.raises(PermanentError, match="no such profile"):
        parse_single_response(200, REFUSED)
    with pytest.raises(PermanentError):
        parse_single_response(200, "falseSomething went wrong")
    with pytest.raises(RetryableError):
        parse_single_response(200, "<html>gateway hiccup</html>")


BASE = "https://acme.tt.omtrdc.net"
PATH = "/m2/acme/profile/batchStatus?batchId=acme-1-2"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"https://acme.tt.omtrdc.net{PATH}", f"https://acme.tt.omtrdc.net{PATH}"),
        # Target's status host may be another edge of the same domain.
        (f"https://mboxedge45.tt.omtrdc.net{PATH}", f"https://mboxedge45.tt.omtrdc.net{PATH}"),
        # Plain http is upgraded: the token never travels in clear text.
        (f"http://acme.tt.omtrdc.net{PATH}", f"https://acme.tt.omtrdc.net{PATH}"),
        (f"http://mboxedge45.tt.omtrdc.net{PATH}", f"https://mboxedge45.tt.omtrdc.net{PATH}"),
    ],
)
def test_a_status_url_on_the_configured_domain_is_used_over_https(url: str, expected: str) -> None:
    assert status_url(url, BASE) == expected


@pytest.mark.parametrize(
    "url",
    [
        f"https://evil.example.com{PATH}",
        f"http://omtrdc.net.evil.example{PATH}",
        f"https://tt.omtrdc.net.example.org{PATH}",
        f"ftp://acme.tt.omtrdc.net{PATH}",
        "not a url",
    ],
)
def test_a_status_url_elsewhere_is_refused(url: str) -> None:
    with pytest.raises(StatusUnknown, match=r"token is not sent|not an http"):
        status_url(url, BASE)


def test_the_emulator_on_a_loopback_address_is_its_own_host_only() -> None:
    base = "http://127.0.0.1:41233"
    assert status_url(f"http://127.0.0.1:41233{PATH}", base) == f"http://127.0.0.1:41233{PATH}"
    with pytest.raises(StatusUnknown):
        status_url(f"http://127.0.0.2:41233{PATH}", base)
    with pytest.raises(StatusUnknown):
        status_url(f"http://127.0.0.1:9999{PATH}", base)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (404, "<response><success>false</success><message>Batch ID not found</message></response>"),
        (200, "<response><success>false</success><message>Batch ID not found</message></response>"),
        (200, "<html><body>Oops</body></html"),
        (410, ""),
    ],
)
def test_a_status_that_no_longer_answers_is_unknown(status: int, body: str) -> None:
    with pytest.raises(StatusUnknown):
        parse_batch_status(status, body)


def test_a_server_error_on_status_is_retried_not_unknown() -> None:
    with pytest.raises(RetryableError):
        parse_batch_status(503, "<response><success>false</success></response>")
