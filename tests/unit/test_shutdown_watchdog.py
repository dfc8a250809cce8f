"""The shutdown watchdog's last resort (consumer/commands/run.py): a process whose
interpreter is held by a call that never returns still exits after its shutdown timeout,
with every thread's stack on stderr, instead of waiting for the pod's SIGKILL."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# The main thread holds the interpreter in one C call (the regular-expression engine does
# not let go of it) for far longer than the 0.5 s timeout plus the last resort's 5 s: the
# Python timer never gets to run, only faulthandler's thread can end the process.
SCRIPT = textwrap.dedent(
    """
    import re
    from types import SimpleNamespace
    from consumer.clock import SystemClock
    from consumer.commands.run import _start_watchdog

    loop = SimpleNamespace(
        stop_requested_at=None, settings=SimpleNamespace(shutdown_timeout_seconds=0.5)
    )
    _start_watchdog(loop, SystemClock())
    re.match(r"(a+)+$", "a" * 40 + "b")  # 2**40 steps with the interpreter held
    print("returned")
    """
)


def test_a_shutdown_stuck_holding_the_interpreter_still_ends_with_the_stacks() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stderr
    assert "returned" not in done.stdout
    assert "most recent call first" in done.stderr  # faulthandler's dump of the stacks
    assert "re.py" in done.stderr or "match" in done.stderr
