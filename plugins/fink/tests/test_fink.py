"""Fink: vocabularies, decoders on the real payloads of ../shared/data/brokers/fink, the emulator read back by the real
fink-client, the REST poll against a loopback stand-in of Fink's API, and the conformance suite."""

from __future__ import annotations

import gzip
import json
import sqlite3
import time
import uuid
from contextlib import closing
from pathlib import Path
from urllib.parse import parse_qs

import fastavro
import pytest
from alertmux_fink import api, decoders, emulator, vocabulary

from alertmux import DecodeError, Delivery
from alertmux.emulation import AlertSeen
from alertmux.host import PluginHost
from alertmux.http import RetryPolicy
from alertmux.ingest import Ingestor
from alertmux.kafka import ListenOptions, listen
from alertmux.rest import PollOptions, poll
from alertmux.serde import schemaless_encode
from alertmux.sources.elasticc_files import decode_alert_payload
from alertmux.store import open_store
from alertmux.taxonomy import ELASTICC2, taxonomy
from alertmux.testing import PluginConformance, SamplePayload, json_app

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "dev.py").exists())
SHARED = ROOT.parent / "shared" / "data" / "brokers" / "fink"
LSST_SCHEMA = SHARED / "lsst" / "avro_schema_ftransfer_lsst_2026-03-18_803281.json"
ZTF_FILES = ("ztf/part-3-305711.avro", "ztf/fink-broker-sample-alert-1.avro")


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost()


def null_record(schema: dict, named: dict) -> dict:
    """A record of ``schema`` with every nullable field null (what Fink writes for an alert it knows little of)."""
    def fill(node):
        if isinstance(node, str):
            return fill(named[node]) if node in named else None
        if isinstance(node, list):
            return None if "null" in node else fill(node[0])
        if node["type"] == "record":
            return {f["name"]: fill(f["type"]) for f in node["fields"]}
        return None
    return fill(schema)


def real_lsst_message(cats_class: int, cats_score: float | None, snn: float | None,
                      early: float | None) -> tuple[bytes, bytes]:
    """(value, key) of a livestream message written with Fink's real LSST schema, the schema JSON as the key."""
    raw = json.loads(LSST_SCHEMA.read_text())
    record = null_record(raw, raw["__named_schemas"])
    record["diaSourceId"] = record["diaSource"]["diaSourceId"] = 170094456272322680
    record["diaObject"]["diaObjectId"] = 170028485706776685
    record["fink_broker_version"], record["fink_science_version"] = "4.1", "8.39.0"
    record["clf"].update(cats_class=cats_class, cats_score=cats_score, snnSnVsOthers_score=snn, earlySNIa_score=early)
    record["pred"].update(main_label_classifier=cats_class, main_label_crossmatch="RRLyr")
    return schemaless_encode(record, fastavro.parse_schema(raw)), LSST_SCHEMA.read_bytes()


def shared_samples() -> list[SamplePayload]:
    """Every Fink payload in ../shared, as the broker sends it (the ELAsTiCC input alert becomes Fink's answer)."""
    samples = [SamplePayload(name, (SHARED / name).read_bytes(), "kafka", "fink-client datatest") for name in ZTF_FILES]
    value, key = real_lsst_message(11, 0.9797, 0.0686, -1.0)
    samples.append(SamplePayload("lsst-real-schema", value, "kafka", "Fink's LSST schema JSON", key=key))
    (alert,) = decode_alert_payload(gzip.decompress((SHARED / "elasticc/alert_mjd60674.0512_obj747_src1494043.avro.gz")
                                                    .read_bytes()))
    record = fink_elasticc_answer(alert["alertId"], alert["diaSource"]["diaSourceId"])
    samples.append(SamplePayload("elasticc-2022-answer", json.dumps(record).encode(), "elasticc2022",
                                 "Fink's 2022 answer to the shared ELAsTiCC alert"))
    return samples


def fink_elasticc_answer(alert_id: int, source_id: int) -> dict:
    from alertmux_fink import elasticc2022_record

    return elasticc2022_record(alert_id, source_id, 1_664_000_000_000, 1_664_000_001_000,
                               {"AGN classifier": 0.1, "SuperNNova SN Ia classifier": 0.7, "EarlySN classifier": 0.3},
                               (11, 0.8), (113, 0.6))


