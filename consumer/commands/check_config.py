"""``profile-sync check-config``: print the effective configuration, secrets redacted.

Exits 0 when the configuration is valid, 2 naming every bad key otherwise. The librdkafka
pass-through properties are checked by librdkafka itself (a client is created and closed
without connecting anywhere).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any

from consumer import config
from consumer.errors import ConfigError


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the settings as JSON")


def _check_librdkafka(settings: config.Settings) -> None:
    import logging

    from confluent_kafka import Consumer, KafkaException

    quiet = logging.getLogger("profile_sync.check_config.librdkafka")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    conf: dict[str, object] = {**settings.consumer_config(), "logger": quiet}
    try:
        Consumer(conf).close()
    except KafkaException as exc:
        raise ConfigError(config.librdkafka_problem(exc.args[0].str())) from exc


def run(args: argparse.Namespace) -> int:
    try:
        settings = config.load()
        _check_librdkafka(settings)
    except ConfigError as exc:
        print("profile-sync: invalid configuration", file=sys.stderr)
        for key, why in sorted(exc.problems.items()):
            print(f"  {key}: {why}", file=sys.stderr)
        return 2
    for warning in config.warnings(settings):
        print(f"profile-sync: warning: {warning}", file=sys.stderr)
    values = settings.redacted()
    internal = internal_topics_report(settings)
    if args.json:
        print(json.dumps({**values, "internal_topics": internal}, indent=2, sort_keys=True))
    else:
        width = max(len(k) for k in values)
        for key, value in values.items():
            print(f"{key.ljust(width)}  {value}")
        print(f"\nmode: {internal['mode']} ({internal['why']})")
        for name, what in internal.get("topics", {}).items():
            print(f"  {name}: {what}")
    return 0


def internal_topics_report(settings: config.Settings) -> dict[str, Any]:
    """The mode ``run`` would choose and the internal topics it would create or check
    (docs/repartition.md). Computed from the settings alone: nothing is contacted."""
    from consumer.core.placement import use_repartition
    from consumer.kafka.internal_topics import names
    from consumer.mapping.startup import load_mappings

    keyed = None
    # A bad mapping file is reported by run and `mapping check`; here it counts as not keyed.
    with contextlib.suppress(ConfigError):
        keyed = load_mappings(settings).keyed_by_profile
    on, why = use_repartition(
        settings.repartition,
        settings.topics,
        mapping_file=settings.mapping_file,
        keyed_by_profile=keyed,
    )
    report: dict[str, Any] = {"mode": "repartition" if on else "direct", "why": why}
    if on:
        group = settings.consumer_config().get("group.id", "")
        rep, log = names(group, settings.repartition_topic, settings.changelog_topic)
        n = settings.repartition_partitions
        report["topics"] = {
            rep: f"{n} partitions, cleanup.policy=delete, "
            f"retention.ms={settings.repartition_retention_ms}",
            log: f"{n} partitions, cleanup.policy=compact",
        }
    return report
