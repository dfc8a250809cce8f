"""The repartition mode's handover at shutdown (docs/repartition.md, guarantee 10 in
docs/guarantees.md).

In the repartition mode a consumed source record is settled once its update is in the
repartition topic; it reaches Target only when the owner of that repartition partition
consumes it. A process that stops (SIGTERM, ``--exit-when-idle``) therefore first hands
over what it forwarded to itself:

1. stop fetching the source partitions (the owned ones keep flowing);
2. flush the forward producer, so every forwarded update is acknowledged, and commit the
   source offsets behind them;
3. note the end offsets of the owned repartition partitions, and turn the loop until
   everything up to them is consumed (bounded by ``deadline``);

then the usual shutdown (consumer/core/rebalance.py) cuts, uploads, settles and commits
what was consumed. What the deadline cut short stays uncommitted in the repartition topic
for the next owner. A revoke needs no handover: the revoked owned partitions' unconsumed
records stay uncommitted there, and the new owner restores the changelog before reading.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from consumer.core.ownership import OwnedSource

if TYPE_CHECKING:
    from consumer.core.loop import Loop

log = logging.getLogger("profile_sync.pipeline")


def hand_over(loop: Loop, owned: OwnedSource, deadline: float) -> bool:
    """Steps 1-3 above; True when the owned partitions were consumed to their ends."""
    clock = loop.clock
    owned.hold_sources()
    loop.settling.flush(max(0.1, deadline - clock.monotonic()))  # forward acks settle units
    loop.settling.store(owned)
    owned.commit_sync()
    ends = owned.drain_to()
    while not owned.drained():
        if clock.monotonic() >= deadline:
            log.warning(
                "shutdown: repartition partitions not consumed to their end in time; "
                "the rest waits there for the next owner",
                extra={"fields": {"partitions": sorted(f"{t}[{p}]" for t, p in ends)}},
            )
            return False
        loop.turn()
    log.info(
        "shutdown: forwarded updates consumed",
        extra={"fields": {"partitions": len(ends)}},
    )
    return True
