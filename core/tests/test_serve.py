"""`alertmux serve` as the DESC TOM's clients see it: Django login with CSRF, Token auth, per-item validation,
dead letters, idempotent resends, size limits, and only salted hashes at rest. Real HTTP on loopback."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from alertmux import BrokerMessage, BrokerSpec, NormalizedLabel, NormalizerSpec, hookimpl
from alertmux.builtin import elasticc
from alertmux.serve import (
    LOGIN_FAILED,
    ServeOptions,
    check_credential,
    create_app,
    hash_password,
    issue_credential,
    serve_in_thread,
    verify_password,
)
from alertmux.specs import PushTransport
from alertmux.store import open_store

PASSWORD = "correct horse battery"
V2 = "/elasticc2/brokermessage/"


def message(alert_id: int, classes=((2222, 0.8), (2223, 0.2)), **extra) -> dict:
    return {"alertId": alert_id, "diaSourceId": alert_id, "elasticcPublishTimestamp": 1_700_000_000_000,
            "brokerIngestTimestamp": 1_700_000_001_000, "brokerName": "TestBroker", "brokerVersion": "1",
            "classifierName": "clf", "classifierParams": "p",
            "classifications": [{"classId": c, "probability": p} for c, p in classes]} | extra


class PushingPlugin:
    """A broker plugin that claims pushed items named 'Pusher' and reads their ids in its own scheme."""

    @hookimpl
    def alertmux_brokers(self):
        def decode(payload: bytes, delivery):
            item = json.loads(payload)
            return [BrokerMessage(("Pusher", "1", item["classifierName"], ""), "pusher",
                                  [e["classId"] for e in item["classifications"]],
                                  [e["probability"] for e in item["classifications"]],
                                  alert_id=item["alertId"], dia_source_id=item["diaSourceId"])]

        yield BrokerSpec("pusher", "test", push=PushTransport(decode, broker_names=("Pusher",)), decoders={"j": decode})

    @hookimpl
    def alertmux_classification_normalizers(self):
        yield NormalizerSpec("pusher", "test", table={7: NormalizedLabel(2332, source="test")})


@pytest.fixture
def served(tmp_path: Path, plugin_host) -> Iterator[tuple[str, Path, str]]:
    """A server with user 'broker' (password PASSWORD) and an API token: (url, db, token)."""
    db = tmp_path / "serve.db"
    store = open_store(db)
    store.add_user("broker", hash_password(PASSWORD))
    token = issue_credential(store, "broker", "token")
    store.close()
    host = plugin_host(elasticc, PushingPlugin())
    with serve_in_thread(create_app(host, db, ServeOptions(max_body_bytes=64 * 1024, max_items=50))) as url:
        yield url, db, token


def login(url: str, password: str = PASSWORD) -> tuple[httpx.Client, httpx.Response]:
    """What tom_client.py and AMPEL's ElasticcTomClient do (with requests; httpx behaves the same here)."""
    client = httpx.Client(base_url=url, follow_redirects=True)
    first = client.get("/accounts/login/")
    assert first.status_code == 200 and "csrftoken" in client.cookies
    response = client.post("/accounts/login/", data={"username": "broker", "password": password,
                                                     "csrfmiddlewaretoken": client.cookies["csrftoken"]})
    return client, response


def rows(db: Path, sql: str) -> list[tuple]:
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql).fetchall()


def test_django_login_then_put_as_the_tom_clients_do(served) -> None:
    url, db, _ = served
    client, response = login(url)
    assert response.status_code == 200 and "Please enter a correct" not in response.text
    assert response.history and response.history[0].status_code == 302  # Django redirects after login
    assert "sessionid" in client.cookies
    put = client.put(V2, json=[message(1, brokerPublishTimestamp=1_700_000_002_000), message(2)],
                     headers={"X-CSRFToken": client.cookies["csrftoken"]})
    assert put.status_code == 201, put.text
    body = put.json()
    assert body["num_loaded"] == 2 and body["brokerMessageId"] >= 1
    assert put.headers["Location"].endswith(f"{V2}{body['brokerMessageId']}")
    stored = rows(db, "SELECT alert_id, broker_publish_ms, topic, top_class_id FROM messages ORDER BY alert_id")
    # brokerPublishTimestamp is honoured when given; without it the publish time stays empty, as in the TOM.
    assert stored == [(1, 1_700_000_002_000, f"REST_push {V2}", 2222), (2, None, f"REST_push {V2}", 2222)]


