"""The sample stream of ``profile-sync produce-sample``, as plain values: no Kafka, no I/O.

- ``generate_events`` yields ProfileChange dicts (the fields of
  ``schemas/profile_change.avsc``) from a seed; the same seed gives the same events;
- ``route`` picks the topic and the key (the profile id) of one event;
- ``expected_profiles`` folds a ``--dump`` file into the state Target should end up with, by
  the rules of the event contract (schemas/README.md): use it to check what Target holds
  after a run against what was produced.

The data is what real retail systems send, not what is convenient: Unicode names, notes
with commas, ``&``, ``%``, ``+``, quotes, line breaks and emoji, null values ("no change"),
a few third-party ids that are base64 hashes in the URL-safe alphabet (``-`` and ``_``:
Target refuses ``+`` and ``/`` in a thirdPartyId, in bulk and single updates alike, so a
CRM feeding Target uses that alphabet), Target tntids as pcIds, POS tills that upload
minutes late, and ``occurred_at`` strictly increasing per profile, so the newest value of an
attribute is also its last one.
"""

from __future__ import annotations

import base64
import json
import math
import random
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

# Share of third-party ids that are URL-safe base64 hashes (with '-' or '_'): rare, but real
# CRMs have them; the alphabet's '+' and '/' would be refused by Target, so never those.
SPECIAL_ID_SHARE = 0.005
# Urgent moments are mostly CRM ones (loyalty card swiped, call-centre contact).
URGENT_CRM_PART = 0.9
# Share of attribute values that are null (no change) and, for strings, empty.
NULL_SHARE = 0.04
EMPTY_SHARE = 0.01
# Share of CRM events whose attribute names carry the 'profile.' prefix (it is stripped).
PREFIXED_NAME_SHARE = 0.01
# POS tills upload in batches: an event may reach Kafka up to this long after it happened.
POS_UPLOAD_LAG_MS = 180_000
# Mean business time between two events of the whole stream.
MEAN_GAP_MS = 40.0

FIRST_NAMES = (
    "José", "Zoë", "Łukasz", "山田", "Ólafur", "Siobhán", "François", "Søren", "Björk",
    "Nguyễn", "Αλέξανδρος", "Мария", "Chloé", "Anne-Marie", "O'Brien", "Jürgen", "Ana Lucía",
    "María José", "Dvořák", "Ewa", "Mohammed", "Priya", "Kwame", "Sakura", "Liam", "Emma",
)  # fmt: skip
CITIES = (
    "São Paulo", "Zürich", "Kraków", "Reykjavík", "東京", "München", "Łódź", "Paris",
    "New York, NY", "Dún Laoghaire", "Malmö", "Córdoba", "Москва", "Seattle", "Leeds",
)  # fmt: skip
LANGUAGES = ("en-US", "en-GB", "fr-FR", "de-DE", "es-ES", "pl-PL", "ja-JP", "is-IS", "pt-BR")
SEGMENTS = ("vip", "lapsed", "new-customer", "high-value", "bargain hunter", "family & kids")
TIERS = ("bronze", "silver", "gold", "platinum")
CATEGORIES = (
    "Grocery", "Electronics", "Home & Garden", "Health & Beauty", "Toys, Games & Hobbies",
    "Wine & Spirits", "Baby", "Women's Fashion", "Men's Shoes", "Books/Media",
)  # fmt: skip
NOTES = (
    "Called about order #{n}, asked for a refund & store credit",
    'Prefers "express" delivery; 10% off next visit + free gift 🎁',
    "Complaint resolved\nfollow-up in 2 weeks 👍",
    "Moved: Hauptstraße 5, 80331 München",
    "Discount code SAVE%20NOW (literal text, not an escape)",
    "asked: a=b&c=d?",
    "100% satisfied 😀\r\nwill come back",
    "Allergic to nuts, gluten; prefers email, not SMS",
    "VIP 💎 since 2019 — handle with care",
    "tab\tseparated\tnotes from the old CRM",
    "50% + 20% stacking question, escalated to manager",
)
CRM_ATTRIBUTES = (
    "loyaltyTier", "loyaltyPoints", "emailOptIn", "firstName", "city", "preferredLanguage",
    "segment", "note",
)  # fmt: skip
STORES = 250


