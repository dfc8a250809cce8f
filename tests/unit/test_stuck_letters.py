"""A stuck batch's dead letters: its original events where they can be had, JSON rows for
the rest (consumer/core/stuck_letters.py)."""

from __future__ import annotations

import json

from consumer.core.model import BatchFile, IdType, ProfileUpdate, TopicPartition
from consumer.core.seams import OriginalEvent
from consumer.core.stuck_letters import BatchSources, source_records, stuck_letters
from consumer.target.status import FinalStatus
from consumer.target.wire import encode_batch
from tests.unit.test_loop import A, Rig, event
from tests.utils import FakeSource, make_update

TP = TopicPartition("crm", 0)
HEADERS = (("trace-id", b"t-1"),)


def _batch(rows: list[tuple[str, dict[str, str]]]) -> BatchFile:
    return BatchFile(
        batch_id=9,
        id_type=IdType.THIRD_PARTY_ID,
        body=encode_batch(IdType.THIRD_PARTY_ID, rows),
        row_count=len(rows),
        event_count=len(rows),
        trigger="resubmit",
        oldest_occurred_at=0,
        newest_occurred_at=0,
    )


def _event(offset: int) -> OriginalEvent:
    return OriginalEvent(TP, offset, f"k{offset}".encode(), f"v{offset}".encode(), HEADERS)


def test_the_events_of_still_owned_rows_become_letters_and_carried_cells_json_rows() -> None:
    # Still owned: José (tier from offset 1, city from offset 2) and crm-2, whose "points"
    # was carried forward from an earlier batch: no event of this batch holds it.
    batch = _batch([("José", {"tier": "gold", "city": "Zürich"}), ("crm-2", {"points": "7"})])
    updates: dict[int, ProfileUpdate | None] = {
        1: make_update("José", {"tier": "gold"}, tp=TP, offset=1),
        2: make_update("José", {"city": "Zürich"}, tp=TP, offset=2),
        3: make_update("crm-3", {"tier": "x"}, tp=TP, offset=3),  # sent again by a later batch
        4: None,  # a record that mapped to nothing
    }
    events = [_event(o) for o in updates]

    letters = stuck_letters(batch, events, lambda e: updates[e.offset], "batch status stuck", "")

    as_events = [x for x in letters if x.tp is not None]
    assert [(x.offset, x.key, x.value, x.original_headers) for x in as_events] == [
        (1, b"k1", b"v1", HEADERS),
        (2, b"k2", b"v2", HEADERS),
    ]
    assert all(x.reason == "batch_stuck" for x in letters)
    [row] = [x for x in letters if x.tp is None]
    assert json.loads(row.value or b"") == {
        "id_type": "thirdPartyId",
        "id": "crm-2",
        "attributes": {"points": "7"},
    }
    assert ("original", "unavailable") in row.extra_headers
    assert "carried forward" in row.message


def test_in_the_repartition_mode_the_letters_are_the_source_records_they_name() -> None:
    # The batch's records are the repartition topic's; each names its source record, read
    # back from the source topic. One source record is past retention: its attribute goes
    # as a JSON row.
    batch = _batch([("José", {"tier": "gold", "city": "Zürich"})])
    internal = TopicPartition("group.repartition", 3)
    updates = {
        7: make_update("José", {"tier": "gold"}, tp=TP, offset=41),
        8: make_update("José", {"city": "Zürich"}, tp=TP, offset=40),
    }
    hops = [
        OriginalEvent(internal, o, b"thirdPartyId:Jos\xc3\xa9", b"internal", ()) for o in updates
    ]
    asked = []

    def read(ranges: dict[TopicPartition, list[tuple[int, int]]]) -> list[OriginalEvent]:
        asked.append(ranges)
        return [_event(41)]  # offset 40 is gone

    letters = stuck_letters(batch, hops, lambda e: updates[e.offset], "stuck", "", read)

    assert asked == [{TP: [(40, 41)]}]
    [source, row] = letters
    assert (source.tp, source.offset, source.value, source.original_headers) == (
        TP,
        41,
        b"v41",
        HEADERS,
    )
    assert json.loads(row.value or b"")["attributes"] == {"city": "Zürich"}