# -- vocabularies -------------------------------------------------------------------------------------------------
def test_every_row_lands_in_elasticc2_with_a_source(host: PluginHost) -> None:
    tax = taxonomy(ELASTICC2)
    normalizers = host.normalizers()
    for scheme in (vocabulary.CATS, vocabulary.MAIN_LABEL, vocabulary.SCORES, vocabulary.FINKCLASS, vocabulary.SIMBAD,
                   vocabulary.ELASTICC_2022):
        for label, row in normalizers[scheme].table.items():
            assert row.source.strip(), (scheme, label)
            assert row.class_id in tax or (row.class_id is None and row.kind == "context"), (scheme, label)


def test_cats_parent_codes_land_on_parents_with_explicit_overrides() -> None:
    tax = taxonomy(ELASTICC2)
    table = vocabulary.CATS_TABLE
    assert {c: table[c].class_id for c in (11, 12, 13, 21, 22)} == {11: 2220, 12: 2230, 13: 2240, 21: 2320, 22: 2330}
    assert not any(tax.is_leaf(table[c].class_id) for c in (11, 12, 13, 21, 22))
    assert table[-1].class_id == 300 and "override" in table[-1].source
    assert table["residual"].class_id == 200
    assert vocabulary.elasticc2022_table()[0].class_id == 200  # the 2022 stream's "Others", not Static/Other
    assert vocabulary.elasticc2022_table()[111].class_id == 2222
    assert all(row.kind == "context" for row in vocabulary.MAIN_LABEL_TABLE.values())


def test_simbad_types_map_only_what_elasticc2_has() -> None:
    table = vocabulary.simbad_table()
    assert table["RRLyr"].class_id == table["RR*"].class_id == table["RRLyrae"].class_id == 2323
    assert table["Seyfert_1"].class_id == 2332 and table["QSO"].class_id == 2332
    assert table["Symbiotic*"].class_id is None  # Sy* is a symbiotic star, not a Seyfert
    assert table["Galaxy"].class_id is None and table["Galaxy"].kind == "context"
    assert all(row.kind == "context" for row in table.values())
    finkclass = vocabulary.finkclass_table()
    assert finkclass["Early SN Ia candidate"].class_id == 2222 and finkclass["Tracklet"].class_id is None
    assert finkclass["EB*"].class_id == 2325  # finkclass falls back to the SIMBAD type


# -- decoders -----------------------------------------------------------------------------------------------------
def test_every_shared_payload_decodes_with_known_labels(host: PluginHost) -> None:
    spec = host.broker("fink")
    ingestor = Ingestor(host, "fink")
    counts = {}
    for sample in shared_samples() + list(spec.samples()):
        delivery = Delivery(sample.name, key=sample.key)
        messages = ingestor.decode(sample.payload, delivery, spec.decoders[sample.decoder])
        assert messages, sample.name
        list(ingestor.records(messages, delivery))
        counts[sample.name] = len(messages)
    assert not ingestor.unknown_labels
    with open(SHARED / ZTF_FILES[0], "rb") as handle:
        alerts = len(list(fastavro.reader(handle)))
    assert alerts == 31 and counts[ZTF_FILES[0]] >= 4 * alerts  # finkclass, cdsxmatch and the scores of each
    assert counts[ZTF_FILES[1]] == 1  # 2019: only cdsxmatch (RRLyr)


def test_lsst_message_with_fink_s_real_schema_in_the_key() -> None:
    value, key = real_lsst_message(21, 0.75, 0.0686, -1.0)
    messages = {m.classifier[2]: m for m in decoders.decode_kafka(value, Delivery("fink_x_lsst", key=key))}
    assert set(messages) == {"CATS", "SuperNNova SN vs others", "main_label_classifier", "main_label_crossmatch"}
    cats = messages["CATS"]
    assert cats.classifier == ("Fink", "4.1", "CATS", "8.39.0") and cats.scheme == "fink_cats"
    assert list(cats.labels) == [21, "residual"] and cats.values == pytest.approx([0.75, 0.25])
    assert cats.alert_id == 170094456272322680 and cats.dia_object_id == 170028485706776685
    assert "EarlySNIa" not in messages  # -1: the classifier did not run, no score is made up
    # Without the key, Fink's full schema is unknown: refused, not misread.
    with pytest.raises(DecodeError, match="no schema in the message key"):
        decoders.decode_kafka(value, Delivery("fink_x_lsst"))


