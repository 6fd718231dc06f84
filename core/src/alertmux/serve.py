"""``alertmux serve``: the DESC TOM's REST endpoint for broker classifications, compatible with its clients.

Brokers that push rather than publish (AMPEL did, to ``https://desc-tom.lbl.gov``) PUT a JSON brokerClassification
message, or a list of them, to ``/elasticc2/brokermessage/`` (ELAsTiCC2, ``elasticc.v0_9_1``) or
``/elasticc/brokermessage/`` (the 2022 ``elasticc.v0_9`` form), and get ``201 {"brokerMessageId": <first new id or
-1>, "num_loaded": <new messages>}`` with a ``Location`` header, as from the TOM (tom_desc ``elasticc2/views.py``
``BrokerMessageView.put``). Two ways in:

* Django's login dance, which the TOM's own clients do (``tom_client.py``, AMPEL's ``ElasticcTomClient``):
  ``GET /accounts/login/`` sets a ``csrftoken`` cookie; ``POST /accounts/login/`` with ``username``, ``password``
  and ``csrfmiddlewaretoken`` sets the ``sessionid`` cookie (and rotates ``csrftoken``); later unsafe requests send
  ``X-CSRFToken`` equal to the cookie. A failed login answers 200 with Django's "Please enter a correct username
  and password" text, which ``tom_client.py`` looks for.
* ``Authorization: Token <key>`` for new clients (no CSRF: a token is not sent by a browser on its own).

Users and tokens come from ``alertmux users add/token``. Passwords are stored as scrypt hashes; tokens and
sessions as ``<id>.<secret>``, of which only the id and a salted SHA-256 of the secret are stored.

Each item is validated on its own: bad ones are reported (index and reason) and dead-lettered with their JSON, good
ones are decoded by the broker plugin whose :class:`~alertmux.specs.PushTransport` claims the item's
``brokerName`` (the built-in ``elasticc`` broker otherwise) and stored through the :class:`~alertmux.ingest.Ingestor`.
Resending is harmless: a classifier's message for an alert is stored once. ``brokerPublishTimestamp`` (epoch ms),
an extra key of the REST form, is kept as the broker publish time; without it that time stays empty, as in the TOM.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import html
import json
import logging
import secrets
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from alertmux import __version__
from alertmux.errors import UsageError
from alertmux.host import PluginHost
from alertmux.ingest import Ingestor
from alertmux.models import BrokerClassification, BrokerClassificationV09
from alertmux.specs import Decoder, Delivery
from alertmux.store import DeadLetter, now_ms, open_store

log = logging.getLogger(__name__)

CSRF_COOKIE = "csrftoken"
SESSION_COOKIE = "sessionid"
CSRF_HEADER = "X-CSRFToken"
SESSION_SECONDS = 14 * 24 * 3600  # Django's SESSION_COOKIE_AGE
LOGIN_FAILED = "Please enter a correct username and password. Note that both fields may be case-sensitive."
ENDPOINTS = {"/elasticc2/brokermessage/": BrokerClassification, "/elasticc/brokermessage/": BrokerClassificationV09}
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_DUMMY_HASH: str | None = None


# -- secrets ------------------------------------------------------------------------------------------------------
def hash_password(password: str) -> str:
    """A salted scrypt hash of ``password``: ``scrypt$n$r$p$salt$digest`` (hex)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str | None) -> bool:
    """Whether ``password`` matches a :func:`hash_password` hash (time spent is the same for a missing user)."""
    global _DUMMY_HASH
    if stored is None:
        _DUMMY_HASH = _DUMMY_HASH or hash_password(secrets.token_hex(8))
        stored, known = _DUMMY_HASH, False
    else:
        known = True
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        candidate = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p))
    except (ValueError, TypeError):
        return False
    return known and scheme == "scrypt" and hmac.compare_digest(candidate.hex(), digest)


def _digest(secret: str, salt: str) -> str:
    return hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()


def issue_credential(store: Any, username: str, kind: str, ttl_seconds: float | None = None) -> str:
    """Create an API token (``kind="token"``) or a login session for ``username``; returns it (shown once).

    The value is ``<id>.<secret>``; the store keeps the id, a random salt and the salted digest of the secret.
    """
    credential_id, secret, salt = secrets.token_hex(6), secrets.token_urlsafe(32), secrets.token_hex(8)
    expires = now_ms() + int(ttl_seconds * 1000) if ttl_seconds else None
    store.add_credential(credential_id, kind, username, salt, _digest(secret, salt), expires)
    return f"{credential_id}.{secret}"


