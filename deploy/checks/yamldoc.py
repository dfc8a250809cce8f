"""Reading rendered manifests: documents, kinds, names, paths, selectors."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from deploy.checks import Problems


def load_docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]


def name_of(doc: Mapping[str, Any]) -> str:
    return str(doc.get("metadata", {}).get("name", "?"))


def find(docs: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def selects(selector: Mapping[str, Any] | None, labels: Mapping[str, Any]) -> bool:
    match = (selector or {}).get("matchLabels") or {}
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def get(doc: Any, *path: str | int) -> Any:
    for key in path:
        if isinstance(doc, dict) and isinstance(key, str):
            doc = doc.get(key)
        elif isinstance(doc, list) and isinstance(key, int) and -len(doc) <= key < len(doc):
            doc = doc[key]
        else:
            return None
    return doc


def require(doc: Mapping[str, Any], where: str, problems: Problems, *paths: str) -> None:
    for path in paths:
        if get(doc, *path.split(".")) in (None, "", [], {}):
            problems.add(where, f"{path} is required")
