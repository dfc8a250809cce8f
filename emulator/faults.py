"""Fault injection: a plan of rules, each picking some requests of one API class.

A rule (JSON object) says which requests it applies to and what it does to them:

- ``api``: ``bulk`` | ``single`` | ``status`` | ``fetch`` | ``any`` (every Target API call;
  never the ``/_emulator/`` controls).
- what it does, one or more of: ``status`` (answer this HTTP status instead of processing
  the request, with ``retry_after`` as the Retry-After header and ``body`` as the body if
  given), ``latency`` (seconds to wait before answering; alone, the request is then processed
  normally), ``drop`` (close the connection without any response, request not processed),
  ``stuck`` (bulk only: accept the batch normally, but it never completes; its status stays
  ``stuck``).
- which requests: ``count`` (the next N matching requests) and/or ``probability``
  (each matching request with this chance, drawn from ``random.Random(seed)``; ``seed``
  defaults to 0 so a plan replays identically). With neither, ``count`` is 1. With both, the
  rule fires with that probability until it has fired ``count`` times.

Rules are tried in the order they were added; the first that fires decides, and a rule that
has fired ``count`` times is removed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

API_CLASSES = ("bulk", "single", "status", "fetch", "any")
_KEYS = {"api", "status", "retry_after", "body", "latency", "drop", "stuck", "count"}
_KEYS |= {"probability", "seed"}


class PlanError(ValueError):
    """The fault plan is malformed; the message says what to fix."""


@dataclass(slots=True)
class FaultRule:
    api: str
    status: int | None = None
    retry_after: str | None = None
    body: str | None = None
    latency: float = 0.0
    drop: bool = False
    stuck: bool = False
    remaining: int | None = 1  # None: no limit (probability rules)
    probability: float = 1.0
    seed: int = 0
    fired: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def matches(self, api: str) -> bool:
        if self.api == "any":
            return api in ("bulk", "single", "status", "fetch")
        return self.api == api

    @property
    def kind(self) -> str:
        """The name counted in /_emulator/stats faults_injected."""
        if self.drop:
            return "drop"
        if self.status is not None:
            return f"status_{self.status}"
        if self.stuck:
            return "stuck"
        return "latency"

    def describe(self) -> dict[str, Any]:
        return {
            "api": self.api,
            "status": self.status,
            "retry_after": self.retry_after,
            "latency": self.latency,
            "drop": self.drop,
            "stuck": self.stuck,
            "remaining": self.remaining,
            "probability": self.probability,
            "seed": self.seed,
            "fired": self.fired,
        }


def parse_plan(plan: Any) -> tuple[list[FaultRule], bool]:
    """Read a plan: one rule, a list of rules, or ``{"faults": [...], "replace": bool}``.

    Returns the rules and whether they replace the current plan (default: appended).
    """
    replace = False
    if isinstance(plan, dict) and "faults" in plan:
        extra = set(plan) - {"faults", "replace"}
        if extra:
            raise PlanError(f"unknown plan key(s): {', '.join(sorted(extra))}")
        replace = bool(plan.get("replace", False))
        items = plan["faults"]
    elif isinstance(plan, dict):
        items = [plan]
    else:
        items = plan
    if not isinstance(items, list):
        raise PlanError("a fault plan is a rule object, a list of rules or {'faults': [...]}")
    return [_parse_rule(item, i) for i, item in enumerate(items)], replace


def _parse_rule(item: Any, index: int) -> FaultRule:
    where = f"fault {index}"
    if not isinstance(item, dict):
        raise PlanError(f"{where}: must be an object")
    unknown = set(item) - _KEYS
    if unknown:
        raise PlanError(f"{where}: unknown key(s): {', '.join(sorted(unknown))}")
    api = item.get("api", "any")
    if api not in API_CLASSES:
        raise PlanError(f"{where}: api must be one of {', '.join(API_CLASSES)}")
    status = item.get("status")
    if status is not None and (
        not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599
    ):
        raise PlanError(f"{where}: status must be an HTTP status code")
    retry_after = item.get("retry_after")
    if retry_after is not None:
        if status is None:
            raise PlanError(f"{where}: retry_after needs a status")
        if isinstance(retry_after, bool) or not isinstance(retry_after, int | float | str):
            raise PlanError(f"{where}: retry_after must be seconds or an HTTP date")
        retry_after = str(int(retry_after)) if isinstance(retry_after, int | float) else retry_after
    body = item.get("body")
    if body is not None and not isinstance(body, str):
        raise PlanError(f"{where}: body must be a string")
    latency = item.get("latency", 0.0)
    if isinstance(latency, bool) or not isinstance(latency, int | float) or latency < 0:
        raise PlanError(f"{where}: latency must be seconds >= 0")
    drop = item.get("drop", False)
    stuck = item.get("stuck", False)
    if not isinstance(drop, bool) or not isinstance(stuck, bool):
        raise PlanError(f"{where}: drop and stuck are true or false")
    if drop and status is not None:
        raise PlanError(f"{where}: drop sends no response, so it takes no status")
    if stuck and (status is not None or drop):
        raise PlanError(f"{where}: stuck accepts the batch, so it takes no status or drop")
    if stuck and api not in ("bulk", "any"):
        raise PlanError(f"{where}: stuck applies to bulk uploads only")
    if status is None and not drop and not stuck and not latency:
        raise PlanError(f"{where}: give status, latency, drop or stuck")
    count = item.get("count")
    probability = item.get("probability")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise PlanError(f"{where}: count must be an integer >= 1")
    if probability is not None and (
        isinstance(probability, bool)
        or not isinstance(probability, int | float)
        or not 0 < probability <= 1
    ):
        raise PlanError(f"{where}: probability must be in (0, 1]")
    seed = item.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise PlanError(f"{where}: seed must be an integer")
    remaining = count if count is not None else (None if probability is not None else 1)
    return FaultRule(
        api=api,
        status=status,
        retry_after=retry_after,
        body=body,
        latency=float(latency),
        drop=drop,
        stuck=stuck,
        remaining=remaining,
        probability=float(probability) if probability is not None else 1.0,
        seed=seed,
        rng=random.Random(seed),
    )


class FaultPlan:
    """The active rules. Not thread-safe: the app holds its lock around every call."""

    def __init__(self) -> None:
        self.rules: list[FaultRule] = []

    def add(self, rules: list[FaultRule], replace: bool) -> None:
        if replace:
            self.rules = []
        self.rules.extend(rules)

    def clear(self) -> None:
        self.rules = []

    def pick(self, api: str) -> FaultRule | None:
        """The rule that fires for this request, if any (and count it as fired)."""
        for rule in self.rules:
            if not rule.matches(api):
                continue
            if rule.stuck and api != "bulk":
                continue
            if rule.probability < 1.0 and rule.rng.random() >= rule.probability:
                continue
            rule.fired += 1
            if rule.remaining is not None:
                rule.remaining -= 1
                if rule.remaining <= 0:
                    self.rules.remove(rule)
            return rule
        return None
