"""A local ALeRCE: classifies the harness's alerts and answers on ALeRCE's own Kafka topics and REST routes.

Kafka: for each alert, each emulated ELAsTiCC2 classifier publishes a schemaless Avro ``elasticc.v0_9_1``
brokerClassification to its daily topic ``lc_classifier_<classifier>_YYYYMMDD`` (a harness run's id is inserted
before the date so runs on one cluster stay apart), filled as ALeRCE's ``ElasticcParser`` filled them: brokerName
``ALeRCE``, brokerVersion = classifierParams = model version, all 32 ``ClassMapper`` classes, those the model did not
output at 0.0. The classifier names and versions are the ELAsTiCC2 roster's (``BaltoClassifier`` 6.1.0,
``MessiClassifier`` 3.1.0); the topic of Balto is attested (``lc_classifier_balto_20230807``), Messi's follows the
same one-topic-per-classifier rule (inference).

REST (option ``rest_port``): the object lists and probabilities of both APIs (:mod:`alertmux_alerce.api`), for a
light-curve classifier named ``lc_classifier`` (the API's default) with ALeRCE's 15 ZTF classes, updated as alerts
are classified. ``AlerceRestEmulator`` can also be filled directly (tests) and told to fail the next requests with
a status and a ``Retry-After`` header.

The behaviour is :func:`alertmux.emulation.behaviour`'s confusion matrices (option ``mode``), seeded by ``seed``.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from alertmux import EmulatorContext
from alertmux.emulation import AlertSeen, alert_batches, behaviour
from alertmux.harness import ensure_topics
from alertmux.kafka import make_producer
from alertmux.serde import load_schema, schemaless_encode
from alertmux.store import now_ms
from alertmux_alerce.api import MJD_UNIX_EPOCH
from alertmux_alerce.topics import daily_topic, today
from alertmux_alerce.vocabulary import ELASTICC_CLASS_NAMES, TABLE

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EmulatedClassifier:
    """One ALeRCE ELAsTiCC2 classifier the emulator plays."""

    short: str
    """The name in its topic (``lc_classifier_<short>_YYYYMMDD``)."""
    name: str
    version: str


CLASSIFIERS = (EmulatedClassifier("balto", "BaltoClassifier", "6.1.0"),
               EmulatedClassifier("messi", "MessiClassifier", "3.1.0"))
LC_CLASSIFIER = "lc_classifier"
LC_CLASSES = ("SNIa", "SNIbc", "SNII", "SLSN", "QSO", "AGN", "Blazar", "CV/Nova", "YSO", "LPV", "E", "DSCT", "RRL",
              "CEP", "Periodic-Other")
"""ALeRCE's 15-class ``lc_classifier`` (tom_base#1288)."""


def output_topics(run_id: str) -> tuple[str, ...]:
    """Today's topic of each emulated classifier (with the run id when the harness gives one)."""
    day = today()
    return tuple(daily_topic(c.short, day, run_id) for c in CLASSIFIERS)


def elasticc_record(alert: AlertSeen, classifier: EmulatedClassifier, vector: Mapping[int, float],
                    ingest_ms: int) -> dict[str, Any]:
    """The brokerClassification ALeRCE's ElasticcParser would have built for this alert."""
    codes = list(ELASTICC_CLASS_NAMES.values()) + [c for c in vector if c not in ELASTICC_CLASS_NAMES.values()]
    return {
        "alertId": alert.alert_id,
        "diaSourceId": alert.dia_source_id,
        "elasticcPublishTimestamp": alert.published_ms if alert.published_ms is not None else ingest_ms,
        "brokerIngestTimestamp": ingest_ms,
        "brokerName": "ALeRCE",
        "brokerVersion": classifier.version,
        "classifierName": classifier.name,
        "classifierParams": classifier.version,
        "classifications": [{"classId": code, "probability": float(vector.get(code, 0.0))} for code in codes],
    }


def lc_probabilities(vector: Mapping[int, float]) -> dict[str, float]:
    """An ELAsTiCC2 probability vector seen through ``lc_classifier``'s 15 classes.

    A class id several labels share (AGN: QSO, AGN, Blazar) is split evenly between them; classes the classifier has
    no label for (KN, M-dwarf flares...) drop out and the rest is renormalized, as a classifier without them would.
    """
    by_class: dict[int, list[str]] = {}
    for label in LC_CLASSES:
        class_id = TABLE[label].class_id
        if class_id is not None:
            by_class.setdefault(class_id, []).append(label)
    out = {label: 0.0 for label in LC_CLASSES}
    for class_id, p in vector.items():
        for label in by_class.get(class_id, ()):
            out[label] += p / len(by_class[class_id])
    total = sum(out.values())
    if total > 0:
        out = {label: p / total for label, p in out.items()}
    return out


