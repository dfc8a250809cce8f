"""``profile-sync dlq replay`` (issue 17, item 10): selected dead letters go back to their
source topics with their original bytes; a dry run publishes nothing."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.integration.conftest import Stack
from tests.integration.events import event


def _headers(msg: Any) -> dict[str, bytes]:
    return dict(msg.headers() or [])


def test_replay_selects_by_reason_time_and_offset_and_republishes_the_original_bytes(
    stack: Callable[..., Stack],
    produce_raw: Callable[..., Any],
    topic_end_offsets: Callable[[str], dict[int, int]],
) -> None:
    s = stack(partitions=1, topics=1)
    source = s.topics[0]
    produce_raw(source, [(b"k-garbage", b"\x00not avro at all")])
    bad_id = event(" ", {"loyaltyTier": "gold"}, 1_700_000_000_000)
    s.produce([bad_id])
    s.run_to_idle()
    letters = s.dead_letters(2)
    by_reason = {_headers(m)["profile-sync.reason"].decode(): m for m in letters}
    assert set(by_reason) == {"undecodable", "invalid_profile_id"}
    source_before = s._consume(source, 2)
    end_before = topic_end_offsets(source)[0]

    dry = s.replay("--reason", "undecodable", "--dry-run")
    assert (dry["selected"], dry["replayed"], dry["by_topic"]) == (1, 0, {source: 1})
    assert topic_end_offsets(source)[0] == end_before  # nothing published

    future = s.replay("--since", str(int(time.time() * 1000) + 3_600_000))
    assert (future["read"], future["selected"]) == (2, 0)

    target = by_reason["invalid_profile_id"]
    report = s.replay(
        "--partition",
        "0",
        "--from-offset",
        str(target.offset()),
        "--to-offset",
        str(target.offset()),
    )
    assert (report["selected"], report["replayed"]) == (1, 1)
    after = s._consume(source, 3)
    [replayed] = [m for m in after if m.offset() >= end_before]
    original = next(
        m
        for m in source_before
        if m.offset() == int(_headers(target)["profile-sync.source.offset"])
    )
    assert (replayed.key(), replayed.value()) == (original.key(), original.value())
    assert _headers(replayed)["profile-sync.replayed.from"] == (
        f"{s.dlq}/0/{target.offset()}".encode()
    )


def test_a_rejected_batch_is_dead_lettered_as_its_original_events_and_replays(
    stack: Callable[..., Stack],
    produce_raw: Callable[..., Any],
) -> None:
    from tests.fixtures.kafka import encode_profile_change

    s = stack(partitions=1, topics=1)
    source = s.topics[0]
    s.emulator.control.inject({"api": "bulk", "status": 400, "count": 1})
    events = [event(f"crm-{i % 3}", {"tier": f"t{i}"}, 1_700_000_000_000 + i) for i in range(6)]
    records = [(e["profile"]["id"].encode(), encode_profile_change(e)) for e in events]
    produce_raw(source, records, headers=[("trace-id", b"abc-123")])
    s.produced.extend(events)
    s.run_to_idle()

    letters = s.dead_letters(len(events))
    assert len(letters) == len(events)  # one per event, not one per profile row
    published = {m.offset(): m for m in s._consume(source, len(events))}
    for letter in letters:
        h = _headers(letter)
        assert h["profile-sync.reason"] == b"batch_rejected"
        original = published[int(h["profile-sync.source.offset"])]
        assert (letter.key(), letter.value()) == (original.key(), original.value())
        assert h["trace-id"] == b"abc-123"

    report = s.replay("--reason", "batch_rejected")
    assert report["replayed"] == len(events)
    republished = s._consume(source, 2 * len(events))[len(events) :]
    assert all(_headers(m)["trace-id"] == b"abc-123" for m in republished)
    s.run_to_idle()
    s.wait_for_state(s.expected())
