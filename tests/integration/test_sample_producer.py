"""``profile-sync produce-sample`` against the real broker, run as the user runs it.

Every test starts the command as a subprocess, then reads the topics back: the records must
be exactly the ``--dump`` file, keyed by profile id, one profile in one partition in order,
decodable as the contract says (plain Avro, or wire format against the Schema Registry).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka import Message
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient

from consumer.core.decode import Decoder, strip_logical_types
from sampler.events import expected_profiles
from tests.fixtures.schema_registry import SchemaRegistryServer

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "schemas"
V1_TEXT = (SCHEMAS / "profile_change.avsc").read_text("utf-8")
V2_TEXT = (SCHEMAS / "profile_change_v2.avsc").read_text("utf-8")
# A few thousand events take about a second; the bound is for a loaded CI machine.
RUN_TIMEOUT_S = 120.0

Dumped = list[dict[str, Any]]


def produce_sample(*args: str, timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    return subprocess.run(
        [sys.executable, "-m", "consumer", "produce-sample", "--no-progress", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def read_dump(path: Path) -> Dumped:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def plain(schema_text: str) -> Any:
    return fastavro.parse_schema(strip_logical_types(json.loads(schema_text)))


def avro_read(data: bytes, writer: Any, reader: Any | None = None) -> dict[str, Any]:
    buf = io.BytesIO(data)
    record = fastavro.schemaless_reader(buf, writer, reader)
    assert buf.tell() == len(data) and isinstance(record, dict)
    return record


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_leaders(admin: AdminClient, topic: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        found = admin.list_topics(topic, timeout=10).topics.get(topic)
        parts = found.partitions.values() if found is not None and found.error is None else []
        if parts and all(p.leader >= 0 for p in parts):
            return
        assert time.monotonic() < deadline, f"{topic} has no leader after {timeout} s"
        time.sleep(0.05)


def check_order_and_keys(
    messages: list[Message], dumped: Dumped, event_id: Callable[[Message], str]
) -> None:
    """Keys are profile ids; a profile sits in one partition per topic, in production order."""
    in_kafka: dict[tuple[str, str], list[tuple[int, int, str]]] = {}
    for msg in messages:
        key, topic = msg.key(), msg.topic()
        partition, offset = msg.partition(), msg.offset()
        assert key is not None and topic is not None
        assert partition is not None and offset is not None
        position = (partition, offset, event_id(msg))
        in_kafka.setdefault((topic, key.decode("utf-8")), []).append(position)
    in_dump: dict[tuple[str, str], list[str]] = {}
    for line in dumped:
        assert line["key"] == line["event"]["profile"]["id"]
        in_dump.setdefault((line["topic"], line["key"]), []).append(line["event"]["event_id"])
    assert in_kafka.keys() == in_dump.keys()
    for where, positions in in_kafka.items():
        assert len({p for p, _, _ in positions}) == 1, f"{where} spread over partitions"
        by_offset = [eid for _, _, eid in sorted(positions)]
        assert by_offset == in_dump[where], f"{where} out of production order"


def test_plain_avro_records_are_exactly_the_dump(
    make_topic: Callable[..., str],
    consume_topic: Callable[..., list[Message]],
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    pos, crm = make_topic(partitions=3, prefix="pos"), make_topic(partitions=3, prefix="crm")
    dump = tmp_path / "events.jsonl"
    done = produce_sample(
        "--bootstrap-servers", kafka_bootstrap, "--topic-pos", pos, "--topic-crm", crm,
        "--count", "3000", "--profiles", "400", "--seed", "11", "--dump", str(dump),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = done.stdout.strip()
    assert re.fullmatch(
        r"produced 3,000 events \([\d,]+ bytes\) in [\d.]+ s: .* 0 failed .*", summary
    )
    assert "seed 11" in summary

    dumped = read_dump(dump)
    assert len(dumped) == 3000
    per_topic = {t: sum(d["topic"] == t for d in dumped) for t in (pos, crm)}
    assert per_topic[pos] + per_topic[crm] == 3000 and min(per_topic.values()) > 500
    messages = consume_topic(pos, per_topic[pos]) + consume_topic(crm, per_topic[crm])
    assert len(messages) == 3000, "no record lost, none duplicated"

    writer = plain(V1_TEXT)
    produced = sorted(
        (m.topic() or "", avro_read(m.value() or b"", writer)["event_id"], m.key() or b"")
        for m in messages
    )
    expected = sorted((d["topic"], d["event"]["event_id"], d["key"].encode()) for d in dumped)
    assert produced == expected
    by_id = {d["event"]["event_id"]: d["event"] for d in dumped}
    for msg in messages:
        record = avro_read(msg.value() or b"", writer)
        assert record == by_id[record["event_id"]]
    check_order_and_keys(
        messages, dumped, lambda m: avro_read(m.value() or b"", writer)["event_id"]
    )
    assert expected_profiles(dump.read_text("utf-8").splitlines())


def _registry_decoder(registry: SchemaRegistryServer, reader_text: str) -> Decoder:
    """The consumer's own Decoder, fed writer schemas by id from the registry."""
    client = SchemaRegistryClient({"url": registry.url})

    class Schemas:
        def read_schema_id(self, buf: io.BytesIO) -> int:
            header = buf.read(5)
            assert header[:1] == b"\x00", "Confluent magic byte"
            return int.from_bytes(header[1:], "big")

        def schema_for(self, schema_id: int) -> dict[str, Any]:
            text = client.get_schema(schema_id).schema_str
            assert text is not None
            parsed: dict[str, Any] = json.loads(text)
            return parsed

    return Decoder(reader_schema=json.loads(reader_text), registry=Schemas())


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_wire_format_registers_the_schema_and_decodes_by_id(
    version: str,
    make_topic: Callable[..., str],
    consume_topic: Callable[..., list[Message]],
    kafka_bootstrap: str,
    schema_registry: SchemaRegistryServer,
    tmp_path: Path,
) -> None:
    schema_file = SCHEMAS / ("profile_change.avsc" if version == "v1" else "profile_change_v2.avsc")
    schema_text = schema_file.read_text("utf-8")
    pos, crm = make_topic(partitions=2, prefix="pos"), make_topic(partitions=2, prefix="crm")
    dump = tmp_path / "events.jsonl"
    done = produce_sample(
        "--bootstrap-servers", kafka_bootstrap, "--topic-pos", pos, "--topic-crm", crm,
        "--count", "500", "--seed", "5", "--dump", str(dump),
        "--schema-registry-url", schema_registry.url, "--schema", str(schema_file),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    dumped = read_dump(dump)
    n_pos = sum(d["topic"] == pos for d in dumped)
    messages = consume_topic(pos, n_pos) + consume_topic(crm, len(dumped) - n_pos)
    assert len(messages) == 500

    # Registering the same schema again returns the id the producer got for each subject.
    ids = {t: schema_registry.register(f"{t}-value", schema_text) for t in (pos, crm)}
    for msg in messages:
        value = msg.value() or b""
        assert value[:1] == b"\x00"
        assert int.from_bytes(value[1:5], "big") == ids[msg.topic() or ""]

    # The service's reader schema is v1: it reads v1 and v2 writers alike.
    decoder = _registry_decoder(schema_registry, V1_TEXT)
    by_id = {d["event"]["event_id"]: d["event"] for d in dumped}
    for msg in messages:
        record = decoder.decode(msg.value())
        assert record == by_id[record["event_id"]]
    check_order_and_keys(messages, dumped, lambda m: decoder.decode(m.value())["event_id"])


def test_unreachable_broker_is_one_clear_line_and_a_quick_failure() -> None:
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    done = produce_sample("--bootstrap-servers", address, "--connect-timeout", "2", timeout=60)
    elapsed = time.monotonic() - started
    assert done.returncode == 2
    assert elapsed < 20, "the connect timeout bounds the wait"
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert address in lines[0] and "cannot reach Kafka" in lines[0]
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_missing_topic_is_refused_unless_asked_to_create_it(
    kafka_bootstrap: str, kafka_admin: AdminClient, consume_topic: Callable[..., list[Message]]
) -> None:
    run = uuid.uuid4().hex[:10]
    pos, crm = f"sample-pos-{run}", f"sample-crm-{run}"
    common = ["--bootstrap-servers", kafka_bootstrap, "--topic-pos", pos, "--topic-crm", crm]

    refused = produce_sample(*common, "--count", "10")
    assert refused.returncode == 2
    assert pos in refused.stderr and "--create-topics" in refused.stderr
    assert "Traceback" not in refused.stderr

    try:
        done = produce_sample(*common, "--count", "200", "--create-topics", "4", "--quiet")
        assert done.returncode == 0, done.stderr
        assert done.stdout == "", "--quiet prints no summary"
        topics = kafka_admin.list_topics(timeout=10).topics
        assert len(topics[pos].partitions) == 4 and len(topics[crm].partitions) == 4
        # Existing topics are fine: a second run appends.
        again = produce_sample(*common, "--count", "50", "--create-topics", "4")
        assert again.returncode == 0, again.stderr
        assert len(consume_topic(pos, 1)) + len(consume_topic(crm, 1)) == 250
    finally:
        for future in kafka_admin.delete_topics([pos, crm], operation_timeout=10).values():
            # Best effort: a leftover topic harms no later test.
            with contextlib.suppress(Exception):
                future.result(timeout=15)


def test_failed_deliveries_are_counted_and_exit_non_zero(
    kafka_bootstrap: str, kafka_admin: AdminClient
) -> None:
    topic = f"sample-tiny-{uuid.uuid4().hex[:10]}"
    # The broker refuses every batch: a record of a ProfileChange is bigger than 120 bytes.
    futures = kafka_admin.create_topics(
        [NewTopic(topic, num_partitions=1, config={"max.message.bytes": "120"})]
    )
    futures[topic].result(timeout=30)
    wait_for_leaders(kafka_admin, topic)
    try:
        done = produce_sample(
            "--bootstrap-servers", kafka_bootstrap, "--topic-pos", topic, "--topic-crm", topic,
            "--count", "50",
        )  # fmt: skip
        assert done.returncode == 1
        assert "produced 50 events" in done.stdout and "50 failed" in done.stdout
        assert "too large" in done.stdout
        assert "Traceback" not in done.stderr
    finally:
        for future in kafka_admin.delete_topics([topic], operation_timeout=10).values():
            with contextlib.suppress(Exception):
                future.result(timeout=15)


def test_rate_paces_the_stream(
    make_topic: Callable[..., str],
    consume_topic: Callable[..., list[Message]],
    kafka_bootstrap: str,
) -> None:
    topic = make_topic(partitions=1, prefix="rate")
    started = time.monotonic()
    done = produce_sample(
        "--bootstrap-servers", kafka_bootstrap, "--topic-pos", topic, "--topic-crm", topic,
        "--count", "100", "--rate", "100",
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    # 100 events at 100/s cannot finish in less than 0.99 s (the first one goes at once).
    assert elapsed >= 0.99
    reported = float(re.search(r"in ([\d.]+) s", done.stdout).group(1))  # type: ignore[union-attr]
    assert reported >= 0.99
    assert len(consume_topic(topic, 100)) == 100


def test_sigterm_stops_flushes_and_reports_what_was_produced(
    make_topic: Callable[..., str],
    consume_topic: Callable[..., list[Message]],
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    topic = make_topic(partitions=2, prefix="stop")
    dump = tmp_path / "events.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "consumer", "produce-sample", "--no-progress",
            "--bootstrap-servers", kafka_bootstrap, "--topic-pos", topic, "--topic-crm", topic,
            "--count", "1000000", "--rate", "500", "--dump", str(dump),
        ],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not dump.exists() or dump.read_text("utf-8").count("\n") < 100:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no events produced within 60 s"
            time.sleep(0.05)
        proc.terminate()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "(interrupted)" in out and "0 failed" in out and "Traceback" not in err
    produced = read_dump(dump)
    assert 100 <= len(produced) < 1_000_000
    assert f"produced {len(produced):,} events" in out
    # Everything it said it produced was flushed to the broker before exiting.
    assert len(consume_topic(topic, len(produced))) == len(produced)


def test_unreachable_registry_fails_before_producing(
    make_topic: Callable[..., str], kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = make_topic(partitions=1, prefix="noreg")
    url = f"http://127.0.0.1:{free_port()}"
    done = produce_sample(
        "--bootstrap-servers", kafka_bootstrap, "--topic-pos", topic, "--topic-crm", topic,
        "--schema-registry-url", url, "--dump", str(tmp_path / "d.jsonl"),
    )  # fmt: skip
    assert done.returncode == 2
    assert url in done.stderr and "schema registry" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "d.jsonl").exists(), "nothing was produced"


def test_registry_credentials_never_show_in_errors(
    make_topic: Callable[..., str], kafka_bootstrap: str
) -> None:
    topic = make_topic(partitions=1, prefix="auth")
    with SchemaRegistryServer(user_info="sample:s3cret-pw") as registry:
        host = registry.url.removeprefix("http://")
        done = produce_sample(
            "--bootstrap-servers", kafka_bootstrap, "--topic-pos", topic, "--topic-crm", topic,
            "--count", "5", "--schema-registry-url", f"http://sample:wrong-pw@{host}",
        )  # fmt: skip
        assert done.returncode == 2
        assert "401" in done.stderr or "Unauthorized" in done.stderr
        assert "wrong-pw" not in done.stderr + done.stdout
        ok = produce_sample(
            "--bootstrap-servers", kafka_bootstrap, "--topic-pos", topic, "--topic-crm", topic,
            "--count", "5", "--schema-registry-url", f"http://sample:s3cret-pw@{host}",
        )  # fmt: skip
        assert ok.returncode == 0, ok.stderr
        assert "s3cret-pw" not in ok.stderr + ok.stdout