@dataclass(slots=True)
class _Object:
    oid: int
    firstmjd: float
    lastmjd: float
    ndet: int
    probabilities: dict[str, float] = field(default_factory=dict)


class AlerceRestEmulator:
    """ALeRCE's LSST and ZTF REST routes over an in-memory object table."""

    def __init__(self, classifier: str = LC_CLASSIFIER, version: str = "emulated") -> None:
        """An empty table for ``classifier``."""
        self.classifier = classifier
        self.version = version
        self.objects: dict[int, _Object] = {}
        self.lock = threading.Lock()
        self.failures: list[tuple[int, str | None]] = []
        """(status, Retry-After) answers to give to the next requests, first first."""
        self.requests: list[tuple[str, dict[str, str]]] = []

    def update(self, oid: int, mjd: float, probabilities: Mapping[str, float]) -> None:
        """Record a new classification of an object detected at ``mjd``."""
        with self.lock:
            obj = self.objects.get(oid)
            if obj is None:
                obj = self.objects[oid] = _Object(oid, mjd, mjd, 0)
            obj.lastmjd = max(obj.lastmjd, mjd)
            obj.ndet += 1
            obj.probabilities = dict(probabilities)

    def fail_next(self, status: int, retry_after: str | None = None, times: int = 1) -> None:
        """Answer the next ``times`` requests with ``status`` (and a ``Retry-After`` header when given)."""
        self.failures.extend([(status, retry_after)] * times)

    # -- the routes ---------------------------------------------------------------------------------------------
    def app(self) -> Any:
        """The ASGI application."""
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Route

        def guarded(handler: Any) -> Any:
            async def endpoint(request: Request) -> Response:
                self.requests.append((request.url.path, dict(request.query_params)))
                with self.lock:
                    failure = self.failures.pop(0) if self.failures else None
                if failure is not None:
                    status, retry_after = failure
                    headers = {"Retry-After": retry_after} if retry_after is not None else {}
                    return JSONResponse({"detail": "emulated failure"}, status, headers)
                status, body = handler(request)
                return JSONResponse(body, status)
            return endpoint

        return Starlette(routes=[
            Route("/object_api/list_objects", guarded(lambda r: self._list(r, "lsst"))),
            Route("/probability_api/probability", guarded(lambda r: self._probabilities(r, r.query_params["oid"],
                                                                                          "lsst"))),
            Route("/ztf/v1/objects", guarded(lambda r: self._list(r, "ztf"))),
            Route("/ztf/v1/objects/{oid}/probabilities",
                  guarded(lambda r: self._probabilities(r, r.path_params["oid"], "ztf"))),
        ])

    def _list(self, request: Any, survey: str) -> tuple[int, Any]:
        q = request.query_params
        classifier = q.get("classifier", LC_CLASSIFIER)
        bounds = [float(v) for v in q.getlist("lastmjd")]
        page, size = int(q.get("page", 1)), int(q.get("page_size", 10))
        with self.lock:
            rows = [o for o in self.objects.values() if classifier == self.classifier and o.probabilities
                    and (not bounds or o.lastmjd >= bounds[0]) and (len(bounds) < 2 or o.lastmjd <= bounds[1])]
        wanted = q.get("class_name") or q.get("class")
        if wanted:
            rows = [o for o in rows if max(o.probabilities, key=o.probabilities.__getitem__) == wanted]
        key = q.get("order_by", "probability")
        rows.sort(key=lambda o: (getattr(o, key, 0.0) if key != "probability" else max(o.probabilities.values()),
                                 o.oid), reverse=q.get("order_mode", "DESC") == "DESC")
        chunk = rows[(page - 1) * size:(page - 1) * size + size + 1]  # one more, to know whether there is a next
        has_next = len(chunk) > size
        items = [self._item(o, survey) for o in chunk[:size]]
        body = {"total": len(chunk), "next": page + 1 if has_next else None, "has_next": has_next,
                "prev": page - 1 if page > 1 else None, "has_prev": page > 1, "items": items}
        body |= {"current_page": page, "info_message": None} if survey == "lsst" else {"page": page}
        return 200, body

    def _item(self, o: _Object, survey: str) -> dict[str, Any]:
        top = max(o.probabilities, key=o.probabilities.__getitem__)
        common = {"oid": o.oid, "meanra": 0.0, "meandec": 0.0, "firstmjd": o.firstmjd, "lastmjd": o.lastmjd}
        if survey == "lsst":  # LsstObjectProbability (web-services object_api/models/object.py)
            return common | {"tid": 0, "sid": 0, "sigmara": None, "sigmadec": None, "deltamjd": o.lastmjd - o.firstmjd,
                             "n_det": o.ndet, "n_forced": 0, "n_non_det": 0, "stellar": None, "class_name": top,
                             "classifier_name": self.classifier, "classfier_version": self.version,
                             "probability": o.probabilities[top], "ranking": 1}
        return common | {"ndet": o.ndet, "deltajd": o.lastmjd - o.firstmjd, "class": top,
                         "classifier": self.classifier, "probability": o.probabilities[top]}

    def _probabilities(self, request: Any, oid: str, survey: str) -> tuple[int, Any]:
        with self.lock:
            obj = self.objects.get(int(oid)) if oid.lstrip("-").isdigit() else None
            probabilities = dict(obj.probabilities) if obj else {}
        if not probabilities:
            return 404, {"detail": "Probability not found for the given OID"}
        ranked = sorted(probabilities.items(), key=lambda kv: -kv[1])
        rows = [{"classifier_name": self.classifier, "classifier_version": self.version, "class_name": label,
                 "probability": p, "ranking": rank} for rank, (label, p) in enumerate(ranked, 1)]
        if survey == "lsst":
            rows = [{"oid": oid} | row for row in rows]
        return 200, rows


