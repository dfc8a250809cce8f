"""Retry delays: capped exponential backoff with full jitter, honouring Retry-After."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    initial: float
    maximum: float

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number ``attempt`` (1 = first retry).

        Full jitter spreads the replicas of a consumer group so they do not hammer Target
        in step after an outage. Target's Retry-After is a floor: never retry sooner.
        """
        ceiling = min(self.maximum, self.initial * (2 ** min(attempt - 1, 30)))
        jittered = rng.uniform(0, ceiling)
        if retry_after is not None:
            return max(jittered, min(retry_after, 3600.0))
        return jittered
