"""``profile-sync profile get``: what does Target hold for this profile? (operators' tool)

Reads through Target's documented fetch API with the configured base URL, client code and
token (PROFILE_SYNC_TARGET_URL, PROFILE_SYNC_TARGET_CLIENT, PROFILE_SYNC_TARGET_TOKEN_FILE).
Exit codes: 0 found, 1 not found, 2 configuration error, 3 Target unreachable or failing.
"""

from __future__ import annotations

import argparse
import json
import sys

from consumer import config
from consumer.core.model import IdType
from consumer.errors import ConfigError, TargetError


def configure_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    get = sub.add_parser("get", help="fetch one profile and print it as JSON")
    which = get.add_mutually_exclusive_group(required=True)
    which.add_argument("--third-party-id", metavar="ID", help="the mbox3rdPartyId / CRM id")
    which.add_argument("--pc-id", metavar="ID", help="Target's visitor id (tntid)")


def run(args: argparse.Namespace) -> int:
    try:
        settings = config.load(require_kafka=False)
    except ConfigError as exc:
        print(f"profile-sync: {exc}", file=sys.stderr)
        return 2
    from consumer.target.client import TargetClient

    id_type = IdType.THIRD_PARTY_ID if args.third_party_id else IdType.PC_ID
    profile_id = args.third_party_id or args.pc_id
    client = TargetClient(settings, metrics=None, pool_size=1)
    try:
        profile = client.fetch_profile(id_type, profile_id)
    except TargetError as exc:
        print(f"profile-sync: fetching the profile failed: {exc}", file=sys.stderr)
        return 3
    finally:
        client.close()
    if profile is None:
        print(f"profile-sync: no profile with {id_type.value} {profile_id!r}", file=sys.stderr)
        return 1
    print(json.dumps(profile, indent=2, ensure_ascii=False))
    return 0
