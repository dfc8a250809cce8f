"""The main path, end to end: real broker, the service as a subprocess, the emulator over HTTP."""

from __future__ import annotations

import io
from collections.abc import Callable

import fastavro
import pytest

from tests.integration.conftest import Stack
from tests.integration.events import NASTY, event, random_events


@pytest.mark.parametrize("mode", ["never", "always"])
def test_final_profiles_equal_the_fold_of_the_events(
    stack: Callable[..., Stack], mode: str
) -> None:
    s = stack(mode=mode)
    events = random_events(3000, 400, seed=1)
    # One profile's events are spread over both topics: across partitions the newer
    # occurred_at must win however the consumer interleaves them.
    s.produce(events[0::2], topic=s.topics[0])
    s.produce(events[1::2], topic=s.topics[1])

    summary = s.run_to_idle()

    s.wait_for_state(s.expected(events))
    assert summary["events_consumed"] == len(events)
    assert s.all_committed(), s.uncommitted()
    stats = s.emulator.control.stats()
    # Coalescing: far fewer rows reached Target than events were produced.
    assert stats["rows_received"] < len(events) / 3


def test_every_special_character_survives_the_batch_file(stack: Callable[..., Stack]) -> None:
    s = stack(partitions=1, topics=1)
    events = [
        event(f"crm-{i}", {"note": value, f"näme{i}&x,%+": value}, 1_000 + i)
        for i, value in enumerate(NASTY)
    ]
    s.produce(events)

    s.run_to_idle()

    s.wait_for_state(s.expected(events))


def test_batches_are_cut_before_the_row_limit_and_linger_flushes(
    stack: Callable[..., Stack],
) -> None:
    s = stack(partitions=1, topics=1)
    events = [event(f"crm-{i:05d}", {"tier": "gold", "i": i}, 1_000 + i) for i in range(250)]
    s.produce(events)

    # A linger long enough that only the row limit cuts until the stream is drained.
    s.run_to_idle(PROFILE_SYNC_BATCH_MAX_ROWS="100", PROFILE_SYNC_BATCH_LINGER_SECONDS="2")

    s.wait_for_state(s.expected(events))
    rows = sorted(b["batchSize"] for b in s.emulator.control.batches())
    # Two full batches cut on rows, the remainder flushed by linger; never over 100.
    assert rows == [50, 100, 100], rows


def test_batches_stay_under_the_byte_limit(stack: Callable[..., Stack]) -> None:
    s = stack(partitions=1, topics=1)
    big = "x" * 2_000
    events = [event(f"crm-{i:05d}", {"blob": f"{big}{i}"}, 1_000 + i) for i in range(1_500)]
    s.produce(events)

    s.run_to_idle(PROFILE_SYNC_BATCH_MAX_BYTES="1000000", PROFILE_SYNC_BATCH_LINGER_SECONDS="2")

    s.wait_for_state(s.expected(events))
    sizes = [b["bytes"] for b in s.emulator.control.batches()]
    assert len(sizes) >= 3
    assert max(sizes) < 1_000_000
    # Cut only when needed: every batch but the last is close to the limit.
    assert min(sorted(sizes)[1:]) > 1_000_000 - 2 * 2_100


def test_poison_goes_to_the_dlq_and_later_events_still_arrive(
    stack: Callable[..., Stack], produce_raw: Callable[..., list[tuple[int, int]]]
) -> None:
    s = stack(partitions=1, topics=1)
    topic = s.topics[0]
    before = [event("crm-1", {"tier": "silver"}, 1_000)]
    after = [event("crm-1", {"tier": "gold"}, 3_000), event("crm-2", {"city": "Oslo"}, 3_001)]
    s.produce(before)
    invalid = event(" ", {"tier": "gold"}, 2_000)  # blank id: breaks the contract
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, _schema(), invalid)
    nan = event("crm-3", {"spend": float("nan")}, 2_001)
    buf_nan = io.BytesIO()
    fastavro.schemaless_writer(buf_nan, _schema(), nan)
    produce_raw(
        topic,
        [
            (b"crm-9", b"\x00\x01garbage that is not avro"),
            (b"crm-9", b"\x00\x00\x00\x00\x07" + buf.getvalue()),  # framing, but plain mode
            (b" ", buf.getvalue()),
            (b"crm-3", buf_nan.getvalue()),
            (b"crm-4", None),
        ],
    )
    s.produce(after)

    summary = s.run_to_idle()

    s.wait_for_state(s.expected(before + after))
    letters = s.dead_letters(5)
    assert summary["events_poison"] == 5
    reasons = sorted(dict(m.headers())["profile-sync.reason"].decode() for m in letters)
    assert reasons == [
        "empty_value",
        "invalid_profile_id",
        "invalid_value",
        "undecodable",
        "undecodable",
    ]
    for m in letters:
        headers = dict(m.headers())
        assert headers["profile-sync.source.topic"].decode() == topic
        assert headers["profile-sync.stage"].decode() in ("decode", "validate")
        assert int(headers["profile-sync.source.offset"]) >= 1
    garbage = next(m for m in letters if m.value() == b"\x00\x01garbage that is not avro")
    assert garbage.key() == b"crm-9"
    assert s.all_committed(), s.uncommitted()


