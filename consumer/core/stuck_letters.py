"""The original events of a batch given up as stuck, for its ``batch_stuck`` dead letters.

A stuck batch is given up long after its offsets were committed (at acceptance), so the
offset ledger no longer knows which source records went into it. ``BatchSources`` keeps
each accepted batch's source offset ranges until the batch completes or is given up,
bounded by a number of ranges (``MAX_KEPT_RANGES``; past it the oldest batches' ranges
are dropped and counted). When a batch is given up, its records are read back
(consumer/kafka/reread.py) and ``stuck_letters`` turns those that belong to the rows still
owned by the batch (the profiles no later batch sent again) into dead letters holding the
records as published: key, value bytes and headers, so ``profile-sync dlq replay --reason
batch_stuck`` re-publishes them to their source topic.

What the events do not give back is dead-lettered as a JSON row, so nothing is lost:
attributes a row carried forward from an earlier batch (no event of this batch set them),
and every row of a batch whose records cannot be read back (ranges dropped for the bound,
records past the topic's retention, or not read within the re-read time budget). Such
letters carry the header ``profile-sync.original=unavailable`` and say why.

In the repartition mode a batch's records are the repartition topic's; each names the
source record it came from, which is read back too (``source_records``, also used for a
rejected batch's letters), so the letters are the events as the producer published them.

Pure logic apart from the ``Rereader`` seam it is handed; runs on the loop's thread.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Iterable

from consumer.core import internal_format
from consumer.core.model import BatchFile, DeadLetter, IdType, ProfileUpdate, TopicPartition
from consumer.core.seams import OriginalEvent
from consumer.errors import PoisonError
from consumer.mapping import RecordMapper, Skip
from consumer.target.wire import decode_batch

Ranges = dict[TopicPartition, list[tuple[int, int]]]
Decode = Callable[[OriginalEvent], ProfileUpdate | None]
Read = Callable[[Ranges], list[OriginalEvent] | None]

# (first, last) ranges kept over all open batches: a batch's records are mostly one run per
# partition, so this covers thousands of open batches in a few MB.
MAX_KEPT_RANGES = 50_000

UNAVAILABLE = ("original", "unavailable")


class BatchSources:
    """Source offset ranges of accepted batches not yet complete, bounded."""

    def __init__(self, max_ranges: int = MAX_KEPT_RANGES) -> None:
        self.max_ranges = max_ranges
        self._ranges: OrderedDict[int, Ranges] = OrderedDict()
        self._count = 0
        self.dropped = 0  # batches whose ranges were dropped for the bound

    def __len__(self) -> int:
        return self._count

    def keep(self, batch_id: int, ranges: Ranges) -> None:
        count = sum(len(spans) for spans in ranges.values())
        if not count:
            return
        self._ranges[batch_id] = ranges
        self._count += count
        while self._count > self.max_ranges and self._ranges:
            _, dropped = self._ranges.popitem(last=False)
            self._count -= sum(len(spans) for spans in dropped.values())
            self.dropped += 1

    def pop(self, batch_id: int) -> Ranges | None:
        ranges = self._ranges.pop(batch_id, None)
        if ranges is not None:
            self._count -= sum(len(spans) for spans in ranges.values())
        return ranges


def decoder(mapper: RecordMapper, owned_topic: Callable[[], str]) -> Decode:
    """What a source record became (None: nothing, or poison), as the intake read it."""

    def decode(event: OriginalEvent) -> ProfileUpdate | None:
        update: ProfileUpdate | Skip
        try:
            if event.tp.topic == owned_topic():
                update = internal_format.decode(event.value)
            else:
                update = mapper.map(event.tp, event.offset, event.value, None)
        except (PoisonError, ValueError):
            return None
        return update if isinstance(update, ProfileUpdate) else None

    return decode


def stuck_letters(
    batch: BatchFile,
    events: list[OriginalEvent] | None,
    decode: Decode,
    error: str,
    why: str,
    read: Read | None = None,
) -> list[DeadLetter]:
    """Dead letters for the rows of ``batch`` (its still-owned rows): the events of those
    profiles as published, and JSON rows for what the events do not hold. ``events`` None:
    they could not be read back (``why`` says why); every row is then a JSON row.

    In the repartition mode ``events`` are the repartition topic's records; each names its
    source record, which ``read`` fetches from the source topic (a second hop), so the
    letters are the events as the producer published them there too."""
    id_type, decoded = decode_batch(batch.body)
    rows = dict(decoded)
    extra = (("batch.id", str(batch.batch_id)),)
    if events is None:
        return row_letters(
            id_type, rows.items(), "batch_stuck", f"{error}; {why}", (*extra, UNAVAILABLE)
        )
    owned = []
    for event in events:
        update = decode(event)
        if update is None or update.id_type is not id_type or update.profile_id not in rows:
            continue  # not a row this batch still owns (a later batch sent it again)
        owned.append((event, update))
    hops = {(u.tp, u.offset) for e, u in owned if (u.tp, u.offset) != (e.tp, e.offset)}
    sources: dict[tuple[TopicPartition, int], OriginalEvent] = {}
    if hops and read is not None:
        sources = {(o.tp, o.offset): o for o in read(_runs(hops)) or ()}
    letters = []
    covered: dict[str, set[str]] = {}
    for record, update in owned:
        if (update.tp, update.offset) != (record.tp, record.offset):
            found = sources.get((update.tp, update.offset))
            if found is None:
                continue  # the source record is gone: its attributes go as a JSON row
            record = found
        covered.setdefault(update.profile_id, set()).update(update.attributes)
        letters.append(event_letter(record, "batch_stuck", "BatchStuck", error, extra))
    rest = []
    for profile_id, attributes in rows.items():
        seen = covered.get(profile_id, set())
        missing = {n: v for n, v in attributes.items() if n not in seen}
        if missing:
            rest.append((profile_id, missing))
    note = (
        f"{error}; in none of the events read back (carried forward from an earlier batch,"
        " or its source record is past retention)"
    )
    return letters + row_letters(id_type, rest, "batch_stuck", note, (*extra, UNAVAILABLE))


def event_letter(
    event: OriginalEvent,
    reason: str,
    error_class: str,
    message: str,
    extra: tuple[tuple[str, str], ...],
) -> DeadLetter:
    """A dead letter holding ``event`` as published (key, value, headers): replayable."""
    return DeadLetter(
        key=event.key,
        value=event.value,
        reason=reason,
        stage="target",
        error_class=error_class,
        message=message,
        tp=event.tp,
        offset=event.offset,
        extra_headers=extra,
        original_headers=event.headers,
    )


def row_letters(
    id_type: IdType,
    rows: Iterable[tuple[str, dict[str, str]]],
    reason: str,
    error: str,
    extra_headers: tuple[tuple[str, str], ...],
) -> list[DeadLetter]:
    """One JSON dead letter per profile row (not an event: ``dlq replay`` skips them)."""
    letters = []
    for profile_id, attributes in rows:
        value = json.dumps(
            {"id_type": id_type.value, "id": profile_id, "attributes": attributes},
            ensure_ascii=False,
        ).encode("utf-8")
        letters.append(
            DeadLetter(
                key=profile_id.encode("utf-8"),
                value=value,
                reason=reason,
                stage="target",
                error_class="PermanentError" if reason == "batch_rejected" else "BatchStuck",
                message=error,
                extra_headers=extra_headers,
            )
        )
    return letters


def source_records(
    events: list[OriginalEvent], decode: Decode, read: Read
) -> list[OriginalEvent] | None:
    """``events`` with each repartition record replaced by the source record it names (read
    back from the source topic); None if one of those cannot be read back."""
    named = []
    for event in events:
        update = decode(event)
        hop = update is not None and (update.tp, update.offset) != (event.tp, event.offset)
        named.append((update.tp, update.offset) if hop and update is not None else None)
    hops = {c for c in named if c is not None}
    if not hops:
        return events
    found = {(o.tp, o.offset): o for o in read(_runs(hops)) or ()}
    if not hops <= found.keys():
        return None
    return [found[c] if c is not None else e for e, c in zip(events, named, strict=True)]


def _runs(coordinates: set[tuple[TopicPartition, int]]) -> Ranges:
    """Offsets as (first, last) runs per partition, for ``Rereader.read``."""
    out: Ranges = {}
    for tp, offset in sorted(coordinates, key=lambda c: (c[0].topic, c[0].partition, c[1])):
        spans = out.setdefault(tp, [])
        if spans and spans[-1][1] == offset - 1:
            spans[-1] = (spans[-1][0], offset)
        else:
            spans.append((offset, offset))
    return out
