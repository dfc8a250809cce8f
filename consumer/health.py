"""Health state and the one HTTP port: ``/metrics``, ``/livez``, ``/readyz``.

``Health`` is plain state fed by the consume loop (``beat`` every turn, ``set_assigned``,
``set_fatal``, ``set_stopping``) and read by the probes. Its rules, for Kubernetes:

- **live** while the loop turned within ``liveness_timeout`` seconds. The loop keeps turning
  while Target is down (partitions are paused, polling goes on), so a long outage never
  fails liveness; only a stuck process does, and restarting that is the right cure. Before
  the first turn the same timeout counts from start-up; once shutdown has started the
  process stays live (shutdown has its own timeout, and the pod's grace period).
- **ready** once the loop has turned, until a fatal error or shutdown. Partition
  assignment is *not* part of it by default: a consumer serves no traffic, so readiness
  only gates rollouts and PodDisruptionBudgets, and a replica that holds no partitions
  (during a rebalance, or beyond the partition count) is a healthy standby, not a broken
  pod. Assignment is exported as ``profile_sync_partitions_assigned`` instead.
  ``/readyz?assigned=1`` adds the stricter rule (ready only with partitions) for those
  who want it.

``HealthServer`` serves those and the Prometheus exposition of a registry on one port,
from a daemon thread (stdlib ``ThreadingHTTPServer``; nothing here touches the pipeline).
"""

from __future__ import annotations

import gzip
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted

from consumer.clock import Clock
from consumer.errors import ConfigError

if TYPE_CHECKING:
    from consumer.metrics import Metrics

log = logging.getLogger("profile_sync.health")

# How long stop() waits for the server thread; serve_forever notices shutdown within 0.5 s.
_STOP_JOIN_SECONDS = 5.0
# Probes and scrapes are tiny; a client that sends nothing for this long is dropped.
_REQUEST_TIMEOUT_SECONDS = 10.0


