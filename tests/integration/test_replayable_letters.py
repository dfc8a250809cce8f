"""Dead letters of source events are the events as published, headers included, so
``profile-sync dlq replay`` re-publishes them as they were (issue 17, item 10).

Against the real broker and the emulator, the service as a process: a batch the emulator
keeps ``stuck`` is given up and its original events land in the DLQ (not JSON rows), and
replaying them with ``--reason batch_stuck`` brings them to Target; a poison record's
letter keeps the record's headers and replays byte-identical.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.fixtures.kafka import encode_profile_change
from tests.integration.conftest import Stack
from tests.integration.events import NASTY, event

T0 = 1_700_000_000_000
REPLAYED_FROM = "profile-sync.replayed.from"


def _ours(msg: Any) -> dict[str, bytes]:
    return {k: v for k, v in msg.headers() or [] if k.startswith("profile-sync.")}


def _theirs(msg: Any) -> list[tuple[str, bytes]]:
    return [(k, v) for k, v in msg.headers() or [] if not k.startswith("profile-sync.")]


def test_a_stuck_batch_is_dead_lettered_as_its_original_events_and_replays(
    stack: Callable[..., Stack],
    produce_raw: Callable[..., Any],
) -> None:
    s = stack(partitions=1, topics=1)
    source = s.topics[0]
    s.emulator.control.inject({"api": "bulk", "stuck": True, "count": 1})
    events = [
        event(f"crm-{i % 3}", {"tier": f"t{i}", "note": NASTY[i % len(NASTY)]}, T0 + i)
        for i in range(7)
    ]
    records = [(e["profile"]["id"].encode(), encode_profile_change(e)) for e in events]
    produce_raw(source, records, headers=[("trace-id", b"abc-123"), ("bin", b"\x00\xff")])
    s.produced.extend(events)

    s.run_to_idle(PROFILE_SYNC_STATUS_MAX_RESUBMITS="0")

    assert s.emulator.control.stats()["batches"]["stuck"] == 1
    letters = s.dead_letters(len(events))
    assert len(letters) == len(events)  # one per event, not one JSON row per profile
    published = {m.offset(): m for m in s._consume(source, len(events))}
    for letter in letters:
        h = _ours(letter)
        assert h["profile-sync.reason"] == b"batch_stuck"
        assert "profile-sync.original" not in h
        original = published[int(h["profile-sync.source.offset"])]
        assert (letter.key(), letter.value()) == (original.key(), original.value())
        assert (
            _theirs(letter) == _theirs(original) == [("trace-id", b"abc-123"), ("bin", b"\x00\xff")]
        )
    assert s.target_state() == {}  # the stuck batch was never applied

    report = s.replay("--reason", "batch_stuck")
    assert report["replayed"] == len(events)
    s.run_to_idle()
    s.wait_for_state(s.expected())


def test_a_poison_event_keeps_its_headers_and_replays_byte_identical(
    stack: Callable[..., Stack],
    produce_raw: Callable[..., Any],
) -> None:
    s = stack(partitions=1, topics=1)
    source = s.topics[0]
    headers = [("trace-id", b"t-42"), ("tenant", b"eu"), ("raw", b"\x00\x01\xfe")]
    produce_raw(source, [(b"k-poison", b"\x00not avro at all")], headers=headers)
    s.produce([event("crm-ok", {"tier": "gold"}, T0)])

    s.run_to_idle()

    [letter] = s.dead_letters(1)
    assert _ours(letter)["profile-sync.reason"] == b"undecodable"
    assert _theirs(letter) == headers
    [original] = [m for m in s._consume(source, 2) if m.key() == b"k-poison"]

    report = s.replay("--reason", "undecodable")
    assert report["replayed"] == 1
    [replayed] = [
        m
        for m in s._consume(source, 3)
        if m.key() == b"k-poison" and m.offset() != original.offset()
    ]
    assert (replayed.key(), replayed.value()) == (original.key(), original.value())
    assert [(k, v) for k, v in replayed.headers() if k != REPLAYED_FROM] == original.headers()