def check_credential(store: Any, value: str, kind: str) -> str | None:
    """The user a credential belongs to, or None when it is unknown, wrong or expired."""
    credential_id, _, secret = value.strip().partition(".")
    if not credential_id or not secret:
        return None
    found = store.credential(credential_id, kind)
    if found is None:
        return None
    username, salt, digest, expires = found
    if not hmac.compare_digest(_digest(secret, salt), digest):
        return None
    if expires is not None and expires < now_ms():
        store.delete_credential(credential_id)
        return None
    return str(username)


# -- the application ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ServeOptions:
    """Limits and context of the endpoint."""

    max_body_bytes: int = 32 * 1024 * 1024
    """Larger bodies get 413 (AMPEL sent chunks of 1000 messages, about 1 MB)."""
    max_items: int = 50_000
    run_id: str | None = None
    """Rows stored carry this run (the demo's); None for a standalone server."""
    session_seconds: int = SESSION_SECONDS


class _Backend:
    """The store and the ingestors behind the endpoint; one lock, since one SQLite connection serves all threads."""

    def __init__(self, host: PluginHost, db: str | Path, options: ServeOptions) -> None:
        self.host = host
        self.store: Any = open_store(db)
        self.options = options
        self.lock = threading.Lock()
        self.ingestors: dict[str, Ingestor] = {}
        self.routes: dict[str, tuple[str, Decoder]] = {}
        for name, spec in host.brokers().items():
            if spec.push is not None:
                for broker_name in spec.push.broker_names:
                    self.routes[broker_name.casefold()] = (name, spec.push.decode)
        generic = host.brokers().get("elasticc")
        if generic is None or "json" not in generic.decoders:
            raise UsageError("alertmux serve needs the built-in elasticc broker (its JSON decoder) to be installed")
        self.fallback: tuple[str, Decoder] = ("elasticc", generic.decoders["json"])

    def ingestor(self, broker: str) -> Ingestor:
        if broker not in self.ingestors:
            self.ingestors[broker] = Ingestor(self.host, broker, self.store, self.options.run_id)
        return self.ingestors[broker]

    def route(self, item: Any) -> tuple[str, Decoder]:
        name = item.get("brokerName") if isinstance(item, dict) else None
        return self.routes.get(str(name).casefold(), self.fallback) if name is not None else self.fallback

    def close(self) -> None:
        self.store.close()


def create_app(host: PluginHost, db: str | Path, options: ServeOptions | None = None) -> Starlette:
    """The ASGI application of ``alertmux serve`` (run it with uvicorn, or :func:`serve_in_thread`)."""
    backend = _Backend(host, db, options or ServeOptions())

    async def index(request: Request) -> Response:
        return HTMLResponse(f"<html><body><p>alertmux {__version__}: broker message endpoint. PUT to "
                            f"{', '.join(ENDPOINTS)}</p></body></html>")

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__, "endpoints": list(ENDPOINTS)})

    async def login(request: Request) -> Response:
        if request.method == "GET":
            return _login_page(request, "")
        form = parse_qs((await _read_body(request, 64 * 1024)).decode("utf-8", "replace"))
        field = {k: v[0] for k, v in form.items() if v}
        if not _same(field.get("csrfmiddlewaretoken"), request.cookies.get(CSRF_COOKIE)):
            return _csrf_failure()
        username, password = field.get("username", ""), field.get("password", "")

        def authenticate() -> str | None:
            with backend.lock:
                stored = backend.store.user_password_hash(username)
            if not verify_password(password, stored):
                return None
            with backend.lock:
                return issue_credential(backend.store, username, "session", backend.options.session_seconds)

        session = await run_in_threadpool(authenticate)
        if session is None:
            log.info("failed login for user %r", username)
            return _login_page(request, LOGIN_FAILED)
        target = field.get("next") or request.query_params.get("next") or "/"
        response = RedirectResponse(target if target.startswith("/") and not target.startswith("//") else "/", 302)
        secure = request.url.scheme == "https"
        response.set_cookie(SESSION_COOKIE, session, max_age=backend.options.session_seconds, httponly=True,
                            samesite="lax", secure=secure)
        # Django rotates the CSRF token at login; its clients read the new cookie after logging in.
        response.set_cookie(CSRF_COOKIE, secrets.token_urlsafe(24), max_age=31449600, samesite="lax", secure=secure)
        return response

    async def logout(request: Request) -> Response:
        session = request.cookies.get(SESSION_COOKIE)
        if session:
            with backend.lock:
                backend.store.delete_credential(session.partition(".")[0])
        response = RedirectResponse("/", 302)
        response.delete_cookie(SESSION_COOKIE)
        return response

    async def brokermessage(request: Request) -> Response:
        path = request.url.path if request.url.path.endswith("/") else request.url.path + "/"
        if request.method != "PUT":
            return JSONResponse({"error": f"use PUT to send broker messages to {path}"}, 405, {"Allow": "PUT"})
        user = await run_in_threadpool(_authenticated_user, backend, request)
        if isinstance(user, Response):
            return user
        try:
            body = await _read_body(request, backend.options.max_body_bytes)
        except _TooLarge:
            return JSONResponse({"error": f"body larger than {backend.options.max_body_bytes} bytes: send fewer "
                                          "messages per request"}, 413)
        result = await run_in_threadpool(_ingest, backend, path, body, user)
        status = result.pop("_status")
        headers = {}
        if status == 201:
            base = str(request.url.replace(query="")).rstrip("/") + "/"
            headers["Location"] = f"{base}{result['brokerMessageId']}"
        return JSONResponse(result, status, headers)

    routes = [
        Route("/", index),
        Route("/healthz", health),
        Route("/accounts/login/", login, methods=["GET", "POST"]),
        Route("/accounts/logout/", logout, methods=["GET", "POST"]),
    ]
    for endpoint in ENDPOINTS:
        for variant in (endpoint, endpoint.rstrip("/")):  # Django wants the slash; new clients may drop it
            routes.append(Route(variant, brokermessage, methods=["GET", "POST", "PUT"]))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            backend.close()

    return Starlette(routes=routes, lifespan=lifespan)


