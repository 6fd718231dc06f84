"""Lasair: Sherlock as context, the JSON decoders on the real files of ../shared/data/brokers/lasair, the emulator's
topic read by the real `lasair` package's consumer (its ~23 s consumer-group join paid once per module), the REST poll
within the quota (429 waits, never fails), annotations, and the conformance suite."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from contextlib import closing
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from alertmux_lasair import api, decoders, emulator, vocabulary

from alertmux import DecodeError, Delivery
from alertmux.host import PluginHost
from alertmux.http import make_client
from alertmux.ingest import Ingestor
from alertmux.taxonomy import ELASTICC2, taxonomy
from alertmux.testing import AlertStream, PluginConformance, SamplePayload, json_app

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "dev.py").exists())
SHARED = ROOT.parent / "shared" / "data" / "brokers" / "lasair"
FILES = ("filter_sample/313637921267122191.json", "filter_sample/313637921267122191_object.json",
         "annotations/sample_annotation.json", "annotations/sample_annotations.json",
         "rubin_alert_json/schema10.0_alert.json", "sherlock_example_ingested.json")


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost()


# -- vocabularies -------------------------------------------------------------------------------------------------
def test_sherlock_is_context_and_lands_only_where_honest() -> None:
    tax = taxonomy(ELASTICC2)
    table = vocabulary.SHERLOCK_TABLE
    assert set(table) == {"AGN", "BS", "CV", "NT", "ORPHAN", "SN", "UNCLEAR", "VS", "NULL"}
    assert all(row.kind == "context" and row.source for row in table.values())
    assert all(row.class_id is None or row.class_id in tax for row in table.values())
    assert table["AGN"].class_id == 2332 and table["SN"].class_id == 2200 and not tax.is_leaf(2200)
    assert table["NT"].class_id is None and table["ORPHAN"].class_id is None and table["NULL"].class_id == 300


def test_annotation_labels_are_context_with_common_words_mapped() -> None:
    assert vocabulary.annotation_label("SN Ia").class_id == 2222
    assert vocabulary.annotation_label("medium").class_id is None
    assert vocabulary.annotation_label("medium").kind == "context"


# -- decoders -----------------------------------------------------------------------------------------------------
def test_every_shared_file_decodes(host: PluginHost) -> None:
    ingestor = Ingestor(host, "lasair")
    found = {}
    for name in FILES:
        messages = ingestor.decode((SHARED / name).read_bytes(), Delivery(name))
        list(ingestor.records(messages, Delivery(name)))
        found[name] = messages
    (sherlock,) = found[FILES[0]]
    assert sherlock.labels == ["ORPHAN"] and sherlock.classifier == ("Lasair", "", "sherlock", "v3.1.0")
    assert sherlock.dia_object_id == 313637921267122191
    newest = max(json.loads((SHARED / FILES[0]).read_text())["diaSourcesList"], key=lambda s: s["midpointMjdTai"])
    assert sherlock.alert_id == newest["diaSourceId"]  # the source that passed the filter: the newest
    assert len(found[FILES[3]]) == 91 and {m.classifier[2] for m in found[FILES[3]]} == {"annotation:anno_test"}
    # An object row, a Rubin alert and ZTF alerts carry no classification: they decode into none, and nothing fails.
    assert found[FILES[1]] == found[FILES[4]] == found[FILES[5]] == []
    assert not ingestor.unknown_labels


def test_lite_level_message_as_lasair_wraps_it(host: PluginHost) -> None:
    lite = json.loads((SHARED / "filter_sample/313637921267122191_lite.json").read_text())
    message = {"diaObjectId": 313637921267122191, "classification": "SN", "UTC": "2026-01-29 11:40:14",
               "alert": lite}
    (decoded,) = decoders.decode_json(json.dumps(message).encode(), Delivery("lasair_2Hasabsmag"))
    assert decoded.labels == ["SN"] and decoded.dia_object_id == 313637921267122191
    with pytest.raises(DecodeError, match="no diaObjectId"):
        decoders.decode_json(json.dumps(lite).encode(), Delivery("t"))  # the lite part alone identifies nothing


def test_sherlock_is_stored_as_context_without_a_top_class(host: PluginHost, tmp_store) -> None:
    ingestor = Ingestor(host, "lasair", tmp_store)
    payload = (SHARED / FILES[0]).read_bytes()
    delivery = Delivery("lasair_0x")
    assert tmp_store.write_batch(ingestor.rows(ingestor.decode(payload, delivery), delivery)) == 1
    assert tmp_store.write_batch(ingestor.rows(ingestor.decode(payload, delivery), delivery)) == 0  # redelivery
    row = tmp_store.conn.execute("SELECT kind, probability, class_id, native_class FROM classifications").fetchone()
    assert row == ("context", None, None, "ORPHAN")
    assert tmp_store.conn.execute("SELECT top_class_id FROM messages").fetchone()[0] is None


@pytest.mark.parametrize("garbage", [b"", b"\x00\x01\xff", b'{"unexpected": "json"}', b"[]", b"[1, 2]",
                                     b'{"diaObjectId": 1, "annotations": {"x": [{"classification": ""}]}}'])
def test_decoder_raises_on_garbage(garbage: bytes) -> None:
    with pytest.raises(DecodeError):
        decoders.decode_json(garbage, Delivery("garbage"))


# -- the emulator and the real client -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def read_by_lasair(kafka_broker, tmp_path_factory) -> tuple[AlertStream, list, list[dict]]:
    """The emulator's topic read by `lasair.lasair_consumer`, once for the module (its group join takes ~23 s)."""
    from lasair import lasair_consumer

    from alertmux.embedded import local_client_config
    from alertmux.harness import ensure_topics, record_source, stream_alerts
    from alertmux.store import open_store

    config = local_client_config()
    db = tmp_path_factory.mktemp("lasair") / "stream.db"
    store = open_store(db)
    run_id = store.start_run("test-stream", {})
    alerts = record_source(store, run_id, PluginHost().alert_source("simulated").open(objects=3, seed=6))
    topic = f"alerts-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_broker.bootstrap, [topic], config)
    sent = stream_alerts(store, run_id, alerts, bootstrap=kafka_broker.bootstrap, topic=topic,
                         client_config=config).sent
    store.close()
    stream = AlertStream(kafka_broker.bootstrap, topic, run_id, db, alerts, sent, config)
    published = stream.run_emulator(PluginHost().broker("lasair"), seed=6)
    consumer = lasair_consumer(kafka_broker.bootstrap, f"lasair-{uuid.uuid4().hex[:6]}", published[0].topic)
    read = []
    try:
        deadline = time.monotonic() + 90
        while len(read) < len(published) and time.monotonic() < deadline:
            msg = consumer.poll(timeout=1)
            if msg is not None and msg.error() is None:
                read.append(json.loads(msg.value()))  # exactly what Lasair's documentation tells users to do
    finally:
        consumer.close()
    return stream, published, read


