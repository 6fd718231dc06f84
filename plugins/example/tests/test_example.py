"""Tests of the example broker plugin: the whole conformance suite, then what is particular to this broker."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import alertmux_example
import pytest

from alertmux import DecodeError, Delivery
from alertmux.testing import AlertStream, PluginConformance, RunCli


class TestConformance(PluginConformance):
    """Entry point, specs, normalizers, samples, garbage, secrets, emulator round trip, dead letters, redelivery."""

    plugin = "example"


def test_decode_maps_every_label_and_keeps_context_apart(run_cli: RunCli, tmp_path: Path) -> None:
    sample = next(s for s in alertmux_example.samples() if s.name == "classification.json")
    path = tmp_path / sample.name
    path.write_bytes(sample.payload)
    result = run_cli("decode", "--broker", "example", str(path))
    assert result.code == 0, result.err
    records = {r["native_class"]: r for r in result.json_lines}
    assert records.keys() == set(json.loads(sample.payload)["probabilities"])
    assert records["SNIa"]["class_id"] == 2222
    assert records["Periodic"]["class_id"] == 2320
    assert records["bogus"]["class_id"] is None and records["bogus"]["kind"] == "context"
    assert records["SNIa"]["classifier"]["brokerName"] == "Example"


@pytest.mark.parametrize("payload", [b'{"alertId": 1, "diaSourceId": 1}', b'{"probabilities": {}}', b"[1, 2]"])
def test_anything_but_a_classification_is_a_decode_error(payload: bytes) -> None:
    with pytest.raises(DecodeError, match="not a classification of the example broker|probabilities"):
        alertmux_example.decode(payload, Delivery("test"))


@pytest.mark.kafka
def test_the_emulator_answers_each_alert_once_with_probabilities_summing_to_one(
    alert_stream: Callable[..., AlertStream],
) -> None:
    stream = alert_stream(objects=2)
    (spec,) = alertmux_example.alertmux_brokers()
    published = stream.run_emulator(spec, seed=1)
    answers = [json.loads(m.payload) for m in published]
    assert sorted(a["alertId"] for a in answers) == sorted(a["alertId"] for a in stream.alerts)
    for a in answers:
        classes = {k: v for k, v in a["probabilities"].items() if k != "bogus"}
        assert set(classes) <= set(alertmux_example.LABELS)
        assert sum(classes.values()) + a["probabilities"]["bogus"] == pytest.approx(1.0, abs=1e-4)