class _TooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))


def _csrf_failure() -> Response:
    return HTMLResponse("<h1>Forbidden (403)</h1><p>CSRF verification failed. Request aborted.</p>", 403)


def _login_page(request: Request, error: str) -> Response:
    token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
    message = f'<p class="errornote">{html.escape(error)}</p>' if error else ""
    page = (f"<html><body><h1>alertmux log in</h1>{message}<form method=\"post\" action=\"/accounts/login/\">"
            f'<input type="hidden" name="csrfmiddlewaretoken" value="{html.escape(token)}">'
            '<input name="username"> <input name="password" type="password"> <button>Log in</button>'
            "</form></body></html>")
    response = HTMLResponse(page, 200)
    response.set_cookie(CSRF_COOKIE, token, max_age=31449600, samesite="lax", secure=request.url.scheme == "https")
    return response


def _authenticated_user(backend: _Backend, request: Request) -> str | Response:
    authorization = request.headers.get("authorization", "")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() not in ("token", "bearer") or not value:
            return JSONResponse({"error": "unsupported Authorization header: send 'Authorization: Token <key>'"},
                                401, {"WWW-Authenticate": "Token"})
        with backend.lock:
            user = check_credential(backend.store, value, "token")
        if user is None:
            return JSONResponse({"error": "invalid or revoked token"}, 401, {"WWW-Authenticate": "Token"})
        return user
    session = request.cookies.get(SESSION_COOKIE)
    if session:
        with backend.lock:
            user = check_credential(backend.store, session, "session")
        if user is not None:
            if not _same(request.headers.get(CSRF_HEADER), request.cookies.get(CSRF_COOKIE)):
                return _csrf_failure()
            return user
    return JSONResponse({"error": "authentication required: log in at /accounts/login/ (Django style) or send "
                                  "'Authorization: Token <key>' (alertmux users token NAME)"},
                        401, {"WWW-Authenticate": "Token"})


