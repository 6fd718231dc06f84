"""AMPEL: its taxonomy quirks, its pushes through `alertmux serve` (Django login, as its client did), its Hopskotch
LSSTReports through Kafka, and its emulator in the harness. Payloads are synthesized from AMPEL's code (none are
published); the shapes come from T2ElasticcReport, ElasticcTomClient and the LSSTReport model."""

from __future__ import annotations

import json
import sqlite3
import uuid
from contextlib import closing

import pytest
from alertmux_ampel import decoders, emulator, vocabulary

from alertmux import DecodeError, Delivery
from alertmux.emulation import AlertSeen
from alertmux.harness import DemoOptions, run_demo
from alertmux.host import PluginHost
from alertmux.ingest import Ingestor
from alertmux.kafka import ListenOptions, listen
from alertmux.serve import create_app, hash_password, serve_in_thread
from alertmux.store import open_store
from alertmux.taxonomy import ELASTICC2, taxonomy
from alertmux.testing import PluginConformance

ALERT = AlertSeen(alert_id=555000001, dia_source_id=555000001, dia_object_id=555, published_ms=1_700_000_000_000,
                  true_class=2332, detections=2)


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost()


def test_quirks_are_mapped_explicitly_with_their_source() -> None:
    table = vocabulary.TABLE
    assert table[2330].class_id == 2332 and "direct_evaluations" in table[2330].source  # AGN sent as Non-Periodic
    assert table[2320].class_id == 2325 and "direct_evaluations" in table[2320].source  # EB sent as Periodic
    assert table[2227].class_id == 2224 and "IIn" in table[2227].source
    assert table[0].class_id == 300  # "we really do not know"
    assert table[21].class_id == 2320 and table[22].class_id == 2330 and table[1].class_id == 2200  # 2022 parents
    assert table[111].class_id == 2222 and table[2222].class_id == 2222
    assert table["SLSN"].class_id == 2242 and table["SNibc"].class_id == 2223
    tax = taxonomy(ELASTICC2)
    assert all(row.class_id in tax and row.source for row in table.values())


def test_samples_decode_with_every_label_known(host: PluginHost) -> None:
    spec = host.broker("ampel")
    ingestor = Ingestor(host, "ampel")
    kinds = set()
    for sample in spec.samples():
        delivery = Delivery("sample", headers=sample.headers)
        messages = ingestor.decode(sample.payload, delivery, spec.decoders[sample.decoder])
        assert messages and all(m.scheme == "ampel" for m in messages)
        assert all(r["class_id"] is not None for r in ingestor.records(messages, delivery))
        kinds.add(sample.decoder)
    assert kinds == {"push", "hop"} and not ingestor.unknown_labels


def test_push_decoder_reads_both_campaign_forms() -> None:
    item = emulator.report(ALERT, {2332: 0.7, 2222: 0.3}, 1_700_000_001_000) | {"brokerPublishTimestamp": 17}
    (message,) = decoders.decode_push(json.dumps(item).encode(), Delivery("push"))
    assert message.classifier == ("AMPEL", "v0.8", "ElasticcMonsterAllIncl", "v231203")
    assert dict(zip(message.labels, message.values, strict=True)) == {2330: 0.7, 2222: 0.3}  # as AMPEL writes AGN
    assert message.broker_publish_ms == 17 and message.alert_id == ALERT.alert_id
    legacy = {"alertId": 1, "diaSourceId": 1, "elasticcPublishTimestamp": 1, "brokerIngestTimestamp": 2,
              "brokerName": "AMPEL", "brokerVersion": "v0.2",
              "classifications": [{"classifierName": "A", "classifierParams": "x", "classId": 111, "probability": 1},
                                  {"classifierName": "B", "classifierParams": "y", "classId": 22, "probability": 1}]}
    messages = decoders.decode_push(json.dumps([legacy]).encode(), Delivery("push"))
    assert [(m.classifier[2], list(m.labels)) for m in messages] == [("A", [111]), ("B", [22])]


@pytest.mark.parametrize("name", ["push", "hop"])
@pytest.mark.parametrize("garbage", [b"", b"\x00\x01\xff", b'{"unexpected": 1}', b"[]", b"Obj\x01truncated"])
def test_decoders_raise_on_garbage(host: PluginHost, name: str, garbage: bytes) -> None:
    with pytest.raises(DecodeError):
        host.broker("ampel").decoders[name](garbage, Delivery("garbage"))