def test_rows_whose_events_cannot_be_read_back_go_as_json_rows_saying_why() -> None:
    batch = _batch([("crm-1", {"tier": "gold"}), ("crm-2", {"points": "7"})])
    letters = stuck_letters(batch, None, lambda e: None, "batch status stuck", "past retention")
    assert [json.loads(x.value or b"")["id"] for x in letters] == ["crm-1", "crm-2"]
    assert all(("original", "unavailable") in x.extra_headers for x in letters)
    assert all("past retention" in x.message and x.tp is None for x in letters)


def test_kept_ranges_are_bounded_oldest_batch_first() -> None:
    sources = BatchSources(max_ranges=5)
    for batch_id in (1, 2, 3):
        sources.keep(
            batch_id,
            {
                TP: [(batch_id * 10, batch_id * 10 + 1)],
                TopicPartition("pos", 0): [(batch_id, batch_id)],
            },
        )
    assert len(sources) == 4 and sources.dropped == 1
    assert sources.pop(1) is None  # dropped: its letters will be JSON rows
    assert sources.pop(3) == {TP: [(30, 31)], TopicPartition("pos", 0): [(3, 3)]}
    assert len(sources) == 2


class _Rereader:
    """Reads the fake source's partitions back, as consumer/kafka/reread.py reads Kafka."""

    def __init__(self, source: FakeSource) -> None:
        self.source = source
        self.asked: list[dict[TopicPartition, list[tuple[int, int]]]] = []

    def read(self, ranges: dict[TopicPartition, list[tuple[int, int]]]) -> list[OriginalEvent]:
        self.asked.append(ranges)
        return [
            OriginalEvent(tp, rec.offset, rec.key, rec.value, HEADERS)
            for tp, spans in ranges.items()
            for first, last in spans
            for rec in self.source.logs[tp][first : last + 1]
        ]


def test_a_given_up_batch_dead_letters_the_events_of_the_profiles_it_still_owns() -> None:
    rig = Rig(follow=True, status_max_resubmits="0")
    assert rig.follower is not None
    rereader = rig.loop.outcomes.rereader = _Rereader(rig.source)
    rig.source.assign({A})
    rig.source.produce(A, [event("p1", tier="a"), event("p2", tier="b")])
    rig.turns(2, seconds=rig.settings.batch_linger_seconds)
    rig.source.produce(A, [event("p1", 1_700_000_000_001, tier="c")])  # p1 sent again
    rig.turns(2, seconds=rig.settings.batch_linger_seconds)
    first, second = (b.batch_id for b, _ in rig.uploads.submitted)
    assert set(rig.follower.following) == {first, second}

    rig.follower.finish(first, FinalStatus.STUCK)
    rig.turns(2)

    # The offsets were committed long ago; the ranges kept since acceptance find them.
    assert rereader.asked == [{A: [(0, 1)]}]
    assert rig.dead_letters is not None
    [letter] = rig.dead_letters.landed  # p2's event; p1's row went out again in `second`
    assert (letter.reason, letter.tp, letter.offset) == ("batch_stuck", A, 1)
    assert letter.value == rig.source.logs[A][1].value
    assert letter.original_headers == HEADERS
    assert len(rig.loop.outcomes.sources) == 1  # only `second` is still open


def test_a_rejected_batch_s_repartition_records_become_their_source_records() -> None:
    internal = TopicPartition("group.repartition", 0)
    updates = {5: make_update("p", {"a": "1"}, tp=TP, offset=12), 6: None}
    records = [OriginalEvent(internal, o, b"k", b"internal", ()) for o in updates]

    def decode(e: OriginalEvent) -> ProfileUpdate | None:
        return updates[e.offset]

    got = source_records(records, decode, lambda ranges: [_event(12)])
    assert got == [_event(12), records[1]]  # an undecodable record stays as it is
    assert source_records(records, decode, lambda ranges: []) is None  # gone: rows instead
