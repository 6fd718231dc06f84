"""alertmux-ampel: the AMPEL broker (https://ampelproject.github.io) as an alertmux plugin.

* Push: AMPEL sent its ELAsTiCC classifications to the DESC TOM with HTTP PUTs; ``alertmux serve`` takes them the
  same way and hands items whose ``brokerName`` is ``AMPEL`` to this plugin's decoder (:mod:`alertmux_ampel.decoders`).
* Kafka: AMPEL's Hopskotch output, ``LSSTReport`` records in hop AvroBlobs (``alertmux listen --broker ampel``;
  SASL_SSL SCRAM-SHA-512 at ``kafka.scimma.org`` is hop-client's default).
* The ``ampel`` normalizer, with AMPEL's taxonomy quirks mapped explicitly (:mod:`alertmux_ampel.vocabulary`).
* An emulator that logs in and pushes like AMPEL's client (:mod:`alertmux_ampel.emulator`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from alertmux import BrokerSpec, EmulatorSpec, KafkaTransport, NormalizerSpec, hookimpl
from alertmux.config import BrokerSettings
from alertmux.emulation import AlertSeen
from alertmux.specs import PushTransport, SamplePayload
from alertmux_ampel import decoders, emulator, vocabulary

__version__ = "0.1.0"
NAME = "ampel"
EXAMPLE_TOPICS = ("ampel.lsst.extragalactic-infants", "ampel.lsst.extragalactic-transients")
"""Topics of AMPEL's example Hopskotch configurations (Ampel-HU-astro examples/vroprep_*.yml); the production topic
names are not published: set ``topics`` in ``[brokers.ampel]``."""


class AmpelSettings(BrokerSettings):
    """``[brokers.ampel]``: the common broker keys plus what the emulator needs to push.

    For the Hopskotch output set ``bootstrap = "kafka.scimma.org:9092"``, ``security_protocol = "SASL_SSL"``,
    ``sasl_mechanism = "SCRAM-SHA-512"``, ``username`` and ``password = "${HOP_PASSWORD}"`` (hop-client's defaults).
    """

    serve_url: str | None = None
    """Where ``alertmux emulate ampel`` pushes (an ``alertmux serve``, or a TOM)."""


def _samples() -> Iterator[SamplePayload]:
    """Payloads synthesized from AMPEL's code (no captured AMPEL message is public)."""
    alert = AlertSeen(alert_id=102879800007, dia_source_id=102879800007, dia_object_id=1028798,
                      published_ms=1_700_000_000_000, true_class=2332, detections=4)
    vector = {2332: 0.62, 2222: 0.2, 2325: 0.1, 2227: 0.08}
    pushed = emulator.report(alert, vector, 1_700_000_001_500) | {"brokerPublishTimestamp": 1_700_000_002_000}
    yield SamplePayload("push-elasticc2", json.dumps(pushed).encode(), "push",
                        "synthesized: the JSON AMPEL's ElasticcTomClient PUT to /elasticc2/brokermessage/, AGN as 2330 "
                        "and IIn as 2227 as AMPEL writes them")
    entry = {"classifierName": "ElasticcLiveSNGuessParsnip", "classifierParams": "XGBUnified+Parsnip05"}
    legacy = {"alertId": 208089362038, "diaSourceId": 208089362038, "elasticcPublishTimestamp": 1_664_000_000_000,
              "brokerIngestTimestamp": 1_664_000_002_000, "brokerName": "AMPEL", "brokerVersion": "v0.4",
              "classifications": [entry | {"classId": c, "probability": p}
                                  for c, p in ((21, 0.1), (22, 0.05), (2222, 0.6), (2224, 0.25), (0, 0.0))]}
    yield SamplePayload("push-elasticc-2022", json.dumps([legacy]).encode(), "push",
                        "synthesized: a 2022 elasticc.v0_9 report as T2ElasticcReport built them (2022 parents 21/22 "
                        "beside ELAsTiCC2 parsnip leaves, 0 for 'do not know')")
    report = emulator.lsst_report(alert, vector)
    report["classification"].append({"name": "T2RunParsnipRiseDecline", "version": "0.1", "info": None, "models": [
        {"model": "parsnip_elasticc", "probabilities": {"SNIa": 0.7, "SNII": 0.2, "SNIbc": 0.1}}]})
    yield SamplePayload("hop-lsstreport", emulator.avro_blob([report]), "hop",
                        "synthesized from the LSSTReport model (Ampel-HU-astro ampel/contrib/hu/model/LSSTReport.py)"
                        " as a hop AvroBlob", headers=(("_format", b"avro"),))


@hookimpl
def alertmux_brokers() -> Iterator[BrokerSpec]:
    """AMPEL: REST pushes to ``alertmux serve`` and LSSTReports on Hopskotch."""
    yield BrokerSpec(
        name=NAME,
        description="AMPEL: ELAsTiCC classifications pushed to `alertmux serve` (DESC TOM REST form) and "
                    "LSSTReport hop AvroBlobs on Hopskotch",
        kafka=KafkaTransport(decode=decoders.decode_hop, topics=EXAMPLE_TOPICS,
                             description="LSSTReport records in hop AvroBlobs (Avro container, header _format: avro)"),
        decoders={"push": decoders.decode_push, "hop": decoders.decode_hop},
        push=PushTransport(decode=decoders.decode_push, broker_names=("AMPEL",),
                           description="PUT /elasticc2/brokermessage/ (and /elasticc/ for 2022), as to the DESC TOM"),
        config_model=AmpelSettings,
        emulator=EmulatorSpec(run=emulator.run_emulator, output_topics=emulator.output_topics, answers_per_alert=1),
        homepage="https://ampelproject.github.io",
        samples=_samples,
    )


@hookimpl
def alertmux_classification_normalizers() -> Iterator[NormalizerSpec]:
    """AMPEL's class ids (both ELAsTiCC schemes, with its quirks) and model labels onto ELAsTiCC2."""
    yield NormalizerSpec(scheme=vocabulary.SCHEME, description="AMPEL class ids and parsnip/xgb labels",
                         table=vocabulary.TABLE)
