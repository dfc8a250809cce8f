"""``profile-sync check-config``: print the effective configuration, secrets redacted.

Exits 0 when the configuration is valid, 2 naming every bad key otherwise. The librdkafka
pass-through properties are checked by librdkafka itself (a client is created and closed
without connecting anywhere).
"""

from __future__ import annotations

import argparse
import json
import sys

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
    if args.json:
        print(json.dumps(values, indent=2, sort_keys=True))
    else:
        width = max(len(k) for k in values)
        for key, value in values.items():
            print(f"{key.ljust(width)}  {value}")
    return 0
