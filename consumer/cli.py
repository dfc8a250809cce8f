"""The ``profile-sync`` command and its subcommands.

Each subcommand lives in its own module, which exposes two functions:

- ``configure_parser(parser: argparse.ArgumentParser) -> None`` adds its options;
- ``run(args: argparse.Namespace) -> int`` does the work and returns the exit code.

Only the module of the chosen subcommand is imported, so ``profile-sync --help`` stays
fast and one subcommand's heavy imports (Kafka, HTTP) never slow down another.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Protocol, cast

from consumer import __version__

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("consumer.commands.run", "consume profile-change events and sync them to Adobe Target"),
    "check-config": (
        "consumer.commands.check_config",
        "print the effective configuration (secrets redacted) and validate it",
    ),
    "produce-sample": (
        "sampler.cli",
        "produce realistic POS/CRM profile-change events to Kafka",
    ),
    "emulator": ("emulator.server", "serve the Adobe Target profile API emulator"),
    "profile": ("consumer.commands.profile", "read a profile back from Target (debugging)"),
    "probe": (
        "consumer.commands.probe",
        "find out how the tenant decodes batch cells (writes one probe profile)",
    ),
    "mapping": ("consumer.commands.mapping", "check a mapping file, or preview what it produces"),
    "compiled": (
        "consumer.commands.compiled",
        "build, show or remove the compiled hot path (mypyc)",
    ),
    "dlq": ("consumer.commands.dlq", "replay dead letters to their source topics"),
    "verify": ("consumer.commands.verify", "compare what Target holds with what Kafka says"),
}


class _Command(Protocol):
    def configure_parser(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def _load(name: str) -> _Command:
    return cast(_Command, importlib.import_module(COMMANDS[name][0]))


def build_parser(chosen: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="profile-sync",
        description="Sync offline (POS/CRM) profile data from Kafka into Adobe Target.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_text) in COMMANDS.items():
        child = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            _load(name).configure_parser(child)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in args_list if a in COMMANDS), None)
    args = build_parser(chosen).parse_args(args_list)
    return _load(args.command).run(args)


if __name__ == "__main__":
    raise SystemExit(main())
