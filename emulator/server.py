"""Serving the emulator on a real port: ``profile-sync emulator`` and the test fixture.

A small WSGI bridge on the standard library's ``ThreadingHTTPServer``: one thread per
connection, HTTP/1.1 keep-alive (the consumer reuses its connections), every response
written with one ``sendall``. A background thread applies due batches every
``tick_seconds``. ``DropConnection`` from the app closes the socket without a response.

``EmulatorServer(app, host, port).start()`` serves in background threads (tests, benches);
``run(args)`` is the CLI entry point: it prints ``emulator listening on URL`` on stdout and
stops cleanly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import signal
import socket
import sys
import threading
import time
import traceback
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any
from urllib.parse import unquote

from emulator.app import DropConnection, EmulatorApp
from emulator.config import EmulatorConfig, add_arguments
from emulator.state import APPLY_STEP_ROWS

# An idle keep-alive connection is closed after this long; long enough for any client pool
# between calls, short enough that abandoned connections do not pile up threads.
IDLE_TIMEOUT_SECONDS = 120.0
# A body the app did not read is drained in chunks of this size so the connection stays
# usable (closing with unread bytes would reset it before the client reads the answer).
_DRAIN_CHUNK = 1024 * 1024
# How long stop() waits for connection threads to finish after their sockets are shut.
_JOIN_SECONDS = 5.0
_GC_THRESHOLD = 100_000


class _Body(io.RawIOBase):
    """``wsgi.input``: the request body, at most Content-Length bytes of the connection."""

    def __init__(self, rfile: Any, length: int) -> None:
        self._rfile = rfile
        self.remaining = length

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0 or size > self.remaining:
            size = self.remaining
        if size <= 0:
            return b""
        data: bytes = self._rfile.read(size)
        self.remaining -= len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        while self.remaining > 0:
            if not self.read(_DRAIN_CHUNK):
                break


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "target-profile-emulator"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = IDLE_TIMEOUT_SECONDS
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # per-request logging would cost more than the request; see /_emulator/requests

    def _serve(self) -> None:
        path, _, query = self.path.partition("?")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": self.command,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote(path),
            "QUERY_STRING": query,
            "RAW_URI": self.path,
            "SERVER_NAME": self.server.host,
            "SERVER_PORT": str(self.server.port),
            "SERVER_PROTOCOL": self.request_version,
            "REMOTE_ADDR": self.client_address[0],
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for key, value in self.headers.items():
            name = key.upper().replace("-", "_")
            if name not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                name = "HTTP_" + name
            if name in environ:
                environ[name] += "," + value
            else:
                environ[name] = value
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            try:
                data = self._read_chunked()
            except ValueError:
                self._write(400, [("Content-Type", "text/plain")], b"bad chunked body", True)
                return
            environ["CONTENT_LENGTH"] = str(len(data))
            body = _Body(io.BytesIO(data), len(data))
        else:
            try:
                length = max(0, int(self.headers.get("Content-Length") or 0))
            except ValueError:
                self._write(400, [("Content-Type", "text/plain")], b"bad Content-Length", True)
                return
            body = _Body(self.rfile, length)
        environ["wsgi.input"] = body
        started: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> Any:
            started[:] = [status, headers]
            return lambda _data: None

        try:
            chunks = self.server.app(environ, start_response)
        except DropConnection:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        except Exception:
            # A bug in the emulator: answer 500 rather than hang the client, and show it.
            traceback.print_exc()
            self._write(500, [("Content-Type", "text/plain")], b"emulator error", True)
            return
        payload = b"".join(chunks)
        body.drain()
        status, headers = started
        self._write_raw(status, headers, payload)

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size_line = self.rfile.readline(65537)
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline(65537)

    def _write(self, code: int, headers: list[tuple[str, str]], body: bytes, close: bool) -> None:
        if close:
            self.close_connection = True
        self._write_raw(f"{code} {self.responses.get(code, ('',))[0]}", headers, body)

    def _write_raw(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        lines = [f"{self.protocol_version} {status}", f"Date: {_http_date()}"]
        lines.append(f"Server: {self.server_version}")
        has_length = False
        for key, value in headers:
            if key.lower() == "content-length":
                has_length = True
            lines.append(f"{key}: {value}")
        if not has_length:
            lines.append(f"Content-Length: {len(body)}")
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve


_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    app: EmulatorApp
    host: str
    port: int

    def __init__(self, address: tuple[str, int], app: EmulatorApp) -> None:
        self.app = app
        self._conn_lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}
        super().__init__(address, _Handler)
        self.host, self.port = str(self.server_address[0]), int(self.server_address[1])

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._conn_lock:
            self._connections[request] = threading.current_thread()
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._conn_lock:
                self._connections.pop(request, None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            return  # a client went away: nothing to report
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Shut every open connection so its thread ends, and wait for those threads."""
        with self._conn_lock:
            open_now = list(self._connections.items())
        for sock, _ in open_now:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + _JOIN_SECONDS
        for _, thread in open_now:
            thread.join(max(0.0, deadline - time.monotonic()))


class EmulatorServer:
    """The app on a real socket, served from background threads."""

    def __init__(self, app: EmulatorApp, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self._server = _Server((host, port), app)
        self.host = self._server.host
        self.port = self._server.port
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> EmulatorServer:
        # Batches apply in steps with the lock let go between them (the ticker, and reads).
        self.app.store.read_step_rows = APPLY_STEP_ROWS
        serve = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="emulator-http",
            daemon=True,
        )
        ticker = threading.Thread(target=self._tick, name="emulator-ticker", daemon=True)
        self._threads = [serve, ticker]
        for thread in self._threads:
            thread.start()
        return self

    def _tick(self) -> None:
        interval = self.app.config.tick_seconds
        while not self._stopping.wait(interval):
            self.app.tick(APPLY_STEP_ROWS)

    def stop(self) -> None:
        """Stop accepting, close open connections, stop the ticker; idempotent."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self.app.close()
        if self._threads:
            self._server.shutdown()
        self._server.server_close()
        self._server.close_connections()
        for thread in self._threads:
            thread.join(_JOIN_SECONDS)

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- CLI hooks (profile-sync emulator)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        config = EmulatorConfig.from_args(args)
    except ValueError as exc:
        print(f"emulator: {exc}", file=sys.stderr)
        return 2
    try:
        server = EmulatorServer(EmulatorApp(config), args.host, args.port)
    except OSError as exc:
        print(f"emulator: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    # Applying a batch creates several container objects per row; with the default gen-0
    # threshold (700) the cyclic GC runs thousands of times per 100k-row batch and doubles
    # the apply time. This is the emulator's own process, so a larger threshold is harmless.
    gc.set_threshold(_GC_THRESHOLD, 50, 100)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    server.start()
    print(f"emulator listening on {server.url}", flush=True)
    auth = "on" if config.token or config.token_file else "off"
    rate = (
        f"{config.bulk_rate_limit}/{config.bulk_rate_window:g}s"
        if config.bulk_rate_limit
        else "off"
    )
    print(
        f"emulator: client={config.client} bulk_apply_delay={config.bulk_apply_delay}s "
        f"override_mode={config.override_mode} decoding={config.decoding} "
        f"bulk_rate_limit={rate} status_retention={config.status_retention_count or 'all'}/"
        f"{config.status_retention_seconds:g}s bulk_loss_rate={config.bulk_loss_rate:g} "
        f"auth={auth}",
        file=sys.stderr,
        flush=True,
    )
    try:
        while not stop.wait(1.0):
            pass
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("emulator stopped", file=sys.stderr, flush=True)
    return 0