def test_not_processed_is_not_classified_with_probability_one(host: PluginHost) -> None:
    value, key = real_lsst_message(-1, None, None, None)
    ingestor = Ingestor(host, "fink")
    records = list(ingestor.records(decoders.decode_kafka(value, Delivery("t", key=key)), Delivery("t")))
    cats = [r for r in records if r["classifier"]["classifierName"] == "CATS"]
    assert [(r["class_id"], r["probability"]) for r in cats] == [(300, 1.0)]


def test_elasticc_2022_others_is_residual(host: PluginHost, tmp_store) -> None:
    record = fink_elasticc_answer(1494043010, 1494043)
    ingestor = Ingestor(host, "fink", tmp_store)
    delivery = Delivery("fink_elasticc-2022fall", key=b"4.1_8.39.0")
    payload = schemaless_encode(record, decoders._elasticc_schema())
    messages = ingestor.decode(payload, delivery)
    assert len(messages) == 5 and {m.scheme for m in messages} == {"fink_elasticc2022"}
    assert tmp_store.write_batch(ingestor.rows(messages, delivery)) == 5
    agn = dict(tmp_store.conn.execute(
        "SELECT native_class, class_id FROM classifications c WHERE classifier_name = 'AGN classifier'").fetchall())
    assert agn == {"221": 2332, "0": 200}


@pytest.mark.parametrize("name", ["kafka", "elasticc2022", "rest"])
@pytest.mark.parametrize("garbage", [b"", b"\x00\x01\x02\xff", b'{"unexpected": "json"}', b"[]", b"Obj\x01truncated",
                                     b"[{\"i:candid\": 1}]"])
def test_decoders_raise_on_garbage(host: PluginHost, name: str, garbage: bytes) -> None:
    with pytest.raises(DecodeError):
        host.broker("fink").decoders[name](garbage, Delivery("garbage"))


def test_a_key_that_is_not_a_schema_is_refused() -> None:
    value, _ = emulator.encode(emulator.lsst_record(AlertSeen(1, 1, 1, None, 2222, 3), {2222: 1.0}, 1_770_000_000_000))
    with pytest.raises(DecodeError, match="not a valid Avro schema"):
        decoders.decode_kafka(value, Delivery("t", key=b'{"type": "nonsense"}'))
    with pytest.raises(DecodeError, match="neither an Avro schema"):
        decoders.decode_kafka(value, Delivery("t", key=b"ZTF21abc"))


def test_decode_command_reads_the_shared_files(run_cli) -> None:
    result = run_cli("decode", "--broker", "fink", *(str(SHARED / name) for name in ZTF_FILES))
    assert result.code == 0, result.err
    names = {r["classifier"]["classifierName"] for r in result.json_lines}
    assert {"finkclass", "cdsxmatch", "SuperNNova SN Ia vs non-Ia"} <= names
    assert any(r["native_class"] == "RRLyr" and r["class_id"] == 2323 for r in result.json_lines)


