"""``profile-sync dlq replay``: re-publish selected dead letters to their source topics.

Select by reason, by when the dead letter was written (``--since``/``--until``, ISO-8601
or epoch milliseconds), by DLQ offsets (``--partition`` with ``--from-offset`` and
``--to-offset``) and by source topic; ``--dry-run`` reports what would be replayed and
publishes nothing. Prints one JSON report. Exit codes: 0 done, 2 bad arguments or
configuration, 3 Kafka failed (records confirmed before the failure stay published).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from datetime import UTC, datetime

from consumer import config
from consumer.errors import ConfigError, FatalError


def _instant_ms(raw: str) -> int:
    raw = raw.strip()
    if raw.isdigit():
        return int(raw)
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{raw!r} is neither ISO-8601 nor epoch milliseconds"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    rp = sub.add_parser("replay", help="re-publish dead letters to their source topics")
    rp.add_argument("--reason", action="append", default=[], help="only this reason (repeatable)")
    rp.add_argument("--since", type=_instant_ms, help="dead letters written at or after this")
    rp.add_argument("--until", type=_instant_ms, help="dead letters written before this")
    rp.add_argument("--partition", type=int, help="only this DLQ partition")
    rp.add_argument("--from-offset", type=int, help="first DLQ offset (inclusive)")
    rp.add_argument("--to-offset", type=int, help="last DLQ offset (inclusive)")
    rp.add_argument(
        "--source-topic", action="append", default=[], help="only letters from this topic"
    )
    rp.add_argument("--dry-run", action="store_true", help="report only, publish nothing")


def run(args: argparse.Namespace) -> int:
    try:
        settings = config.load(require_target=False)
    except ConfigError as exc:
        print(f"profile-sync: {exc}", file=sys.stderr)
        return 2
    if (args.from_offset is not None or args.to_offset is not None) and args.partition is None:
        print("profile-sync: --from-offset/--to-offset need --partition", file=sys.stderr)
        return 2
    from consumer.kafka.replay import Selection, replay

    selection = Selection(
        reasons=frozenset(args.reason),
        since_ms=args.since,
        until_ms=args.until,
        partition=args.partition,
        from_offset=args.from_offset,
        to_offset=args.to_offset,
        source_topics=frozenset(args.source_topic),
    )
    try:
        report = replay(
            settings.consumer_config(),
            settings.producer_config(),
            settings.dlq_topic,
            selection,
            dry_run=args.dry_run,
        )
    except FatalError as exc:
        print(f"profile-sync: {exc}", file=sys.stderr)
        return 3
    print(json.dumps({"dry_run": args.dry_run, **asdict(report)}, sort_keys=True))
    return 0