@dataclass(slots=True)
class _Profile:
    id_type: str
    id: str
    home_store: str
    purchases: int = 0
    points: int = 0
    last_ms: int = -1


@dataclass(slots=True)
class _Generator:
    rng: random.Random
    profiles: int
    pcid_share: float
    pool: dict[int, _Profile] = field(default_factory=dict)
    used_ids: set[str] = field(default_factory=set)

    def profile(self, index: int) -> _Profile:
        found = self.pool.get(index)
        if found is None:
            found = self.pool[index] = self._new_profile(index)
        return found

    def _new_profile(self, index: int) -> _Profile:
        rng = self.rng
        home = f"store-{rng.randrange(1, STORES + 1):04d}"
        while True:
            if rng.random() < self.pcid_share:
                id_type, pid = "PC_ID", f"{rng.getrandbits(128):032x}.{rng.randrange(100):02d}_0"
            elif rng.random() < SPECIAL_ID_SHARE:
                id_type, pid = "THIRD_PARTY_ID", _hashed_id(rng)
            elif rng.random() < 0.3:
                id_type, pid = "THIRD_PARTY_ID", f"6280{index:09d}"  # loyalty card number
            else:
                id_type, pid = "THIRD_PARTY_ID", f"crm-{index:06d}"
            if pid not in self.used_ids:
                self.used_ids.add(pid)
                return _Profile(id_type, pid, home)


def _hashed_id(rng: random.Random) -> str:
    """A URL-safe base64 hash as some CRMs use for ids: always with a '-' or '_' (where the
    standard alphabet has the '+' and '/' Target refuses in a thirdPartyId)."""
    while True:
        text = base64.urlsafe_b64encode(rng.randbytes(18)).decode("ascii")
        if "-" in text or "_" in text:
            return text


def _urgent_odds(urgent_share: float, pos_share: float) -> tuple[float, float]:
    """P(urgent | POS), P(urgent | CRM) so that the overall share is ``urgent_share``."""
    crm_share = 1.0 - pos_share
    crm = min(1.0, URGENT_CRM_PART * urgent_share / crm_share) if crm_share > 0 else 0.0
    rest = max(0.0, urgent_share - crm * crm_share)
    pos = min(1.0, rest / pos_share) if pos_share > 0 else 0.0
    return pos, crm


def _maybe_null(rng: random.Random, value: Any) -> Any:
    roll = rng.random()
    if roll < NULL_SHARE:
        return None
    if isinstance(value, str) and roll < NULL_SHARE + EMPTY_SHARE:
        return ""
    return value


def _pos_attributes(rng: random.Random, p: _Profile, at_ms: int) -> dict[str, Any]:
    p.purchases += 1
    store = p.home_store if rng.random() < 0.7 else f"store-{rng.randrange(1, STORES + 1):04d}"
    amount = round(rng.lognormvariate(3.3, 0.9), 2)
    if rng.random() < 0.03:
        amount = -amount  # a refund at the till
    attrs: dict[str, Any] = {
        "lastStoreId": store,
        "lastPurchaseAmount": amount,
        "lastPurchaseAt": at_ms,
        "purchaseCount": p.purchases,
    }
    if rng.random() < 0.8:
        attrs["lastPurchaseCategory"] = _maybe_null(rng, rng.choice(CATEGORIES))
    if rng.random() < 0.6:
        attrs["basketSize"] = rng.randint(1, 40)
    if rng.random() < 0.1:
        attrs["preferredStore"] = None if rng.random() < 0.3 else p.home_store
    return attrs


def _crm_value(rng: random.Random, p: _Profile, name: str, n: int) -> Any:
    if name == "loyaltyTier":
        return rng.choice(TIERS)
    if name == "loyaltyPoints":
        p.points = max(0, p.points + rng.randint(-500, 2_500))
        return p.points
    if name == "emailOptIn":
        return rng.random() < 0.7
    if name == "firstName":
        return rng.choice(FIRST_NAMES)
    if name == "city":
        return rng.choice(CITIES)
    if name == "preferredLanguage":
        return rng.choice(LANGUAGES)
    if name == "segment":
        return rng.choice(SEGMENTS)
    return rng.choice(NOTES).format(n=n)