def test_a_wrong_password_answers_like_django_and_opens_no_session(served) -> None:
    url, _, _ = served
    client, response = login(url, "wrong")
    assert response.status_code == 200 and LOGIN_FAILED in response.text
    assert "sessionid" not in client.cookies
    assert client.put(V2, json=message(1), headers={"X-CSRFToken": client.cookies["csrftoken"]}).status_code == 401


def test_csrf_is_required_with_a_session(served) -> None:
    url, db, _ = served
    client, _ = login(url)
    assert client.put(V2, json=message(1)).status_code == 403
    assert client.put(V2, json=message(1), headers={"X-CSRFToken": "forged"}).status_code == 403
    anonymous = httpx.Client(base_url=url)
    anonymous.get("/accounts/login/")
    refused = anonymous.post("/accounts/login/", data={"username": "broker", "password": PASSWORD})
    assert refused.status_code == 403 and "CSRF" in refused.text
    assert rows(db, "SELECT COUNT(*) FROM messages") == [(0,)]


def test_token_authorization_for_new_clients(served) -> None:
    url, _, token = served
    ok = httpx.put(url + V2, json=message(5), headers={"Authorization": f"Token {token}"})
    assert ok.status_code == 201 and ok.json()["num_loaded"] == 1
    for header in ({}, {"Authorization": "Token nope.nope"}, {"Authorization": f"Token {token[:-1]}x"},
                   {"Authorization": f"Basic {token}"}):
        assert httpx.put(url + V2, json=message(6), headers=header).status_code == 401


def test_bad_items_are_reported_and_dead_lettered_good_ones_stored(served) -> None:
    url, db, token = served
    items = [message(10), {"alertId": 11}, "not an object", message(12, classifications=[{"classId": "x"}])]
    response = httpx.put(url + V2, json=items, headers={"Authorization": f"Token {token}"})
    assert response.status_code == 201
    body = response.json()
    assert (body["num_received"], body["num_loaded"], body["num_rejected"]) == (4, 1, 3)
    assert [e["index"] for e in body["errors"]] == [1, 2, 3]
    assert "diaSourceId" in body["errors"][0]["error"]
    letters = rows(db, "SELECT broker, source, payload, error FROM dead_letters ORDER BY id")
    assert [json.loads(p) for _, _, p, _ in letters] == items[1:]  # each kept whole, as it came
    assert {b for b, _, _, _ in letters} == {"elasticc"} and {s for _, s, _, _ in letters} == {f"REST_push {V2}"}


def test_all_bad_is_a_400_and_not_json_is_dead_lettered_too(served) -> None:
    url, db, token = served
    auth = {"Authorization": f"Token {token}"}
    assert httpx.put(url + V2, json=[{"alertId": 1}], headers=auth).status_code == 400
    garbage = httpx.put(url + V2, content=b"{not json", headers=auth | {"Content-Type": "application/json"})
    assert garbage.status_code == 400 and "not JSON" in garbage.json()["error"]
    assert rows(db, "SELECT payload FROM dead_letters ORDER BY id")[-1] == (b"{not json",)


def test_resending_stores_nothing_twice(served) -> None:
    url, db, token = served
    auth = {"Authorization": f"Token {token}"}
    first = httpx.put(url + V2, json=[message(20), message(21)], headers=auth).json()
    again = httpx.put(url + V2, json=[message(21), message(22)], headers=auth).json()
    assert first["num_loaded"] == 2 and again["num_loaded"] == 1
    assert again["brokerMessageId"] == first["brokerMessageId"] + 2
    assert httpx.put(url + V2, json=message(20), headers=auth).json()["brokerMessageId"] == -1
    assert rows(db, "SELECT COUNT(*) FROM messages") == [(3,)]


def test_size_limits(served) -> None:
    url, _, token = served
    auth = {"Authorization": f"Token {token}"}
    too_big = httpx.put(url + V2, content=b"[" + b" " * 70_000 + b"]", headers=auth)
    assert too_big.status_code == 413
    too_many = httpx.put(url + V2, json=[message(i) for i in range(51)], headers=auth)
    assert too_many.status_code == 413 and "limit is 50" in too_many.json()["error"]