# -- Kafka and the real client ------------------------------------------------------------------------------------
@pytest.mark.kafka
def test_fink_client_decodes_the_emulator_s_topic(alert_stream, host: PluginHost, tmp_store) -> None:
    from confluent_kafka import Consumer, TopicPartition
    from fink_client.consumer import AlertConsumer

    stream = alert_stream(objects=2, seed=3)
    published = stream.run_emulator(host.broker("fink"), seed=3)
    assert len(published) == stream.sent and all(m.key and m.key.startswith(b"{") for m in published)
    topic = published[0].topic
    # fink-client's own decoding (AlertConsumer.process_message: the schema parsed from the key, then
    # fastavro.schemaless_reader) on the Kafka messages themselves. Its group subscription is left out: it adds the
    # ~23 s consumer-group join of the local broker and exercises librdkafka, not fink-client.
    fink = AlertConsumer([], {"bootstrap.servers": stream.bootstrap, "group.id": f"fink-{uuid.uuid4()}"}, survey="lsst")
    reader = Consumer({"bootstrap.servers": stream.bootstrap, "group.id": f"r-{uuid.uuid4()}"})
    reader.assign([TopicPartition(topic, 0, 0)])
    seen = {}
    try:
        deadline = time.monotonic() + 30
        while len(seen) < stream.sent and time.monotonic() < deadline:
            for message in reader.consume(100, timeout=0.5):
                if message.error() is None:
                    got_topic, alert, key = fink.process_message(message)
                    assert got_topic == topic and json.loads(key)["name"] == "topLevelRecord"
                    seen[alert["diaSourceId"]] = alert
    finally:
        reader.close()
        fink.close()
    assert len(seen) == stream.sent
    # fink-client's alert and alertmux's messages say the same thing.
    ingestor = Ingestor(host, "fink", tmp_store)
    for message in published:
        decoded = {m.classifier[2]: m for m in ingestor.decode(message.payload, Delivery(topic, key=message.key))}
        alert = seen[decoded["CATS"].alert_id]
        assert decoded["main_label_classifier"].labels == [alert["pred"]["main_label_classifier"]]
        assert decoded["SuperNNova SN vs others"].values[0] == pytest.approx(alert["clf"]["snnSnVsOthers_score"])
        if alert["clf"]["cats_class"] != -1:
            assert decoded["CATS"].values[0] == pytest.approx(alert["clf"]["cats_score"])


@pytest.mark.kafka
def test_listen_decodes_keys_and_dead_letters_the_rest(kafka_broker, produce, tmp_store, kafka_client_config,
                                                       host: PluginHost) -> None:
    topic = f"fink_t{uuid.uuid4().hex[:6]}_lsst"
    value, key = real_lsst_message(22, 0.6, 0.1, 0.05)
    produce(topic, [value, value], key=key)
    produce(topic, [b"\x02garbage"], key=b"not a schema")
    stats = listen(Ingestor(host, "fink", tmp_store), ListenOptions(
        bootstrap=kafka_broker.bootstrap, topics=(topic,), group_id=f"t-{uuid.uuid4().hex}", start="earliest",
        max_messages=3, client_config=kafka_client_config))
    assert (stats.consumed, stats.dead_letters) == (3, 1)
    assert stats.stored == 5 and stats.duplicates == 5  # CATS, SNN, early Ia, main label, cross-match; then again
    (letter,) = tmp_store.dead_letters("fink")
    assert letter.payload == b"\x02garbage" and letter.key == b"not a schema"


# -- REST ---------------------------------------------------------------------------------------------------------
def fink_api(rows_by_time: list[dict]):
    """Fink's /api/v1/latests (ZTF): the last n rows of [startdate, stopdate], newest first."""
    def handler(request):
        if request.path == "/api/v1/classes":
            return 200, {"Early SN Ia candidate": "...", "SN candidate": "..."}
        query = {k: v[0] for k, v in parse_qs(request.query).items()}
        start, stop, n = float(query["startdate"]), float(query["stopdate"]), int(query["n"])
        window = [r for r in rows_by_time if start <= r["i:jd"] - api.JD_MJD <= stop]
        window.sort(key=lambda r: -r["i:jd"])
        return 200, window[:n]
    return json_app(handler)


def ztf_rows(count: int, mjd0: float) -> list[dict]:
    return [{"i:candid": 1000 + i, "i:objectId": "ZTF26aamcbly", "i:jd": mjd0 + i * 0.01 + api.JD_MJD,
             "d:snn_snia_vs_nonia": 0.5, "v:classification": "SN candidate"} for i in range(count)]