def _crm_attributes(rng: random.Random, p: _Profile, urgent: bool, n: int) -> dict[str, Any]:
    if urgent and rng.random() < 0.5:
        names = ["loyaltyPoints", "loyaltyTier"]  # loyalty card swiped in store
    elif urgent:
        names = ["note", rng.choice(("emailOptIn", "preferredLanguage"))]  # call-centre contact
    else:
        names = rng.sample(CRM_ATTRIBUTES, rng.randint(1, 4))
    attrs: dict[str, Any] = {}
    for name in names:
        key = f"profile.{name}" if rng.random() < PREFIXED_NAME_SHARE else name
        attrs[key] = _maybe_null(rng, _crm_value(rng, p, name, n))
    return attrs


def generate_events(
    n: int,
    profiles: int,
    urgent_share: float,
    pcid_share: float,
    pos_share: float,
    seed: int,
    start_ms: int,
) -> Iterator[dict[str, Any]]:
    """``n`` ProfileChange dicts over a pool of ``profiles`` profiles; same seed, same events.

    Busy profiles get more events (a skewed pick). ``occurred_at`` starts near ``start_ms``,
    advances with the stream and strictly increases per profile in yield order.
    """
    if n < 0 or profiles < 1:
        raise ValueError("n must be >= 0 and profiles >= 1")
    for name, share in (("urgent", urgent_share), ("pcid", pcid_share), ("pos", pos_share)):
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"{name}_share must be within [0, 1]")
    rng = random.Random(seed)
    gen = _Generator(rng, profiles, pcid_share)
    urgent_pos, urgent_crm = _urgent_odds(urgent_share, pos_share)
    clock = float(start_ms)
    for i in range(n):
        clock += rng.expovariate(1.0 / MEAN_GAP_MS)
        p = gen.profile(min(profiles - 1, int(profiles * rng.random() ** 1.5)))
        pos = rng.random() < pos_share
        urgent = rng.random() < (urgent_pos if pos else urgent_crm)
        lag = rng.randrange(POS_UPLOAD_LAG_MS) if pos else rng.randrange(2_000)
        at_ms = max(int(clock) - lag, p.last_ms + 1, 0)
        p.last_ms = at_ms
        yield {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "source": "POS" if pos else "CRM",
            "occurred_at": at_ms,
            "profile": {"id_type": p.id_type, "id": p.id},
            "priority": "URGENT" if urgent else "NORMAL",
            "attributes": (
                _pos_attributes(rng, p, at_ms) if pos else _crm_attributes(rng, p, urgent, i)
            ),
        }


def route(event: dict[str, Any], topic_pos: str, topic_crm: str) -> tuple[str, str, dict[str, Any]]:
    """(topic, key, event): POS events to the POS topic, the rest to CRM; key = profile id."""
    topic = topic_pos if event["source"] == "POS" else topic_crm
    return topic, event["profile"]["id"], event


def target_string(value: object) -> str | None:
    """The Target string of an attribute value (schemas/README.md); None = no change."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} has no Target string")
        return repr(value)
    return str(value)


def expected_profiles(lines: Iterable[str]) -> dict[tuple[str, str], dict[str, str]]:
    """Fold ``--dump`` lines into {(id_type, id): {attribute: Target string}}.

    For checking a run end to end: after ``produce-sample --dump events.jsonl`` and the
    service has drained the topics, every profile here should read back from Target with
    these values (``profile-sync profile get``). ``id_type`` is the event's
    (``THIRD_PARTY_ID`` or ``PC_ID``), ``lines`` are the dump's, in file order; blank lines
    are skipped.

    Applies the contract: the newest ``occurred_at`` wins per attribute (on a tie, the later
    line), null and "" change nothing, a ``profile.`` prefix is stripped. Profiles with
    nothing to set are absent. Raises ValueError for a NaN or infinite double, which the
    service dead-letters instead of sending (the generator never writes one).
    """
    newest: dict[tuple[str, str], dict[str, tuple[int, str]]] = {}
    for line in lines:
        if not line.strip():
            continue
        event = json.loads(line)["event"]
        key = (event["profile"]["id_type"], event["profile"]["id"])
        at = event["occurred_at"]
        row = newest.setdefault(key, {})
        for name, value in event["attributes"].items():
            text = target_string(value)
            if text is None:
                continue
            name = name.removeprefix("profile.")
            if name not in row or row[name][0] <= at:
                row[name] = (at, text)
    return {k: {n: v for n, (_, v) in row.items()} for k, row in newest.items() if row}