def test_unknown_schema_id_goes_to_the_dlq(
    stack: Callable[..., Stack],
    schema_registry: object,
    produce_profile_changes: Callable[..., list[tuple[int, int]]],
) -> None:
    s = stack(partitions=1, topics=1)
    registry = schema_registry
    schema_id = registry.register(  # type: ignore[attr-defined]
        f"{s.topics[0]}-value", _schema_text()
    )
    good = [event("crm-1", {"tier": "gold"}, 1_000)]
    produce_profile_changes(s.topics[0], good, wire_format_schema_id=schema_id)
    produce_profile_changes(
        s.topics[0], [event("crm-2", {"tier": "x"}, 1_001)], wire_format_schema_id=999_999
    )
    later = [event("crm-3", {"tier": "bronze"}, 1_002)]
    produce_profile_changes(s.topics[0], later, wire_format_schema_id=schema_id)

    s.run_to_idle(PROFILE_SYNC_SCHEMA_REGISTRY_URL=registry.url)  # type: ignore[attr-defined]

    s.wait_for_state(s.expected(good + later))
    (letter,) = s.dead_letters(1)
    assert dict(letter.headers())["profile-sync.reason"] == b"unknown_schema"


def test_events_with_nothing_to_change_are_settled_without_a_call(
    stack: Callable[..., Stack],
) -> None:
    s = stack(partitions=1, topics=1)
    s.produce([event("crm-1", {"tier": None, "note": ""}, 1_000) for _ in range(20)])

    summary = s.run_to_idle()

    assert summary["events_skipped_empty"] == 20
    assert s.emulator.control.stats()["bulk_requests"] == 0
    assert s.all_committed(), s.uncommitted()


def test_check_config_names_the_bad_key(stack: Callable[..., Stack]) -> None:
    s = stack(partitions=1, topics=1)
    service = s.start(PROFILE_SYNC_BATCH_MAX_ROWS="900000", KAFKA_SASL_PASSWORD="hunter2")
    code = service.wait(30)
    assert code == 2
    log = service.log_path.read_text()
    assert "PROFILE_SYNC_BATCH_MAX_ROWS" in log and "500,000" in log
    assert "hunter2" not in log


def _schema() -> object:
    from tests.fixtures.kafka import PROFILE_CHANGE_SCHEMA

    return PROFILE_CHANGE_SCHEMA


def _schema_text() -> str:
    from pathlib import Path

    return (Path(__file__).resolve().parents[2] / "schemas" / "profile_change.avsc").read_text()


def test_exit_when_idle_does_not_take_a_backpressure_pause_for_the_end(
    stack: Callable[..., Stack],
) -> None:
    # Carry-forward full of profiles whose batches Target has not completed (3 s to apply)
    # pauses consumption; --exit-when-idle (2 s) must not stop the run during that pause.
    s = stack(partitions=1, topics=1, bulk_apply_delay=3.0)
    events = [event(f"p{i}", {"loyaltyTier": "gold"}, 1_000 + i) for i in range(400)]
    s.produce(events)
    summary = s.run_to_idle(
        PROFILE_SYNC_CARRY_FORWARD_MAX_PROFILES="100",
        PROFILE_SYNC_BATCH_MAX_ROWS="100",
        PROFILE_SYNC_CONSUME_BATCH_SIZE="50",
    )
    assert summary["events_consumed"] == len(events)
    s.wait_for_state(s.expected(events))
    assert s.all_committed(), s.uncommitted()
