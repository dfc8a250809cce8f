"""The sample stream of ``profile-sync produce-sample``, generated without Kafka.

What a user of the sample relies on: a seed reproduces the run, the shares asked for are the
shares produced, every record is keyed by its profile id and valid against the contract,
one profile's ``occurred_at`` only grows, and the values are as hostile as real CRM data.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fastavro.validation import validate

from sampler import cli as sample
from sampler import events as sample_events
from sampler.events import expected_profiles, generate_events, route
from tests.utils import ID_TYPE_HEADER, fold

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
V1 = fastavro.parse_schema(json.loads((SCHEMAS / "profile_change.avsc").read_text("utf-8")))
V2 = fastavro.parse_schema(json.loads((SCHEMAS / "profile_change_v2.avsc").read_text("utf-8")))
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
TNTID = re.compile(r"[0-9a-f]{32}\.[0-9]{2}_0")


def events(n: int = 20_000, **kw: Any) -> list[dict[str, Any]]:
    params: dict[str, Any] = {
        "profiles": 1_000,
        "urgent_share": 0.02,
        "pcid_share": 0.1,
        "pos_share": 0.6,
        "seed": 7,
        "start_ms": START_MS,
    }
    params.update(kw)
    return list(generate_events(n, **params))


@pytest.fixture(scope="module")
def stream() -> list[dict[str, Any]]:
    return events()


def strings(stream: list[dict[str, Any]]) -> list[str]:
    return [v for e in stream for v in e["attributes"].values() if isinstance(v, str)]


# --- reproducibility and counts -----------------------------------------------------------------


def test_the_same_seed_gives_the_same_events(stream: list[dict[str, Any]]) -> None:
    assert events() == stream
    other = events(seed=8)
    assert other != stream
    assert [e["event_id"] for e in other][:100] != [e["event_id"] for e in stream][:100]


def test_count_is_exact_and_zero_is_allowed() -> None:
    assert len(events(1234)) == 1234
    assert events(0) == []


@pytest.mark.parametrize(
    "bad",
    [
        {"profiles": 0},
        {"urgent_share": 1.5},
        {"pcid_share": -0.1},
        {"pos_share": 2.0},
    ],
)
def test_impossible_parameters_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        events(10, **bad)


# --- shares --------------------------------------------------------------------------------------


def test_pos_share_is_respected(stream: list[dict[str, Any]]) -> None:
    sources = Counter(e["source"] for e in stream)
    assert set(sources) == {"POS", "CRM"}
    assert sources["POS"] / len(stream) == pytest.approx(0.6, abs=0.02)


def test_urgent_share_is_respected_and_mostly_crm(stream: list[dict[str, Any]]) -> None:
    urgent = [e for e in stream if e["priority"] == "URGENT"]
    assert len(urgent) / len(stream) == pytest.approx(0.02, abs=0.005)
    crm = sum(e["source"] == "CRM" for e in urgent)
    assert crm / len(urgent) > 0.8


def test_urgent_share_holds_when_every_event_is_pos() -> None:
    only_pos = events(10_000, pos_share=1.0, urgent_share=0.1)
    assert {e["source"] for e in only_pos} == {"POS"}
    urgent = sum(e["priority"] == "URGENT" for e in only_pos)
    assert urgent / len(only_pos) == pytest.approx(0.1, abs=0.015)


def test_no_urgent_events_when_the_share_is_zero() -> None:
    assert all(e["priority"] == "NORMAL" for e in events(5_000, urgent_share=0.0))


def test_pcid_share_is_a_share_of_profiles(stream: list[dict[str, Any]]) -> None:
    profiles = {(e["profile"]["id_type"], e["profile"]["id"]) for e in stream}
    assert 500 < len(profiles) <= 1_000
    pcids = sum(id_type == "PC_ID" for id_type, _ in profiles)
    assert pcids / len(profiles) == pytest.approx(0.1, abs=0.03)


def test_busy_profiles_get_more_events_than_quiet_ones(stream: list[dict[str, Any]]) -> None:
    per_profile = Counter(e["profile"]["id"] for e in stream).most_common()
    assert per_profile[0][1] > 5 * (len(stream) / 1_000)


# --- keys, ids, ordering -------------------------------------------------------------------------


def test_route_keys_by_profile_id_and_sends_by_source(stream: list[dict[str, Any]]) -> None:
    for event in stream:
        topic, key, routed = route(event, "pos.t", "crm.t")
        assert routed is event
        assert key == event["profile"]["id"]
        assert topic == ("pos.t" if event["source"] == "POS" else "crm.t")


def test_ids_look_like_real_ids(stream: list[dict[str, Any]]) -> None:
    by_type: dict[str, set[str]] = {"PC_ID": set(), "THIRD_PARTY_ID": set()}
    for e in stream:
        by_type[e["profile"]["id_type"]].add(e["profile"]["id"])
    assert by_type["PC_ID"] and all(TNTID.fullmatch(i) for i in by_type["PC_ID"])
    third = by_type["THIRD_PARTY_ID"]
    assert any(re.fullmatch(r"crm-\d{6}", i) for i in third)
    assert any(re.fullmatch(r"6280\d{9}", i) for i in third)
    assert not by_type["PC_ID"] & third


def test_a_few_third_party_ids_are_hashes_but_none_holds_what_target_refuses() -> None:
    # Rare (0.5 %), so look at a large pool: every profile gets events with a flat pick.
    many = events(60_000, profiles=20_000, pcid_share=0.0, urgent_share=0.0)
    ids = {e["profile"]["id"] for e in many}
    hashed = {i for i in ids if re.fullmatch(r"[A-Za-z0-9_-]{24}", i) and ("-" in i or "_" in i)}
    assert hashed, "URL-safe base64 hashes must show up in the sample"
    assert len(hashed) / len(ids) < 0.02
    assert not [i for i in ids if "+" in i or "/" in i], "Target refuses + and / in thirdPartyIds"


def test_one_profile_has_one_id_type_and_one_id(stream: list[dict[str, Any]]) -> None:
    types: dict[str, set[str]] = {}
    for e in stream:
        types.setdefault(e["profile"]["id"], set()).add(e["profile"]["id_type"])
    assert all(len(t) == 1 for t in types.values())


def test_occurred_at_strictly_increases_per_profile(stream: list[dict[str, Any]]) -> None:
    per_profile: dict[str, list[int]] = {}
    for e in stream:
        per_profile.setdefault(e["profile"]["id"], []).append(e["occurred_at"])
    for times in per_profile.values():
        assert all(a < b for a, b in pairwise(times))


def test_occurred_at_is_realistic_across_profiles(stream: list[dict[str, Any]]) -> None:
    times = [e["occurred_at"] for e in stream]
    # Late POS uploads: the stream is not sorted by time across profiles...
    assert any(a > b for a, b in pairwise(times))
    # ...but it covers a plausible business span from the start, not random dates.
    assert min(times) >= START_MS - sample_events.POS_UPLOAD_LAG_MS
    assert max(times) - START_MS < len(stream) * sample_events.MEAN_GAP_MS * 2


def test_purchase_count_grows_and_purchase_time_is_the_event_time(
    stream: list[dict[str, Any]],
) -> None:
    counts: dict[str, list[int]] = {}
    for e in stream:
        if e["source"] == "POS":
            assert e["attributes"]["lastPurchaseAt"] == e["occurred_at"]
            counts.setdefault(e["profile"]["id"], []).append(e["attributes"]["purchaseCount"])
    for series in counts.values():
        assert series == list(range(1, len(series) + 1))


# --- values --------------------------------------------------------------------------------------


def test_every_event_validates_against_both_schema_versions(stream: list[dict[str, Any]]) -> None:
    for event in stream[:5_000]:  # fastavro's validation is slow; 5,000 cover every branch
        assert validate(event, V1, raise_errors=True)
        assert validate(event, V2, raise_errors=True)


@pytest.mark.parametrize(
    "needle", [",", "&", "%", "+", '"', "'", "\n", "\r\n", "\t", "😀", "Ł", "山田", "é"]
)
def test_values_include_the_characters_real_crm_data_has(
    stream: list[dict[str, Any]], needle: str
) -> None:
    assert any(needle in s for s in strings(stream))


def test_every_attribute_value_type_occurs(stream: list[dict[str, Any]]) -> None:
    kinds = Counter(type(v).__name__ for e in stream for v in e["attributes"].values())
    assert set(kinds) == {"NoneType", "str", "int", "float", "bool"}
    assert "" in strings(stream), "empty strings (no change) occur too"
    values = [v for e in stream for v in e["attributes"].values()]
    assert kinds["NoneType"] / len(values) < 0.1, "nulls are the exception"


def test_attribute_names_are_the_documented_ones(stream: list[dict[str, Any]]) -> None:
    names = {n for e in stream for n in e["attributes"]}
    pos = {"lastStoreId", "lastPurchaseAmount", "lastPurchaseCategory", "lastPurchaseAt"}
    crm = {"loyaltyTier", "loyaltyPoints", "emailOptIn", "firstName", "city", "note"}
    assert pos | crm | {"purchaseCount", "basketSize", "preferredStore"} <= names
    prefixed = {n for n in names if n.startswith("profile.")}
    assert prefixed, "a few producers send the profile. prefix"
    assert {n.removeprefix("profile.") for n in prefixed} <= names
    loyalty = [e["attributes"].get("loyaltyTier") for e in stream]
    assert {v for v in loyalty if v} == {"bronze", "silver", "gold", "platinum"}


def test_urgent_crm_events_are_loyalty_or_call_centre_moments(
    stream: list[dict[str, Any]],
) -> None:
    for e in stream:
        if e["priority"] == "URGENT" and e["source"] == "CRM":
            names = {n.removeprefix("profile.") for n in e["attributes"]}
            assert names in (
                {"loyaltyPoints", "loyaltyTier"},
                {"note", "emailOptIn"},
                {"note", "preferredLanguage"},
            )


# --- expected final state from a dump ------------------------------------------------------------


def dump_line(pid: str, at: int, attrs: dict[str, Any], id_type: str = "THIRD_PARTY_ID") -> str:
    event = {
        "event_id": "x",
        "source": "CRM",
        "occurred_at": at,
        "profile": {"id_type": id_type, "id": pid},
        "priority": "NORMAL",
        "attributes": attrs,
    }
    return json.dumps({"topic": "t", "key": pid, "event": event})


def test_expected_profiles_keeps_the_newest_value_per_attribute() -> None:
    lines = [
        dump_line("crm-1", 20, {"tier": "gold", "points": 5}),
        dump_line("crm-1", 10, {"tier": "bronze", "city": "Łódź"}),  # older, arrives later
        dump_line("crm-1", 30, {"tier": None, "points": "", "profile.optIn": False}),
        dump_line("crm-2", 5, {"amount": 19.99, "whole": 12.0, "vip": True}),
        dump_line("abc.01_0", 5, {"x": None}, id_type="PC_ID"),
        "",
    ]
    assert expected_profiles(lines) == {
        ("THIRD_PARTY_ID", "crm-1"): {
            "tier": "gold",
            "points": "5",
            "city": "Łódź",
            "optIn": "false",
        },
        ("THIRD_PARTY_ID", "crm-2"): {"amount": "19.99", "whole": "12.0", "vip": "true"},
    }


def test_expected_profiles_of_a_generated_stream_has_no_empty_values() -> None:
    lines = [json.dumps({"topic": "t", "key": e["profile"]["id"], "event": e}) for e in events()]
    state = expected_profiles(lines)
    assert state
    assert all(v for row in state.values() for v in row.values())
    assert not any(n.startswith("profile.") for row in state.values() for n in row)


def test_expected_profiles_agrees_with_the_contract_oracle(stream: list[dict[str, Any]]) -> None:
    """Checking a dump against Target is only worth it if the fold is the contract's fold:
    compare with ``tests.utils.fold``, written independently from the documented rules."""
    lines = [json.dumps({"topic": "t", "key": e["profile"]["id"], "event": e}) for e in stream]
    state = expected_profiles(lines)
    assert {(ID_TYPE_HEADER[t], pid): row for (t, pid), row in state.items()} == fold(stream)


def test_expected_profiles_is_still_where_the_schemas_readme_says() -> None:
    assert sample.expected_profiles is expected_profiles


# --- command-line options ------------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="produce-sample")
    sample.configure_parser(parser)
    return parser.parse_args(argv)


def test_defaults_match_the_documented_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    args = parse([])
    assert args.bootstrap_servers == "127.0.0.1:9092"
    assert (args.topic_pos, args.topic_crm) == ("pos.profile-changes", "crm.profile-changes")
    assert (args.count, args.rate, args.profiles) == (10_000, 0.0, 1_000)
    assert (args.urgent_share, args.pcid_share, args.pos_share) == (0.02, 0.1, 0.6)
    assert args.schema_registry_url is None and args.create_topics is None
    assert args.progress is None and not args.quiet and args.dump is None


def test_bootstrap_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9092,kafka-2:9092")
    assert parse([]).bootstrap_servers == "kafka-1:9092,kafka-2:9092"
    assert parse(["--bootstrap-servers", "b:1"]).bootstrap_servers == "b:1"


@pytest.mark.parametrize(
    "argv",
    [
        ["--pos-share", "1.2"],
        ["--urgent-share", "-0.1"],
        ["--count", "-1"],
        ["--profiles", "0"],
        ["--rate", "nan"],
        ["--create-topics", "0"],
        ["--connect-timeout", "0"],
        ["-X", "no-equals-sign"],
    ],
)
def test_bad_options_are_refused_before_anything_connects(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse(argv)
    assert exc.value.code == 2
    assert "produce-sample: error" in capsys.readouterr().err


def test_help_documents_every_option_with_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse(["--help"])
    text = capsys.readouterr().out
    for option in (
        "--bootstrap-servers", "--topic-pos", "--topic-crm", "--count", "--rate", "--profiles",
        "--urgent-share", "--pcid-share", "--pos-share", "--seed", "--schema-registry-url",
        "--create-topics", "--progress", "--no-progress", "--quiet", "--dump",
    ):  # fmt: skip
        assert option in text
    assert "(default: 10000)" in text and "(default: pos.profile-changes)" in text
    assert "(default: 0.02)" in text


def test_kafka_properties_pass_through_last(monkeypatch: pytest.MonkeyPatch) -> None:
    args = parse(["-X", "linger.ms=5", "-X", "security.protocol=SSL"])
    conf = sample._producer_config(args, sample._Tally())
    assert conf["linger.ms"] == "5" and conf["security.protocol"] == "SSL"
    assert conf["enable.idempotence"] is True and conf["acks"] == "all"


class _PacedProducer:
    """A producer on a fake clock: ``poll`` waits by moving it; one ``produce`` stalls."""

    def __init__(self, stall_at: int, stall_s: float) -> None:
        self.now = 100.0
        self.sent_at: list[float] = []
        self.stall_at, self.stall_s = stall_at, stall_s

    def monotonic(self) -> float:
        return self.now

    def produce(self, topic: str, value: bytes, key: bytes, on_delivery: Any) -> None:
        if len(self.sent_at) == self.stall_at:
            self.now += self.stall_s  # the machine was busy elsewhere
        self.sent_at.append(self.now)

    def poll(self, timeout: float) -> int:
        self.now += timeout
        return 0


def test_rate_is_a_ceiling_a_stalled_producer_does_not_burst_to_catch_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rate, count = 1_000, 3_000
    producer = _PacedProducer(stall_at=1_000, stall_s=1.0)
    monkeypatch.setattr(sample.time, "monotonic", producer.monotonic)
    args = parse(["--count", str(count), "--rate", str(rate), "--quiet"])
    done = sample._produce_all(
        args, producer, lambda topic, event: b"x", sample._Tally(), None,
        sample._Progress(count, False), sample._StopFlag(), 7, 1_700_000_000_000,
    )  # fmt: skip
    assert done
    sent = producer.sent_at
    # Never faster than the rate over any second, the stall's aftermath included: at most
    # 0.1 s worth of events go at once to catch up, then the pace is the rate again.
    for i in range(len(sent) - rate):
        assert sent[i + rate] - sent[i] >= 0.999 - sample.MAX_CATCH_UP_S
    after = sent[1_000]
    assert sum(1 for t in sent if t == after) <= rate * (sample.MAX_CATCH_UP_S + sample.PACE_S) + 1
    # The stall is not made up for: the whole run takes the stall longer.
    assert sent[-1] - sent[0] >= (count - 1) / rate + 1.0 - sample.MAX_CATCH_UP_S - 0.01
