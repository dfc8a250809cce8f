"""The hot path compiled to C with mypyc, and the guard that keeps a stale build unused.

The modules in ``MODULES`` (the loop, intake, batcher, buffer, carry-forward, ledger,
outcomes and the contract reader: every step an event takes) are plain typed Python. Built
with mypyc, each also exists as a C extension beside its source, which the interpreter
imports in preference to the ``.py``; the service then handles about 1.6 times as many
events per CPU-second (bench/bench_ceiling.py, docs/performance.md). Without a build, or
with ``PROFILE_SYNC_COMPILED=off``, the same modules run interpreted with the same
behaviour.

    profile-sync compiled build     # C extensions beside the sources, and a manifest
    profile-sync compiled status    # compiled, or interpreted and why
    profile-sync compiled clean     # remove them

(consumer/commands/compiled.py; `make install` builds it).

A build records the SHA-256 of every source it compiled (``MANIFEST``). The modules of one
build call one another directly in C, so one changed source makes the whole build stale:
``guard`` (run by ``import consumer``, before any of these modules loads) then imports all
of them from source and ``STATE`` says why. An edited checkout never runs old compiled
code. ``PROFILE_SYNC_COMPILED`` is ``auto`` (the default: compiled when the build is
current), ``off`` (always interpreted) or ``require`` (``profile-sync run`` refuses to
start when the build is missing or stale).
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

ENV = "PROFILE_SYNC_COMPILED"
CHOICES = ("auto", "off", "require")
# The package's parent: the repository in a checkout, site-packages when installed.
ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "consumer" / "_compiled.json"
# One shared library holds the C runtime and every module's code; each module's own
# extension is a small shim that loads it.
GROUP = "profile_sync"

MODULES = (
    "consumer.core.audit",
    "consumer.core.auditing",
    "consumer.core.batcher",
    "consumer.core.budget",
    "consumer.core.buffer",
    "consumer.core.carry",
    "consumer.core.completion",
    "consumer.core.decode",
    "consumer.core.forward",
    "consumer.core.gauges",
    "consumer.core.handover",
    "consumer.core.held",
    "consumer.core.intake",
    "consumer.core.internal_format",
    "consumer.core.ledger",
    "consumer.core.loop",
    "consumer.core.model",
    "consumer.core.newest",
    "consumer.core.outcomes",
    "consumer.core.owner_memory",
    "consumer.core.ownership",
    "consumer.core.placement",
    "consumer.core.rebalance",
    "consumer.core.seams",
    "consumer.core.settling",
    "consumer.core.stuck_letters",
    "consumer.core.summary",
    "consumer.core.uploads",
    "consumer.core.validate",
    "consumer.kafka.source",
    "consumer.mapping.contract_reader",
    "consumer.mapping.records",
)


class State:
    """What this process runs: ``compiled`` is True when the C extensions are in use."""

    compiled: bool = False
    reason: str = "not checked"

    @classmethod
    def describe(cls) -> str:
        return (
            f"compiled ({len(MODULES)} modules)" if cls.compiled else f"interpreted: {cls.reason}"
        )


STATE = State


def source(module: str, root: Path = ROOT) -> Path:
    return root.joinpath(*module.split(".")).with_suffix(".py")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def extension_suffix() -> str:
    return importlib.machinery.EXTENSION_SUFFIXES[0]


def check(root: Path = ROOT) -> str:
    """Why the build under ``root`` cannot be used, or "" when it can."""
    manifest = root / "consumer" / "_compiled.json"
    try:
        recorded = json.loads(manifest.read_text())
    except FileNotFoundError:
        return "not built (profile-sync compiled build)"
    except (OSError, ValueError) as exc:
        return f"unreadable build manifest {manifest.name}: {exc}"
    if recorded.get("python") != extension_suffix():
        return f"built for {recorded.get('python')}, this interpreter loads {extension_suffix()}"
    sources = recorded.get("sources", {})
    if sorted(sources) != sorted(MODULES):
        return "built for another list of modules; rebuild"
    for module in MODULES:
        path = source(module, root)
        if not path.with_suffix(extension_suffix()).exists():
            return f"{path.name}: its extension is missing; rebuild"
        try:
            if digest(path) != sources[module]:
                return f"{path.relative_to(root)} changed since the build; rebuild"
        except OSError as exc:
            return f"{path.name}: {exc.strerror}"
    return ""


class _FromSource(importlib.abc.MetaPathFinder):
    """Imports the listed modules from their ``.py``, past the extension beside it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MODULES:
            return None
        return importlib.util.spec_from_file_location(fullname, source(fullname, self.root))


def guard(environ: dict[str, str] | os._Environ[str] = os.environ) -> None:
    """Decide once, before any of ``MODULES`` is imported, how they are loaded."""
    if any(m in sys.modules for m in MODULES):
        return  # decided already (or imported before: nothing to change now)
    choice = environ.get(ENV, "auto").strip().lower() or "auto"
    problem = "" if choice == "off" else check()
    if choice == "off":
        problem = f"{ENV}=off"
    State.compiled, State.reason = not problem, problem
    if problem and not any(isinstance(f, _FromSource) for f in sys.meta_path):
        sys.meta_path.insert(0, _FromSource(ROOT))
