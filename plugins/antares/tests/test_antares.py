"""ANTARES: vocabularies, the locus decoders, the emulator's loci read back by the real antares-client, the REST poll
against a loopback stand-in of the API v2 (links.next pagination), and the conformance suite."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
import zlib
from contextlib import closing
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from alertmux_antares import ca_file, decoders, emulator, vocabulary

from alertmux import DecodeError, Delivery
from alertmux.emulation import AlertSeen
from alertmux.host import PluginHost
from alertmux.ingest import Ingestor
from alertmux.kafka import ListenOptions, listen
from alertmux.taxonomy import ELASTICC2, taxonomy
from alertmux.testing import PluginConformance, json_app

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "dev.py").exists())
SHARED = ROOT.parent / "shared" / "data" / "brokers" / "antares"
ALERT = AlertSeen(alert_id=555000001, dia_source_id=555000001, dia_object_id=555, published_ms=1_770_000_000_000,
                  true_class=2222, detections=2)


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost()


def test_every_row_lands_in_elasticc2_with_a_source() -> None:
    tax = taxonomy(ELASTICC2)
    for table in (vocabulary.TABLE, vocabulary.TAG_TABLE):
        for label, row in table.items():
            assert row.source.strip(), label
            assert row.class_id in tax or (row.class_id is None and row.kind == "context"), label
    assert {vocabulary.TABLE[c].class_id for c in ("SN II", "SN IIn")} == {2224}
    assert vocabulary.TAG_TABLE["microlensing_candidate"].class_id == 2235
    assert vocabulary.TAG_TABLE["nuclear_transient"].class_id is None  # ambiguous: kept as context
    assert all(row.kind == "context" for row in vocabulary.TAG_TABLE.values())


def test_the_shipped_ca_is_antares_s(host: PluginHost) -> None:
    assert ca_file().read_bytes() == (SHARED / "kafka-ca.pem").read_bytes()


def test_samples_decode_with_known_labels(host: PluginHost) -> None:
    spec = host.broker("antares")
    ingestor = Ingestor(host, "antares")
    for sample in spec.samples():
        messages = ingestor.decode(sample.payload, Delivery(sample.name), spec.decoders[sample.decoder])
        assert messages and all(m.alert_id for m in messages), sample.name
        list(ingestor.records(messages, Delivery(sample.name)))
    assert not ingestor.unknown_labels


def test_unknown_tags_are_kept_and_counted(host: PluginHost, tmp_store) -> None:
    body = emulator.locus(ALERT, {2222: 1.0}, 1_770_000_000_000) | {"tags": ["brand_new_filter", "in_LSSTDDF"]}
    ingestor = Ingestor(host, "antares", tmp_store)
    delivery = Delivery("client.x")
    tmp_store.write_batch(ingestor.rows(decoders.decode_locus(decoders.encode_locus(body), delivery), delivery))
    assert ingestor.unknown_labels == {("antares_tag", "brand_new_filter"): 1}
    rows = dict(tmp_store.conn.execute(
        "SELECT native_class, class_id FROM classifications WHERE native_scheme = 'antares_tag'").fetchall())
    assert rows == {"brand_new_filter": None, "in_LSSTDDF": None}
    top = tmp_store.conn.execute("SELECT top_class_id FROM messages WHERE native_scheme = 'antares'").fetchone()[0]
    assert top == 2222


@pytest.mark.parametrize("name", ["locus", "elasticc", "rest"])
@pytest.mark.parametrize("garbage", [b"", b"\x00\x01\x02\xff", b'{"unexpected": "json"}', zlib.compress(b"\x05\x00"),
                                     zlib.compress(b"not bson at all"), b'{"data": []}'])
def test_decoders_raise_on_garbage(host: PluginHost, name: str, garbage: bytes) -> None:
    with pytest.raises(DecodeError):
        host.broker("antares").decoders[name](garbage, Delivery("garbage"))


def test_a_locus_without_any_id_is_refused() -> None:
    body = {"id": "ANT1", "ra": 1.0, "dec": 2.0, "properties": {"superphot_plus_class": "SN Ia"}, "tags": []}
    with pytest.raises(DecodeError, match="nothing to key it by"):
        decoders.decode_locus(decoders.encode_locus(body), Delivery("t"))


@pytest.mark.kafka
def test_antares_client_decodes_the_emulator_s_loci(alert_stream, host: PluginHost) -> None:
    from antares_client.stream import _parse_message
    from confluent_kafka import Consumer, TopicPartition

    stream = alert_stream(objects=2, seed=4)
    published = stream.run_emulator(host.broker("antares"), seed=4)
    assert len(published) == stream.sent and published[0].topic.startswith("client.")
    # antares-client's own decoding (stream._parse_message: zlib, bson.loads, its pydantic locus models) on the Kafka
    # messages; its KafkaStreamingClient hard-codes SASL_SSL, which the local broker does not speak.
    reader = Consumer({"bootstrap.servers": stream.bootstrap, "group.id": f"r-{uuid.uuid4()}"})
    reader.assign([TopicPartition(published[0].topic, 0, 0)])
    loci = []
    try:
        deadline = time.monotonic() + 30
        while len(loci) < stream.sent and time.monotonic() < deadline:
            loci += [_parse_message(m) for m in reader.consume(100, timeout=0.5) if m.error() is None]
    finally:
        reader.close()
    assert len(loci) == stream.sent
    for locus, message in zip(loci, published, strict=True):
        ours = {m.classifier[2]: m for m in decoders.decode_locus(message.payload, message.delivery)}
        assert locus.locus_id == message.key.decode()
        assert ours["superphot_plus"].labels[0] == locus.properties["superphot_plus_class"]
        assert ours["superphot_plus"].values[0] == pytest.approx(locus.properties["superphot_plus_class_prob"])
        assert ours["tags"].labels == sorted(locus.tags)
        assert ours["tags"].alert_id == locus.properties["newest_alert_id"]


def test_antares_client_reads_the_old_shape_as_we_do() -> None:
    from antares_client.stream import _parse_message

    class Message:  # the two methods _parse_message calls on a confluent_kafka.Message
        def __init__(self, value: bytes) -> None:
            self._value = value

        def error(self) -> None:
            return None

        def value(self) -> bytes:
            return self._value

    sample = next(s for s in PluginHost().broker("antares").samples() if s.name == "locus-old-shape")
    locus = _parse_message(Message(sample.payload))
    ours = decoders.decode_locus(sample.payload, Delivery("t"))
    assert locus.locus_id == "ANT2026abcde" and ours[0].labels[0] == locus.properties["superphot_plus_class"]


@pytest.mark.kafka
def test_listen_reads_loci_and_elasticc_and_dead_letters_garbage(kafka_broker, produce, tmp_store,
                                                                 kafka_client_config, host: PluginHost) -> None:
    samples = {s.name: s for s in host.broker("antares").samples()}
    topic = f"client.t{uuid.uuid4().hex[:6]}"
    produce(topic, [samples["locus-new-shape"].payload, samples["elasticc2"].payload, b"\x78\x9cgarbage",
                    samples["locus-new-shape"].payload])
    stats = listen(Ingestor(host, "antares", tmp_store), ListenOptions(
        bootstrap=kafka_broker.bootstrap, topics=(topic,), group_id=f"t-{uuid.uuid4().hex}", start="earliest",
        max_messages=4, client_config=kafka_client_config))
    assert (stats.consumed, stats.stored, stats.duplicates, stats.dead_letters) == (4, 3, 2, 1)
    schemes = {r[0] for r in tmp_store.conn.execute("SELECT native_scheme FROM messages")}
    assert schemes == {"antares", "antares_tag", "elasticc2"}


# -- REST ---------------------------------------------------------------------------------------------------------
def loci_api(loci: list[dict], page: int = 3):
    """ANTARES's GET /v2/loci: Elasticsearch range on newest_alert_observation_time, links.next pagination."""
    def handler(request):
        if request.path.endswith("/loci/statistics"):
            return 200, {"data": {"tags": {"superphot_plus_classified": len(loci)}}}
        query = {k: v[0] for k, v in parse_qs(request.query).items()}
        if "cursor" in query:
            start, since = int(query["cursor"]), float(query["since"])
        else:
            es = json.loads(query["elasticsearch_query"])
            since = es["query"]["bool"]["filter"][0]["range"]["properties.newest_alert_observation_time"]["gte"]
            start = 0
        chosen = sorted((item for item in loci
                         if item["attributes"]["properties"]["newest_alert_observation_time"] >= since),
                        key=lambda item: item["attributes"]["properties"]["newest_alert_observation_time"])
        chunk = chosen[start:start + page]
        following = (f"http://127.0.0.1:{request.headers['Host'].rsplit(':', 1)[-1]}/v2/loci?cursor={start + page}"
                     f"&since={since}") if start + page < len(chosen) else None
        return 200, {"data": chunk, "meta": {"count": len(chunk)}, "links": {"self": "...", "next": following}}
    return json_app(handler)