@contextlib.contextmanager
def _rest_server(options: Mapping[str, Any]) -> Iterator[AlerceRestEmulator | None]:
    if "rest_port" not in options:
        yield None
        return
    from alertmux.serve import serve_in_thread

    rest = AlerceRestEmulator()
    with serve_in_thread(rest.app(), port=int(options["rest_port"])) as url:
        log.warning("ALeRCE REST emulator at %s (LSST: %s/object_api/list_objects, ZTF: %s/ztf/v1/objects)",
                    url, url, url)
        yield rest


def _report_failure(error: Any, message: Any) -> None:
    if error is not None:
        log.warning("ALeRCE emulator: an answer to %s was not delivered: %s", message.topic(), error)


def run_emulator(ctx: EmulatorContext) -> None:
    """Answer every alert of the stream on each classifier's daily topic (and on REST with ``rest_port``)."""
    early, late, switch_after = behaviour(ctx.options.get("mode", "last"))
    seed = ctx.options.get("seed", 0)
    rngs = {c.short: random.Random(f"alerce-{seed}-{c.short}") for c in CLASSIFIERS}
    schema = load_schema("elasticc.v0_9_1.brokerClassification")
    producer = make_producer(ctx.bootstrap, ctx.client_config, on_delivery=_report_failure)
    created: set[str] = set()
    with _rest_server(ctx.options) as rest:
        try:
            for batch in alert_batches(ctx):
                ingest_ms = now_ms()
                topics = output_topics(ctx.run_id)  # standalone runs roll over to a new topic each day
                if not created.issuperset(topics):  # ALeRCE creates each day's topics; so do we (no auto-create)
                    ensure_topics(ctx.bootstrap, topics, ctx.client_config)
                    created.update(topics)
                for alert in batch:
                    matrix = early if (alert.detections or 0) <= switch_after else late
                    for classifier, topic in zip(CLASSIFIERS, topics, strict=True):
                        vector = dict(matrix.classify(alert.true_class, rngs[classifier.short]))
                        record = elasticc_record(alert, classifier, vector, ingest_ms)
                        producer.produce(topic, schemaless_encode(record, schema),
                                         key=str(alert.dia_object_id).encode())
                        producer.poll(0)
                    if rest is not None and alert.dia_object_id is not None:
                        rest.update(alert.dia_object_id, ingest_ms / 86_400_000 + MJD_UNIX_EPOCH,
                                    lc_probabilities(vector))
                producer.flush()
        finally:
            producer.flush()
