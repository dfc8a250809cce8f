"""Direct or repartition mode (``PROFILE_SYNC_REPARTITION``, docs/repartition.md).

The direct mode is exact only when every event of a profile reaches one replica in one
partition: one source topic whose records are keyed by profile id. ``auto`` chooses the
repartition mode otherwise: more than one source topic, or a topic the mapping does not
declare keyed by profile id. The mapping says so through ``keyed_by_profile(topic)``
(consumer/mapping); when that predicate is not available, any mapping file other than the
built-in contract mapping counts as "not keyed by profile".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

KeyedByProfile = Callable[[str], bool]


def use_repartition(
    mode: str,
    topics: Sequence[str],
    *,
    mapping_file: str = "",
    keyed_by_profile: KeyedByProfile | None = None,
) -> tuple[bool, str]:
    """(repartition?, why) for ``PROFILE_SYNC_REPARTITION=mode`` and the source topics."""
    if mode == "always":
        return True, "PROFILE_SYNC_REPARTITION=always"
    if mode == "never":
        return False, "PROFILE_SYNC_REPARTITION=never"
    if len(topics) > 1:
        return True, f"{len(topics)} source topics"
    if keyed_by_profile is not None:
        unkeyed = [t for t in topics if not keyed_by_profile(t)]
        if unkeyed:
            return True, f"topic {unkeyed[0]} is not keyed by profile id"
    elif mapping_file:
        return True, "a mapping file (its topics may be keyed by something else)"
    return False, "one source topic keyed by profile id"