def test_hop_decoder_refuses_other_hop_formats() -> None:
    blob = emulator.avro_blob([emulator.lsst_report(ALERT, {2222: 1.0})])
    assert decoders.decode_hop(blob, Delivery("t", headers=(("_format", b"avro"),)))
    with pytest.raises(DecodeError, match="json"):
        decoders.decode_hop(blob, Delivery("t", headers=(("_format", b"json"),)))


def test_ampels_client_logs_in_and_pushes_to_serve(host: PluginHost, tmp_path) -> None:
    db = tmp_path / "serve.db"
    store = open_store(db)
    store.add_user("ampel", hash_password("correct horse"))
    store.close()
    vector = {2332: 0.6, 2325: 0.3, 2222: 0.1}
    items = [emulator.report(ALERT, vector, 1_700_000_001_000) | {"brokerPublishTimestamp": 1_700_000_002_000}]
    with serve_in_thread(create_app(host, db)) as url:
        with pytest.raises(Exception, match="wrong user name or password"):
            emulator.TomSession(url, "ampel", "wrong")
        session = emulator.TomSession(url, "ampel", "correct horse")
        first = session.put(items)
        again = session.put(items)  # a resend stores nothing new
        session.close()
    assert first["num_loaded"] == 1 and first["brokerMessageId"] >= 1
    assert again == {"brokerMessageId": -1, "num_loaded": 0, "num_received": 1, "num_rejected": 0}
    with closing(sqlite3.connect(db)) as conn:
        broker, publish, top = conn.execute(
            "SELECT c.broker, m.broker_publish_ms, m.top_class_id FROM messages m JOIN classifiers c"
            " USING (classifier_id)").fetchone()
        classes = dict(conn.execute("SELECT native_class, class_id FROM classifications").fetchall())
    assert broker == "ampel" and publish == 1_700_000_002_000 and top == 2332
    assert classes == {"2330": 2332, "2320": 2325, "2222": 2222}  # AMPEL's codes kept verbatim beside the mapping


@pytest.mark.kafka
def test_hopskotch_reports_through_kafka_stored_once(kafka_broker, produce, tmp_store, kafka_client_config,
                                                     host: PluginHost) -> None:
    topic = f"ampel.lsst.test-{uuid.uuid4().hex[:8]}"
    blob = emulator.avro_blob([emulator.lsst_report(ALERT, {2332: 0.9, 2227: 0.1})])
    produce(topic, [blob, blob, b"not avro"], headers=[("_format", b"avro")])  # a redelivery and garbage
    stats = listen(Ingestor(host, "ampel", tmp_store), ListenOptions(
        bootstrap=kafka_broker.bootstrap, topics=(topic,), group_id=f"t-{uuid.uuid4().hex}", start="earliest",
        max_messages=3, client_config=kafka_client_config))
    assert (stats.consumed, stats.stored, stats.duplicates, stats.dead_letters) == (3, 1, 1, 1)
    row = tmp_store.conn.execute("SELECT dia_object_id, alert_id, top_class_id, content_hash FROM messages").fetchone()
    assert row[:3] == (555, None, 2332) and row[3]
    (letter,) = tmp_store.dead_letters("ampel")
    assert letter.payload == b"not avro" and "AvroBlob" in letter.error


@pytest.mark.kafka
def test_emulator_pushes_through_an_in_process_serve_in_the_demo(kafka_broker, kafka_client_config, tmp_path) -> None:
    db = tmp_path / "demo.db"
    summary = run_demo(PluginHost(), DemoOptions(db=db, objects=3, seed=1, bootstrap=kafka_broker.bootstrap,
                                                 brokers=("ampel",), client_config=kafka_client_config))
    sent, info = summary["alerts_sent"], summary["brokers"]["ampel"]
    assert sent > 0 and info["messages"] == sent and info["dead_letters"] == 0
    with closing(sqlite3.connect(db)) as conn:
        topics = {r[0] for r in conn.execute("SELECT DISTINCT topic FROM messages")}
        no_publish = conn.execute("SELECT COUNT(*) FROM messages WHERE broker_publish_ms IS NULL").fetchone()[0]
        leftover_users = conn.execute("SELECT COUNT(*) FROM users").fetchone()[0]
        unknown = conn.execute("SELECT COUNT(*) FROM classifications WHERE class_id IS NULL").fetchone()[0]
    assert topics == {"REST_push /elasticc2/brokermessage/"}
    assert no_publish == 0 and leftover_users == 0 and unknown == 0


class TestConformance(PluginConformance):
    plugin = "ampel"