def test_the_2022_endpoint_reads_the_v0_9_form(served) -> None:
    url, db, token = served
    auth = {"Authorization": f"Token {token}"}
    legacy = {k: v for k, v in message(30).items() if k not in ("classifierName", "classifierParams")}
    legacy["classifications"] = [{"classifierName": "old", "classifierParams": "", "classId": 111, "probability": 1.0}]
    assert httpx.put(url + "/elasticc/brokermessage/", json=legacy, headers=auth).json()["num_loaded"] == 1
    assert httpx.put(url + "/elasticc/brokermessage/", json=message(31), headers=auth).status_code == 400
    assert rows(db, "SELECT native_scheme, top_class_id FROM messages") == [("elasticc", 2222)]


def test_items_go_to_the_plugin_that_claims_their_broker_name(served) -> None:
    url, db, token = served
    pushed = message(40, classes=((7, 1.0),), brokerName="Pusher")
    assert httpx.put(url + V2, json=pushed, headers={"Authorization": f"Token {token}"}).status_code == 201
    assert rows(db, "SELECT c.broker, m.native_scheme, m.top_class_id FROM messages m JOIN classifiers c"
                    " USING (classifier_id)") == [("pusher", "pusher", 2332)]


def test_unknown_labels_are_stored_verbatim_and_reported_to_the_pusher(served) -> None:
    url, db, token = served
    auth = {"Authorization": f"Token {token}"}
    known = httpx.put(url + V2, json=message(50, classes=((7, 1.0),), brokerName="Pusher"), headers=auth).json()
    assert "unknown_labels" not in known
    pushed = [message(51, classes=((7, 0.6), (99, 0.4)), brokerName="Pusher"),
              message(52, classes=((99, 1.0),), brokerName="Pusher")]
    body = httpx.put(url + V2, json=pushed, headers=auth).json()
    assert body["num_loaded"] == 2 and body["unknown_labels"] == {"pusher:99": 2}
    # the next request reports only its own unknown labels, not the server's running count
    assert "unknown_labels" not in httpx.put(url + V2, json=message(53, classes=((7, 1.0),), brokerName="Pusher"),
                                             headers=auth).json()
    kept = rows(db, "SELECT class_id, native_class FROM classifications WHERE native_class = '99'")
    assert kept and all(class_id is None for class_id, _ in kept)


def test_only_salted_hashes_are_stored(served) -> None:
    url, db, token = served
    client, _ = login(url)
    session = client.cookies["sessionid"]
    (stored,) = rows(db, "SELECT password_hash FROM users")
    assert stored[0].startswith("scrypt$") and PASSWORD not in stored[0]
    raw = db.read_bytes() + (db.parent / (db.name + "-wal")).read_bytes()
    for secret in (PASSWORD, token.split(".")[1], session.split(".")[1]):
        assert secret.encode() not in raw
    assert verify_password(PASSWORD, stored[0]) and not verify_password("nope", stored[0])
    assert not verify_password(PASSWORD, None)
    store = open_store(db)
    try:
        assert check_credential(store, token, "token") == "broker"
        assert check_credential(store, token, "session") is None  # a token is not a session
        expired = issue_credential(store, "broker", "session", ttl_seconds=-1)
        assert check_credential(store, expired, "session") is None
    finally:
        store.close()


def test_users_commands(run_cli, tmp_path) -> None:
    db = str(tmp_path / "users.db")
    assert run_cli("users", "add", "ampel", "--password", "s3cret-pass", "--db", db).code == 0
    duplicate = run_cli("users", "add", "ampel", "--password", "x", "--db", db)
    assert duplicate.code == 2 and "already exists" in duplicate.err
    issued = run_cli("users", "token", "ampel", "--db", db)
    assert issued.code == 0
    token = issued.out.strip()
    store = open_store(db)
    try:
        assert check_credential(store, token, "token") == "ampel"
    finally:
        store.close()
    listed = run_cli("users", "list", "--db", db).json_lines
    assert listed == [{"username": "ampel", "created_ms": listed[0]["created_ms"], "active": True, "tokens": 1}]
    assert "s3cret-pass" not in json.dumps(listed) and token not in json.dumps(listed)
    assert run_cli("users", "token", "nobody", "--db", db).code == 2
    assert run_cli("users", "remove", "ampel", "--db", db).code == 0