def test_rest_poll_reads_the_whole_window_page_by_page(http_server, tmp_path, run_cli, monkeypatch) -> None:
    server = http_server(fink_api(ztf_rows(25, 61000.0)))
    for key, value in {"SURVEY": "ztf", "FINK_CLASS": "SN candidate", "PAGE_SIZE": "10", "SINCE_MJD": "60999",
                       "REQUEST_PAUSE": "0"}.items():
        monkeypatch.setenv(f"ALERTMUX__BROKERS__FINK__{key}", value)
    db = str(tmp_path / "poll.db")
    first = run_cli("poll", "--broker", "fink", "--base-url", server.url, "--db", db, "--once")
    assert first.code == 0, first.err
    report = json.loads(first.out)
    assert report["dead_letters"] == 0 and float(report["cursor"]) == pytest.approx(61000.24)
    with closing(sqlite3.connect(db)) as conn:
        alerts = {r[0] for r in conn.execute("SELECT alert_id FROM messages")}
    assert alerts == set(range(1000, 1025))  # three pages, nothing skipped
    queries = [parse_qs(r.query) for r in server.requests]
    assert all(q["class"] == ["SN candidate"] and q["n"] == ["10"] for q in queries)
    again = json.loads(run_cli("poll", "--broker", "fink", "--base-url", server.url, "--db", db, "--once").out)
    assert again["stored"] == 0
    assert float(parse_qs(server.requests[-1].query)["startdate"][0]) == pytest.approx(61000.24)


def test_rest_poll_needs_a_class_or_tag(http_server, tmp_path) -> None:
    from alertmux.errors import UsageError

    host = PluginHost()
    server = http_server(fink_api([]))
    store = open_store(tmp_path / "x.db")
    try:
        with pytest.raises(UsageError, match="tag"):
            poll(Ingestor(host, "fink", store), host.broker("fink").rest,
                 PollOptions(base_url=server.url, once=True, settings={}, policy=RetryPolicy(attempts=1)))
    finally:
        store.close()


class TestConformance(PluginConformance):
    plugin = "fink"

    @classmethod
    def extra_samples(cls):
        # Only the payloads that decode without their Kafka key (the conformance replay sends none) and that fit in
        # one message of the local broker (the 1.7 MB data-transfer file does not: another test reads it).
        return {"fink": [s for s in shared_samples() if s.key is None and len(s.payload) < 900_000]}


@pytest.mark.kafka
def test_check_reports_kafka_and_the_rest_api(kafka_broker, http_server, run_cli, monkeypatch) -> None:
    server = http_server(fink_api([]))
    monkeypatch.setenv("ALERTMUX__BROKERS__FINK__API_URL", server.url)
    monkeypatch.setenv("ALERTMUX__BROKERS__FINK__SURVEY", "ztf")
    result = run_cli("check", "fink", "--bootstrap", kafka_broker.bootstrap, "--timeout", "5")
    lines = {line.split()[1]: line for line in result.out.splitlines()}
    assert lines["kafka"].startswith("ok") and lines["rest"].startswith("ok") and "2 classs" in lines["rest"]


def test_check_says_what_is_missing_without_showing_the_password(run_cli, monkeypatch) -> None:
    monkeypatch.setenv("ALERTMUX__BROKERS__FINK__BOOTSTRAP", "kafka.example.org:24499")
    monkeypatch.setenv("ALERTMUX__BROKERS__FINK__SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("ALERTMUX__BROKERS__FINK__PASSWORD", "fink-secret-pw")
    monkeypatch.setenv("ALERTMUX__BROKERS__FINK__API_URL", "http://127.0.0.1:9/")
    result = run_cli("check", "fink", "--timeout", "1")
    lines = {line.split()[1]: line for line in result.out.splitlines()}
    assert result.code != 0 and "username or password is missing" in lines["credentials"]
    assert "loopback" in lines["kafka"] and "connection refused" in lines["rest"]
    assert "fink-secret-pw" not in result.out + result.err


@pytest.mark.kafka
def test_emulate_command_publishes_on_fink_s_topic_name(kafka_broker, kafka_client_config, tmp_path) -> None:
    import os
    import signal
    import subprocess
    import sys

    from confluent_kafka import Consumer, TopicPartition

    from alertmux.harness import record_source, stream_alerts

    db = tmp_path / "emulate.db"
    store = open_store(db)
    run_id = store.start_run("stream", {})
    alerts = record_source(store, run_id, PluginHost().alert_source("simulated").open(objects=2, seed=5))
    topic = f"alerts-{uuid.uuid4().hex[:8]}"
    sent = stream_alerts(store, run_id, alerts, bootstrap=kafka_broker.bootstrap, topic=topic,
                         client_config=kafka_client_config).sent
    store.close()
    child = subprocess.Popen([str(Path(sys.executable).with_name("alertmux")), "emulate", "fink", "--bootstrap",
                              kafka_broker.bootstrap, "--alert-topic", topic, "--db", str(db)],
                             stderr=subprocess.PIPE, text=True, env=os.environ | {"ALERTMUX_LOOPBACK_ONLY": "1"})
    consumer = Consumer({"bootstrap.servers": kafka_broker.bootstrap, "group.id": "t"} | kafka_client_config)
    keys = []
    try:
        deadline = time.monotonic() + 30
        while len(keys) < sent and time.monotonic() < deadline:
            if "fink_emulated_lsst" in consumer.list_topics(timeout=5).topics:
                if not consumer.assignment():
                    consumer.assign([TopicPartition("fink_emulated_lsst", 0, 0)])
                keys += [m.key() for m in consumer.consume(500, timeout=0.5) if m.error() is None]
            else:
                time.sleep(0.3)
    finally:
        consumer.close()
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=20)
    assert len(keys) == sent, err
    assert child.returncode == 0, err
    assert all(json.loads(key)["name"] == "topLevelRecord" for key in keys)  # the schema travels in the key