def rest_loci(count: int, mjd0: float) -> list[dict]:
    out = []
    for i in range(count):
        body = emulator.locus(AlertSeen(900 + i, 900 + i, 90 + i, None, 2222, 3), {2222: 0.9, 2224: 0.1}, 0)
        body["properties"]["newest_alert_observation_time"] = mjd0 + i
        out.append({"id": body["id"], "type": "locus", "attributes": {k: v for k, v in body.items() if k != "id"}})
    return out


def test_rest_poll_follows_links_next_and_resumes(http_server, tmp_path, run_cli, monkeypatch) -> None:
    loci = rest_loci(7, 61000.0)
    server = http_server(loci_api(loci))
    monkeypatch.setenv("ALERTMUX__BROKERS__ANTARES__SINCE_MJD", "60000")
    monkeypatch.setenv("ALERTMUX__BROKERS__ANTARES__TAG", "superphot_plus_classified")
    db = str(tmp_path / "poll.db")
    first = run_cli("poll", "--broker", "antares", "--base-url", f"{server.url}/v2/", "--db", db, "--once")
    assert first.code == 0, first.err
    report = json.loads(first.out)
    assert report["pages"] == 3 and report["stored"] == 14 and report["cursor"] == repr(61006.0)
    es = json.loads(parse_qs(server.requests[0].query)["elasticsearch_query"][0])
    assert {"term": {"tags": "superphot_plus_classified"}} in es["query"]["bool"]["filter"]
    loci.append(rest_loci(8, 61000.0)[-1])  # a new locus observed later
    second = json.loads(run_cli("poll", "--broker", "antares", "--base-url", f"{server.url}/v2/", "--db", db,
                                "--once").out)
    assert second["stored"] == 2 and second["duplicates"] == 2  # the new one, and the edge of the window again
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT COUNT(DISTINCT alert_id) FROM messages").fetchone()[0] == 8