def _ingest(backend: _Backend, path: str, body: bytes, user: str) -> dict[str, Any]:
    source = f"REST_push {path}"
    model = ENDPOINTS[path]
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        _dead_letter(backend, "elasticc", source, body, f"body is not JSON: {exc}")
        return {"_status": 400, "error": f"body is not JSON: {exc}", "num_loaded": 0}
    items = data if isinstance(data, list) else [data]
    if len(items) > backend.options.max_items:
        return {"_status": 413, "error": f"{len(items)} messages in one request; the limit is "
                                         f"{backend.options.max_items}", "num_loaded": 0}
    delivery = Delivery(source=source)
    rows_by_broker: dict[str, list[tuple[Any, ...]]] = {}
    dead: list[DeadLetter] = []
    errors: list[dict[str, Any]] = []
    unknown: Counter[str] = Counter()
    with backend.lock:
        for index, item in enumerate(items):
            raw = json.dumps(item, separators=(",", ":")).encode()
            broker, decoder = backend.route(item)
            ingestor = backend.ingestor(broker)
            # The ingestor counts unknown labels over the server's life; this request's are the difference.
            before = Counter(ingestor.unknown_labels)
            try:
                if not isinstance(item, dict):
                    raise ValueError(f"expected a JSON object, got {type(item).__name__}")
                model.model_validate(item)
                rows = ingestor.rows(ingestor.decode(raw, delivery, decoder), delivery)
            except ValidationError as exc:
                reason = _validation_reason(exc, model.__name__)
            except Exception as exc:  # noqa: BLE001 - any bad item is reported and dead-lettered, the rest go on
                reason = f"{type(exc).__name__}: {exc}"
            else:
                rows_by_broker.setdefault(broker, []).extend(rows)
                for (scheme, label), count in (ingestor.unknown_labels - before).items():
                    unknown[f"{scheme}:{label}"] += count
                continue
            errors.append({"index": index, "error": reason})
            dead.append(ingestor.dead_letter(raw, delivery, reason))
        loaded, first_id = 0, None
        for position, (broker, rows) in enumerate(rows_by_broker.items() or [("elasticc", [])]):
            stored, first = backend.store.write_batch_first_id(rows, dead if position == 0 else ())
            loaded += stored
            first_id = first_id if first_id is not None else first
            if stored:
                _stored_hook(backend, broker, stored)
    valid = len(items) - len(errors)
    if errors:
        log.warning("user %s pushed %d message(s) to %s: %d rejected (first: %s)", user, len(items), path,
                    len(errors), errors[0]["error"])
    result: dict[str, Any] = {"_status": 201 if valid or not items else 400,
                              "brokerMessageId": first_id if first_id is not None else -1, "num_loaded": loaded,
                              "num_received": len(items), "num_rejected": len(errors)}
    if errors:
        result["errors"] = errors[:100]
    if unknown:
        # Stored verbatim with no class id (never dropped); said here so the pushing broker learns of it too.
        log.warning("user %s pushed %d label(s) no normalizer knows to %s: %s", user, sum(unknown.values()), path,
                    ", ".join(f"{label} x{count}" for label, count in sorted(unknown.items())))
        result["unknown_labels"] = dict(sorted(unknown.items()))
    return result


def _validation_reason(exc: ValidationError, schema: str) -> str:
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(message)'}: {e['msg']}"
                         for e in exc.errors(include_url=False)[:5])
    return f"not a valid {schema}: {problems}"


def _dead_letter(backend: _Backend, broker: str, source: str, payload: bytes, reason: str) -> None:
    with backend.lock:
        letter = backend.ingestor(broker).dead_letter(payload, Delivery(source=source), reason)
        backend.store.write_batch([], [letter])


def _stored_hook(backend: _Backend, broker: str, count: int) -> None:
    try:
        backend.host.hook.alertmux_classifications_stored(store=backend.store, run_id=backend.options.run_id,
                                                          broker=broker, count=count)
    except Exception:  # noqa: BLE001 - a plugin's event handler must not fail the request
        log.exception("alertmux_classifications_stored hook failed")


# -- running it ---------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def serve_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0, timeout: float = 15.0) -> Iterator[str]:
    """Run ``app`` with uvicorn in a background thread; yields its base URL (``http://127.0.0.1:PORT``).

    Port 0 picks a free port. Used by the demo (AMPEL's emulator pushes to it) and by tests.
    """
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on",
                                           access_log=False))
    thread = threading.Thread(target=server.run, name="alertmux-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise UsageError(f"alertmux serve could not start on {host}:{port}")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout)


def run(host_plugins: PluginHost, db: str | Path, host: str = "127.0.0.1", port: int = 8000,
        options: ServeOptions | None = None) -> None:
    """Serve until interrupted (``alertmux serve``)."""
    import uvicorn

    app = create_app(host_plugins, db, options)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=True)


@contextlib.contextmanager
def push_endpoint(host: PluginHost, db: str | Path, run_id: str | None = None) -> Iterator[dict[str, str]]:
    """An in-process ``alertmux serve`` with a throwaway account: yields ``serve_url``, ``username``, ``password``.

    The account is removed when the block ends. The demo and ``alertmux emulate`` hand it to emulators that push
    (AMPEL's), which then log in and PUT exactly as they would to the DESC TOM.
    """
    username, password = f"emulator-{secrets.token_hex(4)}", secrets.token_urlsafe(16)
    store: Any = open_store(db)
    try:
        store.add_user(username, hash_password(password))
        with serve_in_thread(create_app(host, db, ServeOptions(run_id=run_id))) as url:
            yield {"serve_url": url, "username": username, "password": password}
    finally:
        store.delete_user(username)
        store.close()
