"""The README's configuration and metrics tables are the contract users read: keep them whole."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from consumer.config import SETTINGS, markdown_table
from consumer.metrics import Metrics

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def _readme_configuration_table() -> str:
    section = README.split("## Configuration", 1)[1]
    start = section.index("| Variable |")
    end = section.index("\n\n", start)
    return section[start:end] + "\n"


def test_the_configuration_table_is_the_catalogue() -> None:
    # Regenerate with `python -m consumer.config` when a setting changes.
    assert _readme_configuration_table() == markdown_table()


def test_every_setting_is_documented_with_its_default() -> None:
    table = _readme_configuration_table()
    missing = []
    for setting in SETTINGS:
        row = re.search(rf"^\| `{setting.env}` \|([^|]*)\|", table, flags=re.M)
        if row is None:
            missing.append(setting.env)
            continue
        shown = row.group(1).strip().strip("`")
        assert shown == setting.default, f"{setting.env}: README says {shown!r}"
    assert not missing, f"settings missing from the README table: {missing}"


def test_no_documented_setting_is_unknown() -> None:
    known = {s.env for s in SETTINGS}
    documented = set(re.findall(r"^\| `(PROFILE_SYNC_[A-Z_]+)` \|", README, flags=re.M))
    assert documented <= known, f"README documents unknown settings: {documented - known}"


def test_every_metric_is_documented() -> None:
    registry = CollectorRegistry()
    Metrics(registry)
    exported = set()
    for family in registry.collect():
        suffix = {"counter": "_total", "info": "_info"}.get(family.type, "")
        name = family.name + suffix
        exported.add("profile_sync_build_info" if family.type == "info" else name)
    documented = set(re.findall(r"^\| `(profile_sync_[a-z_]+)` \|", README, flags=re.M))
    assert exported - documented == set(), f"undocumented metrics: {exported - documented}"
    assert documented - exported == set(), f"documented but not exported: {documented - exported}"


def _readme_layout_table() -> str:
    section = README.split("## Layout", 1)[1]
    start = section.index("| path | what |")
    end = section.index("\n\n", start)
    return section[start:end]


def _layout_paths() -> list[str]:
    """Every path the layout table names; ``a/b.py``, ``c.py`` in one cell share a folder."""
    paths = []
    for line in _readme_layout_table().splitlines()[2:]:
        cell = line.split("|")[1]
        folder = ""
        for name in re.findall(r"`([^`]+)`", cell):
            if "/" not in name and folder and name.endswith(".py"):
                name = folder + name
            elif "/" in name:
                folder = name if name.endswith("/") else name.rsplit("/", 1)[0] + "/"
            paths.append(name)
    return paths


def test_every_path_in_the_layout_table_exists() -> None:
    root = Path(__file__).resolve().parents[2]
    missing = [p for p in _layout_paths() if not (root / p).exists()]
    assert not missing, f"README layout names paths that do not exist: {missing}"


def test_every_module_of_the_service_is_in_the_layout_table() -> None:
    root = Path(__file__).resolve().parents[2]
    listed = set(_layout_paths())
    # A listed folder covers what is inside it, unless one of its modules is listed by name.
    missing = []
    for module in sorted((root / "consumer").rglob("*.py")):
        rel = module.relative_to(root).as_posix()
        if module.name in {"__init__.py", "__main__.py"} or rel in listed:
            continue
        parent = rel.rsplit("/", 1)[0] + "/"
        if parent in listed and not any(p.startswith(parent) and p != parent for p in listed):
            continue
        missing.append(rel)
    assert not missing, f"modules missing from the README layout table: {missing}"