class Health:
    """What the probes report. Written by the consume loop, read by server threads."""

    def __init__(
        self, clock: Clock, liveness_timeout: float, metrics: Metrics | None = None
    ) -> None:
        self._clock = clock
        self._timeout = liveness_timeout
        self._metrics = metrics
        self._started_at = clock.monotonic()
        self._last_beat: float | None = None
        self._partitions = 0
        self._fatal: str | None = None
        self._stopping = False
        self._conditions: dict[str, str] = {}
        self._broken: str | None = None
        # A callable saying whether repartition partitions are being restored (their
        # owner's memory is read back from the changelog): not ready meanwhile.
        self.restoring: Callable[[], bool] = lambda: False
        self._publish()

    def beat(self) -> None:
        """The consume loop turned. Called every turn: keep it cheap."""
        first = self._last_beat is None
        self._last_beat = self._clock.monotonic()
        if first:
            self._publish()

    def set_assigned(self, partitions: int) -> None:
        self._partitions = partitions

    def set_fatal(self, reason: str) -> None:
        """Not ready from now on, whatever else happens."""
        self._fatal = reason or "fatal error"
        self._publish()

    def set_condition(self, name: str, reason: str | None) -> None:
        """Not ready while ``reason`` is set for ``name`` (e.g. dead letters blocked);
        ``None`` clears it. May be called from any thread."""
        if reason is None:
            self._conditions.pop(name, None)
        else:
            self._conditions[name] = reason
        self._publish()

    def set_broken(self, reason: str) -> None:
        """Not live from now on: a part of the process died and only a restart cures it."""
        self._broken = reason
        self._publish()

    def set_stopping(self) -> None:
        """Shutdown started: not ready, still live."""
        self._stopping = True
        self._publish()

    def live(self) -> tuple[bool, str]:
        if self._broken is not None:
            return False, f"broken: {self._broken}"
        if self._stopping:
            return True, "ok: shutting down"
        now = self._clock.monotonic()
        last = self._last_beat
        if last is None:
            waited = now - self._started_at
            if waited <= self._timeout:
                return True, "ok: starting"
            return False, (
                f"the consume loop has not turned since start-up {waited:.0f}s ago "
                f"(limit {self._timeout:g}s)"
            )
        age = now - last
        if age <= self._timeout:
            return True, "ok"
        return False, (f"the consume loop last turned {age:.0f}s ago (limit {self._timeout:g}s)")

    def ready(self, require_assignment: bool = False) -> tuple[bool, str]:
        if self._fatal is not None:
            return False, f"fatal: {self._fatal}"
        if self._stopping:
            return False, "shutting down"
        for name, reason in list(self._conditions.items()):
            return False, f"{name}: {reason}"
        if self._last_beat is None:
            return False, "starting: the consume loop has not turned yet"
        if self.restoring():
            return False, "restoring the owner's memory from the changelog"
        if require_assignment and self._partitions <= 0:
            return False, "no partitions assigned"
        return True, f"ok: {self._partitions} partitions assigned"

    def _publish(self) -> None:
        if self._metrics is not None:
            self._metrics.ready.set(1 if self.ready()[0] else 0)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Restarting the service must not wait for TIME_WAIT sockets of the previous run.
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class HealthServer:
    """``/metrics``, ``/livez`` and ``/readyz`` on ``host:port``, from a daemon thread.

    ``registry=None`` (metrics disabled) answers ``/metrics`` with 404.
    """

    def __init__(
        self, host: str, port: int, health: Health, registry: CollectorRegistry | None
    ) -> None:
        self._host = host
        self._requested_port = port
        self._health = health
        self._registry = registry
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind now (raises ``ConfigError`` if the address is unusable), serve in background."""
        if self._server is not None:
            return
        server_class = _Server6 if ":" in self._host else _Server
        try:
            server = server_class((self._host, self._requested_port), self._handler())
        except OSError as exc:
            raise ConfigError(
                {
                    "PROFILE_SYNC_HTTP_PORT": f"cannot listen on "
                    f"{self._host}:{self._requested_port}: {exc.strerror or exc}"
                }
            ) from exc
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="health-server", daemon=True
        )
        self._thread.start()
        log.debug("health server listening", extra={"fields": {"port": self.port}})

    @property
    def port(self) -> int:
        """The bound port (the real one when 0 was asked for); the requested one before start."""
        if self._server is None:
            return self._requested_port
        return int(self._server.server_address[1])

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(_STOP_JOIN_SECONDS)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        health = self._health
        registry = self._registry

        class Handler(BaseHTTPRequestHandler):
            server_version = "profile-sync"
            sys_version = ""
            timeout = _REQUEST_TIMEOUT_SECONDS

            def do_GET(self) -> None:
                self._route(with_body=True)

            def do_HEAD(self) -> None:
                self._route(with_body=False)

            def _route(self, with_body: bool) -> None:
                url = urlsplit(self.path)
                if url.path == "/metrics":
                    self._metrics(url.query, with_body)
                elif url.path == "/livez":
                    self._probe(*health.live(), with_body=with_body)
                elif url.path == "/readyz":
                    strict = parse_qs(url.query).get("assigned", ["0"])[-1] in ("1", "true")
                    self._probe(*health.ready(require_assignment=strict), with_body=with_body)
                else:
                    self._send(404, b"not found: try /metrics, /livez or /readyz\n", with_body)

            def _probe(self, ok: bool, detail: str, with_body: bool) -> None:
                self._send(200 if ok else 503, (detail + "\n").encode(), with_body)

            def _metrics(self, query: str, with_body: bool) -> None:
                if registry is None:
                    self._send(
                        404, b"metrics are disabled (PROFILE_SYNC_METRICS_ENABLED)\n", with_body
                    )
                    return
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                names = parse_qs(query).get("name[]")
                source = registry.restricted_registry(names) if names else registry
                try:
                    body = encoder(source)
                except Exception:
                    log.exception("metrics exposition failed")
                    self._send(500, b"metrics exposition failed\n", with_body)
                    return
                gzipped = gzip_accepted(self.headers.get("Accept-Encoding", ""))
                self._send(200, body, with_body, content_type, gzipped)

            def _send(
                self,
                status: int,
                body: bytes,
                with_body: bool,
                content_type: str = "text/plain; charset=utf-8",
                gzipped: bool = False,
            ) -> None:
                if gzipped:
                    body = gzip.compress(body)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                if gzipped:
                    self.send_header("Content-Encoding", "gzip")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                if with_body:
                    self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                # Probes arrive every few seconds: per-request lines only at debug.
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("http request", extra={"fields": {"request": format % args}})

        return Handler
