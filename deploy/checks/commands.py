"""Container command lines parse with the real ``profile-sync`` CLI."""

from __future__ import annotations

import contextlib
import io
import shlex

from deploy.checks import Problems


def check_cli_args(args: list[str], where: str, problems: Problems) -> None:
    """The container's arguments must parse with the real ``profile-sync`` parser."""
    from consumer import cli

    if not args:
        problems.add(where, "no command: the image's default is `run`; say so explicitly")
        return
    chosen = args[0]
    if chosen not in cli.COMMANDS:
        problems.add(where, f"unknown profile-sync command {chosen!r}")
        return
    try:
        parser = cli.build_parser(chosen)
    except ImportError as exc:
        # The subcommand's module is not in this tree (yet): its options cannot be checked.
        problems.warn(where, f"cannot check `{chosen}` options: {exc}")
        return
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            parser.parse_args(args)
        except SystemExit as exc:
            if exc.code:
                msg = err.getvalue().strip().splitlines()
                problems.add(where, f"`profile-sync {shlex.join(args)}` does not parse: {msg[-1:]}")
