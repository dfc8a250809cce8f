"""``profile-sync probe``: find out what Target's docs leave open, on the tenant itself.

Adobe does not say whether Target decodes batch cells after splitting rows and cells
(reading A) or decodes the whole ``batch`` parameter first (reading B); under B an encoded
comma shifts the columns of its row. The probe uploads ONE tiny v2 batch for a dedicated
profile (``--profile-id``, default ``profile-sync-probe``) whose values exercise every
ambiguity (a comma, a line break, ``%``, ``+``, ``&``, ``=``, non-ASCII, a 300-character
value), encoded exactly as the service encodes them, follows the batch's status, reads the
profile back through the fetch API and prints what round-tripped and the setting to use
(``PROFILE_SYNC_TARGET_CELL_DECODING``). What it writes to the tenant: the probe profile's
``probe*`` attributes; under reading B also a second profile whose id is the text after
the line break (``<profile-id>-linebreak``). It spends about ten bulk-API calls.

Exit codes: 0 the reading was found, 1 inconclusive (not applied in time, or neither
reading fits), 2 configuration error, 3 Target unreachable or failing.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import Any

from consumer import config
from consumer.core.model import BatchFile, IdType
from consumer.errors import ConfigError, TargetError
from consumer.target.wire import encode_batch

# Column order matters: the comma comes first, so that under reading B it shifts every
# later column (a comma in the last column would only fail the row, telling less).
SENTINEL = "probeSentinel"


def probe_values(profile_id: str) -> dict[str, str]:
    return {
        "probeComma": "a,b",
        "probePercent": "100% sure",
        "probePlus": "a+b",
        "probeAmpersand": "fish & chips",
        "probeEquals": "key=value",
        "probeUnicode": "Zoë Ørsted 🎁",
        "probeLong": "x" * 300,
        "probeLineBreak": f"first line\n{profile_id}-linebreak",
        SENTINEL: "end",
    }


@dataclass(frozen=True, slots=True)
class Verdict:
    reading: str  # "A", "B" or "" (inconclusive)
    rows: list[tuple[str, str, str | None]]  # name, sent, read back


def judge(sent: dict[str, str], stored: dict[str, str]) -> Verdict:
    """Which reading explains what Target stored for the probe profile."""
    rows = [(name, value, stored.get(name)) for name, value in sent.items()]
    if all(back == value for _, value, back in rows):
        return Verdict("A", rows)
    # Under B, "a,b" is split: probeComma holds "a" and every later column moved right.
    names = list(sent)
    shifted = (
        stored.get(names[0]) == sent[names[0]].split(",", 1)[0]
        and stored.get(names[1]) == sent[names[0]].split(",", 1)[1]
    )
    return Verdict("B" if shifted else "", rows)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile-id",
        default="profile-sync-probe",
        help="thirdPartyId of the dedicated probe profile (default: profile-sync-probe)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=3600.0,
        help="seconds to wait for Target to apply the batch (it may take up to an hour)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        settings = config.load(require_kafka=False)
    except ConfigError as exc:
        print(f"profile-sync: {exc}", file=sys.stderr)
        return 2
    from consumer.target.client import TargetClient

    client = TargetClient(settings, metrics=None, pool_size=1)
    try:
        return _probe(client, args.profile_id, args.timeout)
    except TargetError as exc:
        print(f"profile-sync: the probe failed at Target: {exc}", file=sys.stderr)
        return 3
    finally:
        client.close()


def _probe(client: Any, profile_id: str, timeout: float) -> int:
    sent = probe_values(profile_id)
    body = encode_batch(IdType.THIRD_PARTY_ID, [(profile_id, sent)])
    batch = BatchFile(0, IdType.THIRD_PARTY_ID, body, 1, 1, "probe", 0, 0)
    accepted = client.post_batch(batch)
    print(f"probe batch accepted: {accepted.batch_status_url}", file=sys.stderr)
    deadline = time.monotonic() + timeout
    interval = 1.0
    while True:
        status = client.get_status(accepted.batch_status_url)
        if status.status == "complete":
            break
        if status.status == "stuck" or time.monotonic() + interval > deadline:
            print(f"profile-sync: the probe batch is {status.status}", file=sys.stderr)
            return 1
        time.sleep(interval)  # a CLI waiting for Target, not a test: polls spend the budget
        interval = min(30.0, interval * 2)
    profile = client.fetch_profile(IdType.THIRD_PARTY_ID, profile_id) or {}
    stored = {
        str(name): str(attr.get("value") if isinstance(attr, dict) else attr)
        for name, attr in profile.get("profileAttributes", {}).items()
    }
    verdict = judge(sent, stored)
    _print_table(verdict)
    if not verdict.reading:
        print(
            "\nneither reading explains what Target stored: set "
            "PROFILE_SYNC_TARGET_CELL_DECODING=B (the cautious one) and look at the table"
        )
        return 1
    print(f"\nreading {verdict.reading}: set PROFILE_SYNC_TARGET_CELL_DECODING={verdict.reading}")
    return 0


def _show(text: str | None) -> str:
    if text is None:
        return "(missing)"
    shown = text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text
    return shown if len(shown) <= 32 else f"{shown[:29]}... ({len(text)} chars)"


def _print_table(verdict: Verdict) -> None:
    print(f"{'attribute':<16} {'sent':<40} {'read back':<40} round-trip")
    for name, value, back in verdict.rows:
        ok = "yes" if back == value else "NO"
        print(f"{name:<16} {_show(value):<40} {_show(back):<40} {ok}")