@pytest.mark.kafka
def test_demo_runs_every_broker_emulator_at_once(kafka_broker, kafka_client_config, tmp_path) -> None:
    """The issue's acceptance: `alertmux demo --brokers alerce,ampel,fink,antares,lasair`, offline."""
    from alertmux.harness import DemoOptions, run_demo

    names = ("alerce", "ampel", "fink", "antares", "lasair")
    host = PluginHost()
    missing = [n for n in names if n not in host.brokers()]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")
    summary = run_demo(host, DemoOptions(db=tmp_path / "five.db", objects=2, seed=7, bootstrap=kafka_broker.bootstrap,
                                         brokers=names, client_config=kafka_client_config))
    sent = summary["alerts_sent"]
    per_alert = {n: host.broker(n).emulator.answers_per_alert for n in names}
    assert sent > 0 and summary["dead_letters"] == 0
    for name in names:
        info = summary["brokers"][name]
        assert info["messages"] == sent * per_alert[name] and info["classifications"] >= info["messages"], name
        assert info["dead_letters"] == 0, name


def test_rest_poll_follows_objects_through_api_objects(http_server, tmp_path, run_cli, monkeypatch) -> None:
    histories = {"ZTF26aamcbly": ztf_rows(3, 61000.0),
                 "ZTF26aamcblz": [r | {"i:candid": r["i:candid"] + 100, "i:objectId": "ZTF26aamcblz"}
                                  for r in ztf_rows(2, 61000.0)]}

    def handler(request):
        assert request.path == "/api/v1/objects", request.path  # neither /latests nor /tags in this mode
        return 200, histories.get(parse_qs(request.query)["objectId"][0], [])

    server = http_server(json_app(handler))
    for key, value in {"SURVEY": "ztf", "OBJECTS": "ZTF26aamcbly, ZTF26aamcblz", "REQUEST_PAUSE": "0"}.items():
        monkeypatch.setenv(f"ALERTMUX__BROKERS__FINK__{key}", value)
    db = str(tmp_path / "objects.db")
    first = run_cli("poll", "--broker", "fink", "--base-url", server.url, "--db", db, "--once")
    assert first.code == 0, first.err
    assert json.loads(first.out)["dead_letters"] == 0
    with closing(sqlite3.connect(db)) as conn:
        alerts = {r[0] for r in conn.execute("SELECT alert_id FROM messages")}
    assert alerts == {1000, 1001, 1002, 1100, 1101}
    assert [parse_qs(r.query)["objectId"] for r in server.requests] == [["ZTF26aamcbly"], ["ZTF26aamcblz"]]
    histories["ZTF26aamcbly"] = ztf_rows(4, 61000.0)  # one new alert since: only it is stored
    again = json.loads(run_cli("poll", "--broker", "fink", "--base-url", server.url, "--db", db, "--once").out)
    assert again["stored"] >= 1 and again["dead_letters"] == 0
    with closing(sqlite3.connect(db)) as conn:
        assert {r[0] for r in conn.execute("SELECT alert_id FROM messages")} == alerts | {1003}
