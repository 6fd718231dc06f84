"""alertmux.http against real HTTP servers on loopback: retries, Retry-After, timeouts, tokens, the loopback guard."""

from __future__ import annotations

import asyncio
import logging
import socket
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from alertmux.http import (
    HttpError,
    NetworkPolicyError,
    RetryPolicy,
    ensure_bootstrap_allowed,
    make_client,
    redact_url,
    request,
    retry_after_seconds,
)
from alertmux.serve import serve_in_thread

TOKEN = "tok-" + "9f8e7d6c5b4a"


class Scripted:
    """A server answering from a script of (status, headers) before it says 200, recording what it received."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str]]] = []
        self.received: list[Request] = []
        self.headers: list[dict[str, str]] = []

    def app(self) -> Starlette:
        async def endpoint(request: Request) -> JSONResponse:
            self.received.append(request)
            self.headers.append(dict(request.headers))
            if request.url.path == "/slow":
                await asyncio.sleep(1.0)
            if self.script:
                status, headers = self.script.pop(0)
                return JSONResponse({"detail": f"scripted {status}"}, status, headers)
            return JSONResponse({"ok": True, "path": request.url.path})

        return Starlette(routes=[Route("/{path:path}", endpoint, methods=["GET", "PUT", "POST"])])


@pytest.fixture
def server():
    scripted = Scripted()
    with serve_in_thread(scripted.app()) as url:
        yield scripted, url


def recorder() -> tuple[list[float], RetryPolicy]:
    waits: list[float] = []
    return waits, RetryPolicy(attempts=4, backoff=0.01, backoff_max=0.05, sleep=waits.append)


def test_503_and_429_are_retried_waiting_what_retry_after_says(server) -> None:
    scripted, url = server
    scripted.script = [(503, {"Retry-After": "2"}), (429, {"Retry-After": "7"})]
    waits, policy = recorder()
    with make_client(url) as client:
        response = request(client, "GET", "/x", policy=policy)
    assert response.json()["ok"] and len(scripted.received) == 3
    assert waits == [2.0, 7.0]


def test_retry_after_as_an_http_date_and_its_cap() -> None:
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    dated = httpx.Response(429, headers={"Retry-After": format_datetime(now + timedelta(seconds=30), usegmt=True)})
    assert retry_after_seconds(dated, now) == pytest.approx(30.0)
    assert retry_after_seconds(httpx.Response(429, headers={"Retry-After": "soon"})) is None
    assert retry_after_seconds(httpx.Response(429)) is None


def test_retry_after_is_capped(server) -> None:
    scripted, url = server
    scripted.script = [(503, {"Retry-After": "86400"})]
    waits: list[float] = []
    policy = RetryPolicy(attempts=2, max_retry_after=3.0, sleep=waits.append)
    with make_client(url) as client:
        request(client, "GET", "/x", policy=policy)
    assert waits == [3.0]


def test_without_retry_after_the_backoff_grows_and_stays_bounded(server) -> None:
    scripted, url = server
    scripted.script = [(502, {})] * 3
    waits, policy = recorder()
    with make_client(url) as client:
        request(client, "GET", "/x", policy=policy)
    assert len(waits) == 3 and all(0.01 <= w <= 0.05 for w in waits) and waits[2] >= waits[0]


def test_exhausted_retries_raise_a_plain_error_with_the_status(server) -> None:
    scripted, url = server
    scripted.script = [(429, {"Retry-After": "0"})] * 4
    _, policy = recorder()
    with make_client(url) as client, pytest.raises(HttpError, match="HTTP 429.*rate limited") as info:
        request(client, "GET", "/limited", policy=policy)
    assert info.value.status == 429 and len(scripted.received) == 4


def test_client_errors_are_not_retried(server) -> None:
    scripted, url = server
    scripted.script = [(404, {}), (401, {})]
    waits, policy = recorder()
    with make_client(url) as client:
        assert request(client, "GET", "/a", policy=policy, raise_for_status=False).status_code == 404
        with pytest.raises(HttpError, match="401.*credentials"):
            request(client, "GET", "/b", policy=policy)
    assert waits == [] and len(scripted.received) == 2


def test_connection_refused_is_retried_then_reported() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    waits, policy = recorder()
    with make_client(f"http://127.0.0.1:{port}") as client, pytest.raises(HttpError, match="connection refused"):
        request(client, "GET", "/", policy=policy)
    assert len(waits) == 3


def test_read_timeout_is_reported_plainly(server) -> None:
    _, url = server
    _, policy = recorder()
    with make_client(url, timeout=0.2) as client, pytest.raises(HttpError, match="did not answer in time"):
        request(client, "GET", "/slow", policy=RetryPolicy(attempts=1))


def test_the_token_is_sent_but_never_logged_or_shown(server, caplog) -> None:
    scripted, url = server
    scripted.script = [(503, {"Retry-After": "0"}), (403, {})]
    caplog.set_level(logging.DEBUG)
    _, policy = recorder()
    with make_client(url, token=TOKEN) as client:
        with pytest.raises(HttpError) as info:
            request(client, "GET", "/q", params={"token": TOKEN, "page": 2}, policy=policy)
        shown = repr(client.auth) + str(info.value)
    assert scripted.headers[0]["authorization"] == f"Token {TOKEN}"
    assert str(scripted.received[0].query_params["token"]) == TOKEN  # the server got it...
    assert TOKEN not in caplog.text and TOKEN not in shown  # ...nobody else did
    assert "token=***" in str(info.value) and "page=2" in str(info.value)


def test_redact_url_hides_secret_parameters_and_user_info() -> None:
    assert redact_url("https://u:pw@api.example/x?api_key=abc&n=1&token=def") == \
        "https://api.example/x?api_key=***&n=1&token=***"


def test_loopback_policy_blocks_other_hosts_before_connecting(monkeypatch) -> None:
    monkeypatch.setenv("ALERTMUX_LOOPBACK_ONLY", "1")
    calls: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda req: calls.append(req) or httpx.Response(200))
    with make_client("https://api.alerce.online", transport=transport) as client:
        with pytest.raises(NetworkPolicyError, match="loopback"):
            request(client, "GET", "/ztf/v1/objects")
        assert request(client, "GET", "http://127.0.0.1:1/x").status_code == 200
        assert request(client, "GET", "http://localhost:1/x").status_code == 200
        assert request(client, "GET", "http://[::1]:1/x").status_code == 200
    assert [str(c.url.host) for c in calls] == ["127.0.0.1", "localhost", "::1"]
    for bootstrap in ("kafka.alerce.science:9093", "127.0.0.1:9092,b-1.example.com:9196"):
        with pytest.raises(NetworkPolicyError):
            ensure_bootstrap_allowed(bootstrap)
    ensure_bootstrap_allowed("127.0.0.1:9092,localhost:9093,[::1]:9094")


def test_loopback_policy_also_guards_redirects(monkeypatch) -> None:
    monkeypatch.setenv("ALERTMUX_LOOPBACK_ONLY", "1")

    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": "https://elsewhere.example/"})

    with make_client("http://127.0.0.1:1", transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(NetworkPolicyError, match="elsewhere.example"):
            request(client, "GET", "/start")


def test_without_the_policy_other_hosts_are_allowed(monkeypatch) -> None:
    monkeypatch.delenv("ALERTMUX_LOOPBACK_ONLY", raising=False)
    transport = httpx.MockTransport(lambda req: httpx.Response(200))
    with make_client("https://api.example", transport=transport) as client:
        assert request(client, "GET", "/").status_code == 200


def test_connection_resets_are_retried_and_the_request_then_succeeds() -> None:
    import struct
    import threading

    # A server that resets the first two connections (SO_LINGER 0: RST, not FIN), then answers 200.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    served: list[str] = []

    def serve() -> None:
        for attempt in range(3):
            conn, _ = listener.accept()
            conn.recv(65536)
            if attempt < 2:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                served.append("reset")
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n"
                             b"Connection: close\r\n\r\n{\"ok\":true}")
                served.append("ok")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    waits, policy = recorder()
    try:
        with make_client(f"http://127.0.0.1:{port}") as client:
            response = request(client, "GET", "/", policy=policy)
    finally:
        thread.join(5)
        listener.close()
    assert response.json() == {"ok": True}
    assert served == ["reset", "reset", "ok"] and len(waits) == 2
