"""ProfileChange events for consumer tests, with the values real CRM data has."""

from __future__ import annotations

import random
import uuid
from typing import Any

NASTY = [
    "José Müller",
    'Zoë, "the" & co',
    "100% + tax",
    "a+b=c&d=e",
    "line1\nline2\r\nline3",
    "山田 太郎",
    "emoji 😀🎉",
    "semi;colon, comma",
    "%ZZ not an escape",
    "trailing space ",
    "tab\there",
]


def event(
    pid: str,
    attrs: dict[str, Any],
    occurred_at: int,
    *,
    id_type: str = "THIRD_PARTY_ID",
    priority: str = "NORMAL",
    source: str = "CRM",
) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "source": source,
        "occurred_at": occurred_at,
        "profile": {"id_type": id_type, "id": pid},
        "priority": priority,
        "attributes": attrs,
    }


def random_events(
    n: int, profiles: int, seed: int, *, start_ms: int = 1_700_000_000_000, pcid_share: float = 0.2
) -> list[dict[str, Any]]:
    """``n`` events over ``profiles`` profiles; occurred_at grows with list position."""
    rng = random.Random(seed)
    names = ["loyaltyTier", "city", "note", "points", "optIn", "spend", "lastStoreId", "firstName"]
    out = []
    for i in range(n):
        p = rng.randrange(profiles)
        pcid = p < profiles * pcid_share
        pid = f"{p:032x}.{p % 100:02d}_0" if pcid else f"crm-{p:06d}"
        attrs: dict[str, Any] = {}
        for name in rng.sample(names, rng.randint(1, 4)):
            kind = rng.random()
            if name == "points":
                attrs[name] = rng.randint(-10, 10**9)
            elif name == "spend":
                attrs[name] = rng.choice([0.1, 1e-7, 12.5, 1e16, rng.random() * 1000])
            elif name == "optIn":
                attrs[name] = rng.random() < 0.5
            elif kind < 0.1:
                attrs[name] = None
            else:
                attrs[name] = rng.choice(NASTY) + f" #{i}"
        out.append(event(pid, attrs, start_ms + i, id_type="PC_ID" if pcid else "THIRD_PARTY_ID"))
    return out
