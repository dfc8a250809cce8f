"""``profile-sync verify``: does Target hold what Kafka says? (operators' and scripts' tool)

For the chosen profiles (``--third-party-id``/``--pc-id``, ``--ids-file``, or ``--sample N``
drawn from the records read), it folds the newest value of every attribute from the
service's topics, mapped exactly as ``run`` maps them (docs/mapping.md), read outside the
consumer group with nothing committed, reads each profile
from Target through the fetch API at ``PROFILE_SYNC_AUDIT_READS_PER_SECOND``, and prints
one line per attribute that does not match, then a summary.

An attribute that differs is ``superseded`` when the service has not committed past the
record that set it (the value is still on its way), ``not_found`` when Target has no such
profile, ``lost`` otherwise. Exit codes: 0 nothing lost or not found, 1 something lost or
not found, 2 usage or configuration error, 3 Kafka or Target unreachable.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

from consumer import config
from consumer.core import audit
from consumer.core.model import IdType, ProfileUpdate
from consumer.core.newest import Difference, Fold, Newest, ProfileKey, Status, compare
from consumer.errors import ConfigError, FatalError, MappingSpecError, PoisonError, TargetError

EXIT_OK = 0
EXIT_LOST = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


def configure_parser(parser: argparse.ArgumentParser) -> None:
    which = parser.add_argument_group("profiles (one of these ways)")
    which.add_argument("--third-party-id", metavar="ID", action="append", default=[])
    which.add_argument("--pc-id", metavar="ID", action="append", default=[])
    which.add_argument(
        "--ids-file",
        metavar="FILE",
        help="one profile per line: ID (a thirdPartyId) or pcId:ID / thirdPartyId:ID",
    )
    which.add_argument(
        "--sample", metavar="N", type=int, help="N profiles drawn at random from the records read"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of --sample (default 0)")
    parser.add_argument(
        "--recent",
        metavar="N",
        type=int,
        default=0,
        help="read only the last N records of each partition (default: all retained)",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to read Kafka")
    parser.add_argument("--format", choices=("text", "json"), default="text")


def _ids(args: argparse.Namespace) -> set[ProfileKey] | None:
    """The profiles asked for, None for ``--sample``. Raises ``ValueError`` on bad usage."""
    keys = {(IdType.THIRD_PARTY_ID, i) for i in args.third_party_id}
    keys |= {(IdType.PC_ID, i) for i in args.pc_id}
    if args.ids_file:
        for line in Path(args.ids_file).read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            kind, sep, rest = line.partition(":")
            if sep and kind in (IdType.PC_ID.value, IdType.THIRD_PARTY_ID.value):
                keys.add((IdType(kind), rest))
            else:
                keys.add((IdType.THIRD_PARTY_ID, line))
    if args.sample is not None:
        if keys or args.sample < 1:
            raise ValueError("--sample N (N >= 1) excludes ids and --ids-file")
        return None
    if not keys:
        raise ValueError("name profiles: --third-party-id, --pc-id, --ids-file or --sample N")
    return keys


def run(args: argparse.Namespace) -> int:
    try:
        settings = config.load()
        wanted = _ids(args)
    except ConfigError as exc:
        print(f"profile-sync verify: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, ValueError) as exc:
        print(f"profile-sync verify: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from consumer.clock import SystemClock
    from consumer.commands.run import load_mapper
    from consumer.kafka import snapshot
    from consumer.target.client import TargetClient

    try:
        mapper = load_mapper(settings, SystemClock())  # records become updates as in `run`
    except MappingSpecError as exc:
        print(f"profile-sync verify: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except FatalError as exc:
        print(f"profile-sync verify: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    consumer_conf = settings.consumer_config()
    group_id = consumer_conf.get("group.id", "")
    kafka_conf = {
        k: v
        for k, v in consumer_conf.items()
        if not k.startswith("group.") and k != "partition.assignment.strategy"
    }
    fold = Fold((lambda key: key in wanted) if wanted is not None else (lambda _key: True))
    unreadable = 0
    try:
        for tp, offset, value, timestamp in snapshot.read(
            kafka_conf, settings.topics, args.recent, args.timeout
        ):
            try:
                update = mapper.map(tp, offset, value, timestamp)
            except PoisonError:
                unreadable += 1
                continue
            if isinstance(update, ProfileUpdate):
                fold.add(update)
        profiles = fold.profiles
        if wanted is None:
            chosen = sorted(profiles, key=lambda k: (k[0].value, k[1]))
            chosen = random.Random(args.seed).sample(chosen, min(args.sample, len(chosen)))
        else:
            chosen = sorted(wanted, key=lambda k: (k[0].value, k[1]))
        tps = {n.tp for key in chosen for n in profiles.get(key, {}).values()}
        committed = snapshot.committed(kafka_conf, group_id, tps) if group_id else {}
    except FatalError as exc:
        print(f"profile-sync verify: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE

    def settled(newest: Newest) -> bool:
        return committed.get(newest.tp, -1) > newest.offset

    client = TargetClient(settings, metrics=None, pool_size=1)
    interval = 1.0 / settings.audit_reads_per_second
    differences: list[Difference] = []
    no_events = 0
    try:
        for key in chosen:
            expected = profiles.get(key)
            if not expected:
                no_events += 1
                continue
            started = time.monotonic()
            held = audit.held_values(client.fetch_profile(*key))
            differences += compare(key, expected, held, settled)
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
    except (TargetError, ValueError) as exc:
        print(f"profile-sync verify: reading Target failed: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    finally:
        client.close()
    return _report(differences, len(chosen), no_events, unreadable, args.format)


def _report(
    differences: list[Difference], profiles: int, no_events: int, unreadable: int, fmt: str
) -> int:
    counts = {s.value: 0 for s in Status}
    for d in differences:
        counts[d.status.value] += 1
    bad = [d for d in differences if d.status is not Status.MATCH]
    failed = counts[Status.LOST.value] + counts[Status.NOT_FOUND.value] > 0
    summary = {
        "profiles": profiles,
        "profiles_without_events": no_events,
        "records_unreadable": unreadable,
        "attributes": counts,
        "profiles_lost": sorted(
            {d.profile_id for d in bad if d.status in (Status.LOST, Status.NOT_FOUND)}
        ),
    }
    if fmt == "json":
        for d in bad:
            line = {
                "id_type": d.id_type.value,
                "id": d.profile_id,
                "attribute": d.attribute,
                "status": d.status.value,
                "kafka": d.expected,
                "target": d.held,
            }
            print(json.dumps(line, ensure_ascii=False))
        print(json.dumps({"summary": summary}, ensure_ascii=False))
    else:
        for d in bad:
            held = "(none)" if d.held is None else repr(d.held)
            print(f"{d.status.value:<10} {d.id_type.value}:{d.profile_id}  {d.attribute}: "
                  f"kafka={d.expected!r} target={held}")  # fmt: skip
        print(
            f"profiles {profiles} (without events: {no_events}); attributes: "
            + ", ".join(f"{k} {v}" for k, v in counts.items())
            + (f"; unreadable records {unreadable}" if unreadable else "")
        )
    return EXIT_LOST if failed else EXIT_OK