@pytest.mark.kafka
def test_lasair_consumer_reads_the_emulator_s_topic(read_by_lasair) -> None:
    stream, published, read = read_by_lasair
    assert published[0].topic == "lasair_0emulated_" + stream.run_id
    assert len(read) == len(published) == stream.sent
    assert [r["annotations"]["sherlock"][0]["classification"] for r in read] == [
        json.loads(m.payload)["annotations"]["sherlock"][0]["classification"] for m in published]


@pytest.mark.kafka
def test_what_lasair_reads_is_what_alertmux_stores(read_by_lasair, host: PluginHost) -> None:
    _, published, read = read_by_lasair
    ingestor = Ingestor(host, "lasair")
    for record, message in zip(read, published, strict=True):
        (decoded,) = ingestor.decode(message.payload, message.delivery)
        assert decoded.dia_object_id == record["diaObject"]["diaObjectId"]
        assert decoded.alert_id == record["diaSourcesList"][0]["diaSourceId"]
        assert decoded.labels == [record["annotations"]["sherlock"][0]["classification"]]
    assert not ingestor.unknown_labels


def test_sherlock_emulation_follows_the_association() -> None:
    import random

    rng = random.Random(1)
    seen = {emulator.sherlock_class(2332, rng) for _ in range(200)}
    assert "AGN" in seen and seen <= {"AGN", "ORPHAN", "UNCLEAR"}
    assert emulator.sherlock_class(2222, random.Random(3)) in ("SN", "ORPHAN", "UNCLEAR")
    assert emulator.sherlock_class(2323, random.Random(4)) in ("VS", "ORPHAN", "UNCLEAR")


# -- REST ---------------------------------------------------------------------------------------------------------
def lasair_api(rows: list[dict], failures: list[int], token: str = "tok-123"):
    """Lasair's query/ and annotate/: Token auth, 429 while ``failures`` lasts, limit/offset paging."""
    annotations = []

    def handler(request):
        if request.headers.get("Authorization") != f"Token {token}":
            return 401, {"detail": "Invalid token."}
        if failures:
            # Django REST framework's throttle answers 429 with Retry-After (here 0: the test does not wait an hour)
            return failures.pop(0), {"detail": "Request limit exceeded"}, {"Retry-After": "0"}
        if request.path.endswith("/annotate/"):
            annotations.append(parse_qs(request.body.decode()))
            return 200, {"status": "success"}
        query = {k: v[0] for k, v in parse_qs(request.query).items()}
        conditions = query.get("conditions", "")  # the probe sends none
        since = float(conditions.split(">")[1].split()[0]) if ">" in conditions else 0.0
        chosen = [r for r in rows if r["lastDiaSourceMjdTai"] > since]
        offset, limit = int(query["offset"]), int(query["limit"])
        return 200, chosen[offset:offset + limit]

    app = json_app(handler)
    app.annotations = annotations
    return app


def rows(count: int, mjd0: float) -> list[dict]:
    return [{"diaObjectId": 10 + i, "lastDiaSourceMjdTai": mjd0 + i, "classification": "SN"} for i in range(count)]


