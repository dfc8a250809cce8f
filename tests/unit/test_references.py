"""Every reference in a comment or a doc resolves inside the repository.

Code comments cite the numbered guarantees of docs/guarantees.md ("guarantee 2 in
docs/guarantees.md"); docs and comments name other files of the repository by path. A
renumbered guarantee or a moved file must not leave a reference pointing nowhere.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GUARANTEES = (ROOT / "docs" / "guarantees.md").read_text(encoding="utf-8")


def _tracked(*suffixes: str) -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [ROOT / f for f in out if f.endswith(suffixes) and (ROOT / f).is_file()]


def _numbered_guarantees() -> set[int]:
    return {int(n) for n in re.findall(r"^## (\d+)\. ", GUARANTEES, flags=re.M)}


def test_guarantees_are_numbered_from_one_without_gaps() -> None:
    numbers = _numbered_guarantees()
    assert numbers and numbers == set(range(1, max(numbers) + 1)), sorted(numbers)


def test_every_cited_guarantee_exists() -> None:
    numbers = _numbered_guarantees()
    cite = re.compile(r"\bguarantees? ((?:\d+(?:, | and | or )?)+)", flags=re.I)
    bad = []
    for path in _tracked(".py", ".md", ".yml", ".yaml"):
        text = path.read_text(encoding="utf-8", errors="replace")
        for match in cite.finditer(text):
            for n in re.findall(r"\d+", match.group(1)):
                if int(n) not in numbers:
                    bad.append(f"{path.relative_to(ROOT)}: guarantee {n}")
    assert not bad, bad


def test_no_reference_to_a_rule_numbering_outside_the_repository() -> None:
    stray = []
    for path in _tracked(".py"):
        text = path.read_text(encoding="utf-8", errors="replace")
        for match in re.finditer(r"\brules? \d+\b", text, flags=re.I):
            stray.append(f"{path.relative_to(ROOT)}: {match.group(0)}")
    assert not stray, stray


# Names that look like repository paths but are not: the form kubectl gives a Deployment,
# and where the wheel places schemas/ inside the installed package.
NOT_PATHS = {"deploy/target-profile-sync", "consumer/schemas"}


def test_every_repository_path_named_in_docs_and_comments_exists() -> None:
    named = re.compile(
        r"(?<![\w./-])((?:docs|schemas|deploy|consumer|emulator|sampler|bench|tests)/"
        r"[\w./-]*\w)"
    )
    missing = []
    for path in _tracked(".py", ".md"):
        text = path.read_text(encoding="utf-8", errors="replace")
        for match in named.finditer(text):
            ref = match.group(1)
            if ref in NOT_PATHS or any(ch in ref for ch in "*{}<>"):
                continue
            if not (ROOT / ref).exists():
                missing.append(f"{path.relative_to(ROOT)}: {ref}")
    assert not missing, missing
