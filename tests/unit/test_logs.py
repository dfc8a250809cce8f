"""Log lines as an operator (or their log pipeline) sees them: shape, format, no secrets."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime

import pytest

from consumer import logs
from consumer.config import Secret


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    quiet = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)
    for name, lvl in quiet.items():
        logging.getLogger(name).setLevel(lvl)


def _json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.mark.usefixtures("restore_logging")
class TestJson:
    def test_one_object_per_line_with_envelope_and_fields(self) -> None:
        out = io.StringIO()
        logs.configure("info", "json", out)
        logging.getLogger("profile_sync.pipeline").info(
            "batch accepted", extra={"fields": {"batch_id": "b-1", "rows": 812, "bytes": 9000}}
        )
        (line,) = _json_lines(out)
        assert line["level"] == "info"
        assert line["logger"] == "profile_sync.pipeline"
        assert line["event"] == "batch accepted"
        assert (line["batch_id"], line["rows"], line["bytes"]) == ("b-1", 812, 9000)
        ts = datetime.fromisoformat(str(line["ts"]))
        assert str(line["ts"]).endswith("Z") and ts.utcoffset() is not None
        assert ts.utcoffset().total_seconds() == 0  # type: ignore[union-attr]

    def test_message_arguments_are_formatted(self) -> None:
        out = io.StringIO()
        logs.configure("info", "json", out)
        logging.getLogger("x").warning("resumed %d partitions", 4)
        assert _json_lines(out)[0]["event"] == "resumed 4 partitions"

    def test_fields_cannot_overwrite_the_envelope(self) -> None:
        out = io.StringIO()
        logs.configure("info", "json", out)
        logging.getLogger("x").info("real", extra={"fields": {"event": "fake", "level": "x"}})
        (line,) = _json_lines(out)
        assert line["event"] == "real" and line["level"] == "info"
        assert line["event_"] == "fake" and line["level_"] == "x"

    def test_values_json_cannot_encode_become_strings(self) -> None:
        out = io.StringIO()
        logs.configure("info", "json", out)
        logging.getLogger("x").info("odd", extra={"fields": {"path": object(), "n": {1, 2}}})
        line = _json_lines(out)[0]
        assert str(line["path"]).startswith("<object object")

    def test_exception_traceback_is_in_the_same_line(self) -> None:
        out = io.StringIO()
        logs.configure("info", "json", out)
        try:
            raise RuntimeError("kaput")
        except RuntimeError:
            logging.getLogger("x").exception("failed")
        (line,) = _json_lines(out)
        assert "RuntimeError: kaput" in str(line["exc"])

    def test_level_setting_filters(self) -> None:
        out = io.StringIO()
        logs.configure("warning", "json", out)
        logging.getLogger("x").info("hidden")
        logging.getLogger("x").error("shown")
        assert [line["event"] for line in _json_lines(out)] == ["shown"]

    def test_debug_level_shows_debug(self) -> None:
        out = io.StringIO()
        logs.configure("DEBUG", "json", out)
        logging.getLogger("x").debug("details")
        assert [line["event"] for line in _json_lines(out)] == ["details"]

    def test_noisy_http_libraries_are_quiet_at_info(self) -> None:
        out = io.StringIO()
        logs.configure("info", "json", out)
        logging.getLogger("httpx").info('HTTP Request: POST ... "HTTP/1.1 200 OK"')
        logging.getLogger("httpcore.connection").debug("connect_tcp.started")
        logging.getLogger("httpx").warning("kept")
        assert [line["event"] for line in _json_lines(out)] == ["kept"]

    def test_configure_twice_replaces_instead_of_duplicating(self) -> None:
        first, second = io.StringIO(), io.StringIO()
        logs.configure("info", "json", first)
        logs.configure("info", "json", second)
        logging.getLogger("x").info("once")
        assert first.getvalue() == ""
        assert len(_json_lines(second)) == 1

    def test_bad_level_or_format_is_refused(self) -> None:
        with pytest.raises(ValueError, match="level"):
            logs.configure("loud", "json", io.StringIO())
        with pytest.raises(ValueError, match="format"):
            logs.configure("info", "xml", io.StringIO())


@pytest.mark.usefixtures("restore_logging")
class TestText:
    def test_text_when_asked(self) -> None:
        out = io.StringIO()
        logs.configure("info", "text", out)
        logging.getLogger("profile_sync.app").info(
            "starting", extra={"fields": {"topics": ["a", "b"], "note": "two words"}}
        )
        line = out.getvalue().rstrip("\n")
        assert " INFO " in line and "profile_sync.app starting" in line
        assert 'topics=["a", "b"]' in line
        assert "note='two words'" in line
        assert not line.startswith("{")

    def test_auto_is_text_on_a_terminal_and_json_otherwise(self) -> None:
        tty, pipe = _Tty(), io.StringIO()
        logs.configure("info", "auto", tty)
        logging.getLogger("x").info("hello")
        logs.configure("info", "auto", pipe)
        logging.getLogger("x").info("hello")
        assert not tty.getvalue().startswith("{")
        assert json.loads(pipe.getvalue())["event"] == "hello"

    def test_text_traceback_follows_the_line(self) -> None:
        out = io.StringIO()
        logs.configure("info", "text", out)
        try:
            raise KeyError("gone")
        except KeyError:
            logging.getLogger("x").exception("lookup failed")
        first, *rest = out.getvalue().splitlines()
        assert first.endswith("lookup failed")
        assert any("KeyError" in r for r in rest)


@pytest.mark.usefixtures("restore_logging")
class TestRedaction:
    @pytest.mark.parametrize("fmt", ["json", "text"])
    def test_secret_looking_fields_are_masked(self, fmt: str) -> None:
        out = io.StringIO()
        logs.configure("info", fmt, out)
        secrets = {
            "token": "tok-123456",
            "password": "hunter2-pw",
            "sasl.password": "sasl-pw-99",
            "client_secret": "cs-777777",
            "Authorization": "Bearer abc.def.ghi",
            "basic.auth.user.info": "user:reg-pw",
            "config": {"ssl.key.password": "nested-pw", "nested": [{"api_key": "k-000"}]},
        }
        logging.getLogger("x").info("settings", extra={"fields": secrets})
        text = out.getvalue()
        for leaked in ("tok-123456", "hunter2-pw", "sasl-pw-99", "cs-777777", "abc.def.ghi"):
            assert leaked not in text
        for leaked in ("reg-pw", "nested-pw", "k-000"):
            assert leaked not in text
        assert "***" in text

    def test_where_a_secret_lives_is_not_masked(self) -> None:
        out = io.StringIO()
        logs.configure("info", "json", out)
        logging.getLogger("x").info(
            "target token loaded",
            extra={"fields": {"token_file": "/var/run/secrets/target/token", "rows": 3}},
        )
        line = _json_lines(out)[0]
        assert line["token_file"] == "/var/run/secrets/target/token"
        assert line["rows"] == 3

    def test_bearer_and_key_value_pairs_in_messages_are_masked(self) -> None:
        out = io.StringIO()
        logs.configure("info", "json", out)
        logging.getLogger("x").error(
            "call failed: headers %s, url %s",
            "{'Authorization': 'Bearer eyJhbGciOi.payload.sig'}",
            "https://svc:reg-secret@registry.local/subjects password=pw123",
        )
        event = str(_json_lines(out)[0]["event"])
        for leaked in ("eyJhbGciOi", "reg-secret", "pw123"):
            assert leaked not in event
        assert "https://***@registry.local/subjects" in event
        assert "call failed" in event

    def test_secrets_inside_string_fields_and_tracebacks_are_masked(self) -> None:
        out = io.StringIO()
        logs.configure("info", "json", out)
        try:
            raise ValueError("upstream said: Authorization: Bearer leaked-token-1")
        except ValueError as exc:
            logging.getLogger("x").exception("failed", extra={"fields": {"error": str(exc)}})
        line = _json_lines(out)[0]
        assert "leaked-token-1" not in json.dumps(line)
        assert "ValueError" in str(line["exc"])

    def test_secret_objects_print_masked(self) -> None:
        out = io.StringIO()
        logs.configure("info", "json", out)
        logging.getLogger("x").info("cfg", extra={"fields": {"sasl": Secret("plain-pw")}})
        assert "plain-pw" not in out.getvalue()

    def test_callers_fields_are_not_mutated(self) -> None:
        out = io.StringIO()
        logs.configure("info", "json", out)
        fields = {"token": "keep-me"}
        logging.getLogger("x").info("x", extra={"fields": fields})
        assert fields == {"token": "keep-me"}

    @pytest.mark.parametrize(
        ("key", "secret"),
        [
            ("token", True),
            ("sasl.password", True),
            ("ssl.key.password", True),
            ("Authorization", True),
            ("schema_registry_user_info", True),
            ("token_file", False),
            ("token_reloads", False),
            ("rows", False),
            ("topic", False),
        ],
    )
    def test_secret_key_detection(self, key: str, secret: bool) -> None:
        assert logs.is_secret_key(key) is secret
