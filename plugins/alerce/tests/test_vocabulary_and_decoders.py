"""ALeRCE's vocabularies, topic names and decoders, on payloads synthesized from ALeRCE's published schemas."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
from alertmux_alerce import decoders, topics, vocabulary

from alertmux import DecodeError, Delivery
from alertmux.host import PluginHost
from alertmux.ingest import Ingestor
from alertmux.taxonomy import ELASTICC2, taxonomy

SHARED_DECODERS = ("elasticc", "rest", "lc_classification", "stamp")


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost()


def test_every_row_lands_in_elasticc2_with_a_source() -> None:
    tax = taxonomy(ELASTICC2)
    for label, row in vocabulary.TABLE.items():
        assert row.source.strip(), label
        assert row.class_id is None and row.kind == "context" or row.class_id in tax, label
    # ALeRCE's ELAsTiCC ClassMapper is the taxonomy's own names -> ids.
    for name, code in vocabulary.ELASTICC_CLASS_NAMES.items():
        assert tax.name(code) == name


def test_coarse_and_context_labels_land_on_parents_not_leaves() -> None:
    tax = taxonomy(ELASTICC2)
    for label in ("SN", "VS", "Transient", "Stochastic", "Periodic"):
        class_id = vocabulary.TABLE[label].class_id
        assert class_id is not None and not tax.is_leaf(class_id), label
    assert vocabulary.TABLE["SN"].class_id == 2220
    assert vocabulary.TABLE["asteroid"].class_id is None and vocabulary.TABLE["asteroid"].kind == "context"
    assert {vocabulary.TABLE[x].class_id for x in ("SNII", "SNIIb", "SNIIn")} == {2224}
    assert {vocabulary.TABLE[x].class_id for x in ("QSO", "AGN", "Blazar")} == {2332}
    assert all(label in vocabulary.TABLE for label in vocabulary.BHRF_CLASSES)


def test_window_pattern_is_the_desc_window_exactly() -> None:
    import re

    start = date(2026, 11, 25)
    pattern = re.compile(topics.window_pattern(start))
    first, last = start - timedelta(days=36), start + timedelta(days=2)
    for day in (first, start, last, date(2026, 12, 1) - timedelta(days=5)):
        assert pattern.search(topics.daily_topic("balto", day)), day
    for day in (first - timedelta(days=1), last + timedelta(days=1), date(2099, 12, 31), date(2019, 1, 1)):
        assert not pattern.search(topics.daily_topic("balto", day)), day
    assert not pattern.search("lc_classifier_balto_2026112")  # not eight digits
    assert not pattern.search("other_balto_20261125")
    assert "\\d" not in pattern.pattern  # librdkafka's POSIX regex has no \d


def test_ztf_names_become_alerces_integers_and_back() -> None:
    assert decoders.ztf_number("ZTF20aaelulu") == 20 * 26**7 + decoders.ztf_number("ZTF00aaelulu")
    for name in ("ZTF20aaelulu", "ZTF18abcdefg", "ZTF00aaaaaaa", "ZTF99zzzzzzz"):
        assert decoders.ztf_name(decoders.ztf_number(name)) == name
    with pytest.raises(DecodeError):
        decoders.decode_rest(json.dumps({"oid": "not-an-id", "probabilities": [
            {"classifier_name": "c", "class_name": "SNIa", "probability": 1.0}]}).encode(), Delivery("x"))


def test_topic_names_and_dates() -> None:
    assert topics.daily_topic("balto", date(2023, 8, 7)) == "lc_classifier_balto_20230807"
    assert topics.daily_topic("balto", date(2023, 8, 7), "run1") == "lc_classifier_balto_run1_20230807"
    assert topics.topic_date("lc_classifier_balto_20230807") == date(2023, 8, 7)
    assert topics.topic_date("lc_classifier_balto_2023080x") is None


def test_samples_decode_into_known_labels(host: PluginHost) -> None:
    spec = host.broker("alerce")
    ingestor = Ingestor(host, "alerce")
    seen = set()
    for sample in spec.samples():
        messages = ingestor.decode(sample.payload, Delivery("sample", headers=sample.headers),
                                   spec.decoders[sample.decoder])
        assert messages, sample.name
        seen.add(sample.decoder)
        for record in ingestor.records(messages, Delivery("sample")):
            assert record["class_id"] is not None or record["kind"] == "context", (sample.name, record)
    assert seen == set(SHARED_DECODERS)
    assert not ingestor.unknown_labels


def test_elasticc_message_keeps_alerces_identity_and_all_classes(host: PluginHost) -> None:
    sample = next(s for s in host.broker("alerce").samples() if s.decoder == "elasticc")
    (message,) = decoders.decode_elasticc(sample.payload, Delivery("t"))
    assert message.classifier == ("ALeRCE", "6.1.0", "BaltoClassifier", "6.1.0")
    assert message.scheme == "elasticc2"
    assert len(message.labels) == 32 and set(message.labels) == set(vocabulary.ELASTICC_CLASS_NAMES.values())
    assert message.alert_id == 102879800007 and message.broker_ingest_ms == 1_700_000_003_210
    assert dict(zip(message.labels, message.values, strict=True))[2222] == pytest.approx(0.71)


def test_rest_answer_groups_by_classifier_and_version() -> None:
    rows = [{"oid": "17", "classifier_name": "lc_classifier", "classifier_version": "1.1.0", "class_name": "SNIa",
             "probability": 0.9, "ranking": 1},
            {"oid": "17", "classifier_name": "lc_classifier", "classifier_version": "1.1.0", "class_name": "AGN",
             "probability": 0.1, "ranking": 2},
            {"oid": "17", "classifier_name": "stamp_classifier", "classifier_version": "2", "class_name": "SN",
             "probability": 1.0, "ranking": 1}]
    messages = decoders.decode_rest(json.dumps(rows).encode(), Delivery("rest"))
    by_name = {m.classifier[2]: m for m in messages}
    assert set(by_name) == {"lc_classifier", "stamp_classifier"}
    assert by_name["lc_classifier"].labels == ["AGN", "SNIa"]  # sorted: a stable content hash
    assert by_name["lc_classifier"].dia_object_id == 17 and by_name["lc_classifier"].alert_id is None


def test_unknown_label_is_counted_and_kept_verbatim(host: PluginHost, tmp_store) -> None:
    rows = [{"oid": 5, "classifier_name": "lc_classifier", "classifier_version": "9", "class_name": "Kilonova-ish",
             "probability": 0.6, "ranking": 1},
            {"oid": 5, "classifier_name": "lc_classifier", "classifier_version": "9", "class_name": "SNIa",
             "probability": 0.4, "ranking": 2}]
    ingestor = Ingestor(host, "alerce", tmp_store)
    delivery = Delivery("rest")
    rows_out = ingestor.rows(ingestor.decode(json.dumps(rows).encode(), delivery, decoders.decode_rest), delivery)
    assert tmp_store.write_batch(rows_out) == 1
    assert ingestor.unknown_labels == {("alerce", "Kilonova-ish"): 1}
    stored = tmp_store.conn.execute(
        "SELECT native_class, class_id FROM classifications ORDER BY native_class").fetchall()
    assert stored == [("Kilonova-ish", None), ("SNIa", 2222)]
    # The unknown label is not the top class: the known one is, although its probability is lower.
    assert tmp_store.conn.execute("SELECT top_class_id FROM messages").fetchone()[0] == 2222


@pytest.mark.parametrize("name", SHARED_DECODERS)
@pytest.mark.parametrize("garbage", [b"", b"\x00\x01\x02\xff", b'{"unexpected": "json"}', b"[]",
                                     b'[{"oid": 1, "class_name": "SNIa"}]'])
def test_decoders_raise_on_garbage(host: PluginHost, name: str, garbage: bytes) -> None:
    with pytest.raises(DecodeError):
        host.broker("alerce").decoders[name](garbage, Delivery("garbage"))


def test_decode_command_reads_alerce_payloads(run_cli, tmp_path, host: PluginHost) -> None:
    paths = []
    for sample in host.broker("alerce").samples():
        path = tmp_path / f"{sample.name}.bin"
        path.write_bytes(sample.payload)
        paths.append(str(path))
    result = run_cli("decode", "--broker", "alerce", *paths)
    assert result.code == 0, result.err
    records = result.json_lines
    assert {r["classifier"]["classifierName"] for r in records} >= {"BaltoClassifier", "lc_classifier",
                                                                      "stamp_classifier_2025_beta"}
    assert all(r["native_class"] for r in records)