def poll_settings(monkeypatch, **extra: str) -> None:
    values = {"SINCE_MJD": "60000", "PAGE_SIZE": "4", "RATE_LIMIT": "1000/second", "QUOTA_WAIT": "0.05",
              "TOKEN": "tok-123"} | extra
    for key, value in values.items():
        monkeypatch.setenv(f"ALERTMUX__BROKERS__LASAIR__{key}", value)


def test_rest_poll_pages_with_the_token_and_resumes(http_server, tmp_path, run_cli, monkeypatch) -> None:
    data = rows(10, 61000.0)
    server = http_server(lasair_api(data, []))
    poll_settings(monkeypatch)
    db = str(tmp_path / "poll.db")
    first = run_cli("poll", "--broker", "lasair", "--base-url", f"{server.url}/api/", "--db", db, "--once")
    assert first.code == 0, first.err
    report = json.loads(first.out)
    assert report["stored"] == 10 and report["pages"] == 3 and report["cursor"] == repr(61009.0)
    assert "tok-123" not in first.out + first.err
    data += rows(12, 61000.0)[10:]
    second = json.loads(run_cli("poll", "--broker", "lasair", "--base-url", f"{server.url}/api/", "--db", db,
                                "--once").out)
    assert second["stored"] == 2
    with closing(sqlite3.connect(db)) as conn:
        kinds = {r[0] for r in conn.execute("SELECT kind FROM classifications")}
    assert kinds == {"context"}


def test_rest_poll_waits_out_429_instead_of_failing(http_server, tmp_path, run_cli, monkeypatch) -> None:
    failures = [429] * 12  # more than the core's five retries: only waiting gets through
    server = http_server(lasair_api(rows(3, 61000.0), failures))
    poll_settings(monkeypatch)
    started = time.monotonic()
    result = run_cli("poll", "--broker", "lasair", "--base-url", f"{server.url}/api/", "--db",
                     str(tmp_path / "q.db"), "--once")
    assert result.code == 0, result.err
    assert json.loads(result.out)["stored"] == 3 and failures == []
    assert time.monotonic() - started >= 0.05  # it waited at least once


def test_client_side_quota_spaces_the_calls() -> None:
    quota = api.Quota("5/second")
    started = time.monotonic()
    for _ in range(8):
        assert quota.wait()
    assert time.monotonic() - started >= 0.9  # the sixth call had to wait for the window to move
    stop = threading.Event()
    stop.set()
    blocked = api.Quota("1/hour")
    assert blocked.wait() and not blocked.wait(stop.is_set)  # a stop request ends the wait


def test_a_wrong_token_fails_plainly_without_showing_it(http_server, tmp_path, run_cli, monkeypatch) -> None:
    server = http_server(lasair_api(rows(1, 61000.0), []))
    poll_settings(monkeypatch, TOKEN="wrong-secret-token")
    result = run_cli("poll", "--broker", "lasair", "--base-url", f"{server.url}/api/", "--db",
                     str(tmp_path / "w.db"), "--once")
    assert result.code != 0 and "401" in result.err
    assert "wrong-secret-token" not in result.out + result.err


def test_annotate_posts_the_form_lasair_expects(http_server) -> None:
    app = lasair_api([], [])
    server = http_server(app)
    body = api.annotation(313637921267122191, "alertmux", "SN Ia", version="0.1", classdict={"p": 0.9})
    with make_client(f"{server.url}/api/", token="tok-123") as client:
        assert api.annotate(client, body) == {"status": "success"}
    (sent,) = app.annotations
    assert sent["diaObjectId"] == ["313637921267122191"] and sent["classification"] == ["SN Ia"]
    assert json.loads(sent["classdict"][0]) == {"p": 0.9}
    with pytest.raises(ValueError, match="16 characters"):
        api.annotation(1, "t", "c", version="x" * 17)


class TestConformance(PluginConformance):
    plugin = "lasair"

    @classmethod
    def extra_samples(cls):
        # The real files that carry a classification (the others decode into none, which the check refuses).
        return {"lasair": [SamplePayload(name, (SHARED / name).read_bytes(), "json", "lasair-lsst tests")
                           for name in (FILES[0], FILES[2], FILES[3])]}


def test_decode_command_reads_the_shared_files(run_cli) -> None:
    result = run_cli("decode", "--broker", "lasair", *(str(SHARED / name) for name in FILES))
    assert result.code == 0, result.err
    records = result.json_lines
    assert len(records) == 1 + 1 + 91
    assert {r["native_scheme"] for r in records} == {"sherlock", "lasair_annotation"}
    assert all(r["kind"] == "context" and r["probability"] is None for r in records)


@pytest.mark.kafka
def test_check_reports_the_token_accepted(kafka_broker, http_server, run_cli, monkeypatch) -> None:
    server = http_server(lasair_api(rows(1, 61000.0), []))
    poll_settings(monkeypatch, API_URL=f"{server.url}/api/")
    result = run_cli("check", "lasair", "--bootstrap", kafka_broker.bootstrap, "--timeout", "5")
    lines = {line.split()[1]: line for line in result.out.splitlines()}
    assert lines["kafka"].startswith("ok"), result.out  # the topics line depends on what else the broker holds
    assert lines["rest"].startswith("ok") and "token" in lines["rest"] and "tok-123" not in result.out
