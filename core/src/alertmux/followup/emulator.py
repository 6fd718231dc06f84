"""Building blocks of facility emulators: a real HTTP server on loopback, a clock tests can move, a rate limiter.

An emulator is a threaded ``http.server`` bound to 127.0.0.1 on a free port; its handler is a plain function
``handle(request) -> Reply``, so a facility's emulator is a routing table and its state, nothing else.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request as an emulator handler sees it."""

    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON (raises ValueError when it is not)."""
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, str]:
        """Form fields from the query string and an ``application/x-www-form-urlencoded`` body (last one wins)."""
        fields = {k: v[-1] for k, v in self.query.items()}
        if "form-urlencoded" in self.headers.get("content-type", ""):
            fields.update({k: v[-1] for k, v in parse_qs(self.body.decode(), keep_blank_values=True).items()})
        return fields

    def param(self, name: str) -> str | None:
        """The last value of a query parameter."""
        values = self.query.get(name)
        return values[-1] if values else None


@dataclass(slots=True)
class Reply:
    """What the handler answers."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    """Wait this long before answering (a slow facility, or a timeout the client must survive)."""
    drop: bool = False
    """Close the connection without answering (after the handler already acted: an ambiguous failure)."""

    @classmethod
    def json(cls, status: int, document: Any, **kwargs: Any) -> Reply:
        """A JSON reply (compact, as Django REST framework renders it)."""
        return cls(status, json.dumps(document, separators=(",", ":")).encode(), **kwargs)

    @classmethod
    def text(cls, status: int, text: str, **kwargs: Any) -> Reply:
        """A plain-text reply."""
        return cls(status, text.encode(), content_type="text/plain; charset=utf-8", **kwargs)


Handler = Callable[[Request], Reply]


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 serving one handler function; use it as a context manager."""

    def __init__(self, handle: Handler, name: str = "emulator") -> None:
        """Bind a free port (the server starts on ``__enter__``)."""
        self.handle = handle
        self.requests: list[Request] = []
        """Every request received, in order (tests read what a client really sent)."""
        outer = self

        class _Handler(BaseHTTPRequestHandler):
            server_version = name
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(
                    method=self.command, path=parts.path, query=parse_qs(parts.query, keep_blank_values=True),
                    headers={k.lower(): v for k, v in self.headers.items()}, body=self.rfile.read(length),
                )
                outer.requests.append(request)
                try:
                    reply = outer.handle(request)
                except Exception as exc:  # noqa: BLE001 - an emulator bug is a 500, as a real server's would be
                    reply = Reply.text(500, f"emulator error: {type(exc).__name__}: {exc}")
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if reply.drop:
                    self.close_connection = True
                    return
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", reply.content_type)
                    self.send_header("Content-Length", str(len(reply.body)))
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up waiting (a slow-answer test): nothing to do

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
                pass  # requests are kept in outer.requests; stderr stays clean

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        # A short poll interval: shutdown() waits up to one interval, and tests start many servers.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name=name, daemon=True)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class Clock:
    """Wall-clock time plus an offset that tests (and the demo) move forward instead of sleeping."""

    def __init__(self) -> None:
        """Start at the real time."""
        self._offset = timedelta()
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The emulated current time (UTC)."""
        with self._lock:
            return datetime.now(UTC) + self._offset

    def advance(self, seconds: float) -> None:
        """Move the emulated time forward."""
        with self._lock:
            self._offset += timedelta(seconds=seconds)


class RateLimiter:
    """At most ``limit`` calls per ``period_s`` per key (a sliding window), as a throttled API does."""

    def __init__(self, limit: int | None, period_s: float = 1.0) -> None:
        """``limit`` None: no limit."""
        self.limit = limit
        self.period_s = period_s
        self._calls: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def wait_needed(self, key: str) -> float:
        """0 when the call may proceed (and is counted), else the seconds until it could."""
        if self.limit is None:
            return 0.0
        now = time.monotonic()
        with self._lock:
            calls = self._calls.setdefault(key, deque())
            while calls and now - calls[0] >= self.period_s:
                calls.popleft()
            if len(calls) >= self.limit:
                return self.period_s - (now - calls[0])
            calls.append(now)
            return 0.0


@dataclass(slots=True)
class Fault:
    """A failure to inject into the next call matching ``method`` and the start of ``path``."""

    method: str
    path: str
    kind: str = "drop"
    """``drop``: act, then close the connection unanswered; ``slow``: act, then answer after ``seconds``;
    ``status``: answer ``status`` without acting."""
    status: int = 503
    seconds: float = 0.0


class Faults:
    """Injected failures, each used once by the first call that matches it."""

    def __init__(self) -> None:
        """No failures pending."""
        self.pending: list[Fault] = []
        self._lock = threading.Lock()

    def inject(self, fault: Fault) -> None:
        """Fail the next matching call."""
        with self._lock:
            self.pending.append(fault)

    def take(self, request: Request) -> Fault | None:
        """The fault for this call, if one matches (removed: it fires once)."""
        with self._lock:
            for fault in self.pending:
                if fault.method == request.method and request.path.startswith(fault.path):
                    self.pending.remove(fault)
                    return fault
        return None

    @staticmethod
    def apply(fault: Fault | None, reply: Reply) -> Reply:
        """Make an answer (of a call that was acted on) drop or slow as the fault says."""
        if fault is not None:
            reply.drop = fault.kind == "drop"
            reply.delay_s = fault.seconds if fault.kind == "slow" else 0.0
        return reply