@pytest.mark.kafka
def test_check_reports_rest_and_kafka(kafka_broker, http_server, run_cli, monkeypatch) -> None:
    server = http_server(loci_api(rest_loci(2, 61000.0)))
    monkeypatch.setenv("ALERTMUX__BROKERS__ANTARES__API_URL", f"{server.url}/v2/")
    result = run_cli("check", "antares", "--bootstrap", kafka_broker.bootstrap, "--timeout", "5")
    lines = {line.split()[1]: line for line in result.out.splitlines()}
    assert lines["config"].startswith("ok") and lines["kafka"].startswith("ok") and lines["rest"].startswith("ok")


class TestConformance(PluginConformance):
    plugin = "antares"


def test_decode_command_reads_antares_payloads(run_cli, tmp_path, host: PluginHost) -> None:
    paths = []
    for sample in host.broker("antares").samples():
        path = tmp_path / f"{sample.name}.bin"
        path.write_bytes(sample.payload)
        paths.append(str(path))
    result = run_cli("decode", "--broker", "antares", *paths)
    assert result.code == 0, result.err
    names = {r["classifier"]["classifierName"] for r in result.json_lines}
    assert names == {"superphot_plus", "tags", "LightGBM"}
    assert any(r["native_class"] == "SN Ia" and r["class_id"] == 2222 for r in result.json_lines)
