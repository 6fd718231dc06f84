"""A local AMPEL: classifies the harness's alerts and pushes its reports over HTTP, as AMPEL did to the DESC TOM.

Per batch of alerts it PUTs a JSON list of ``elasticc.v0_9_1`` brokerClassification messages to
``<serve_url>/elasticc2/brokermessage/`` after the Django login dance of AMPEL's ``ElasticcTomClient``: GET
``/accounts/login/`` for the ``csrftoken`` cookie, POST ``username``, ``password`` and ``csrfmiddlewaretoken``,
then PUT with ``X-CSRFToken`` (the cookie after login, which Django rotates). With ``token`` in the options it sends
``Authorization: Token`` instead. Messages carry ``brokerPublishTimestamp`` and AMPEL's identity from the
ELAsTiCC2 roster (``AMPEL v0.8 ElasticcMonsterAllIncl v231203``), and write AGN and EB the way AMPEL does (2330,
2320), so the ``ampel`` normalizer's quirk rows are exercised end to end.

Options: ``serve_url``, ``username``, ``password`` (or ``token``), ``mode`` and ``seed`` (the confusion-matrix
behaviour), ``endpoint`` (default ``/elasticc2/brokermessage/``), ``hop_topic`` (also publish each alert's
classification as an LSSTReport hop AvroBlob on that Kafka topic).
"""

from __future__ import annotations

import io
import logging
import random
from collections.abc import Mapping
from typing import Any

import fastavro
import httpx

from alertmux import EmulatorContext
from alertmux.emulation import AlertSeen, alert_batches, behaviour
from alertmux.errors import UsageError
from alertmux.http import HttpError, RetryPolicy, make_client, request
from alertmux.kafka import make_producer
from alertmux.store import now_ms
from alertmux_ampel.decoders import report_schema
from alertmux_ampel.vocabulary import QUIRKS_OUT

log = logging.getLogger(__name__)
IDENTITY = {"brokerName": "AMPEL", "brokerVersion": "v0.8", "classifierName": "ElasticcMonsterAllIncl",
            "classifierParams": "v231203"}
ENDPOINT = "/elasticc2/brokermessage/"
# AMPEL's client retried 503, 504, 429 and 408 (ElasticcTomClient's backoff decorators).
POLICY = RetryPolicy(attempts=6, backoff=0.2, backoff_max=10.0, statuses=frozenset({408, 429, 500, 502, 503, 504}))


def output_topics(run_id: str) -> tuple[str, ...]:
    """None: AMPEL pushes to ``alertmux serve`` instead of publishing."""
    return ()


def report(alert: AlertSeen, vector: Mapping[int, float], ingest_ms: int) -> dict[str, Any]:
    """The brokerClassification AMPEL would push for this alert (AMPEL's class ids, publish time set)."""
    return IDENTITY | {
        "alertId": alert.alert_id,
        "diaSourceId": alert.dia_source_id,
        "elasticcPublishTimestamp": alert.published_ms if alert.published_ms is not None else ingest_ms,
        "brokerIngestTimestamp": ingest_ms,
        "classifications": [{"classId": QUIRKS_OUT.get(c, c), "probability": p} for c, p in vector.items()],
    }


def lsst_report(alert: AlertSeen, vector: Mapping[int, float]) -> dict[str, Any]:
    """The same classification as an LSSTReport (what AMPEL's HopskotchAdapter publishes)."""
    return {
        "object": {"id": alert.dia_object_id or 0, "external_id": None, "ra": None, "dec": None, "source": "LSST"},
        "state": str(alert.dia_source_id),
        "photometry": [],
        "classification": [{"name": IDENTITY["classifierName"], "version": IDENTITY["brokerVersion"], "info": None,
                            "models": [{"model": IDENTITY["classifierParams"],
                                        "probabilities": {str(QUIRKS_OUT.get(c, c)): p for c, p in vector.items()}}]}],
        "host": [],
        "features": [],
    }


def avro_blob(records: list[dict[str, Any]]) -> bytes:
    """A hop AvroBlob: an Avro container file holding the records and their schema."""
    buffer = io.BytesIO()
    fastavro.writer(buffer, report_schema(), records)
    return buffer.getvalue()


class TomSession:
    """AMPEL's way into the DESC TOM (or ``alertmux serve``): Django session and CSRF, or a token."""

    def __init__(self, base_url: str, username: str | None = None, password: str | None = None,
                 token: str | None = None, policy: RetryPolicy = POLICY) -> None:
        """Log in (or prepare the token) against ``base_url``."""
        self.policy = policy
        self.client = make_client(base_url.rstrip("/"), token=token)
        self.headers: dict[str, str] = {}
        if token:
            return
        if not username or not password:
            raise UsageError("the AMPEL emulator needs serve_url with username and password (or token)")
        request(self.client, "GET", "/accounts/login/", policy=policy)
        response = request(self.client, "POST", "/accounts/login/", policy=policy, data={
            "username": username, "password": password,
            "csrfmiddlewaretoken": self.client.cookies.get("csrftoken", "")})
        if "Please enter a correct" in response.text or "sessionid" not in self.client.cookies:
            raise HttpError(f"login to {base_url} as {username!r} failed: wrong user name or password")
        self.headers = {"X-CSRFToken": self.client.cookies.get("csrftoken", "")}

    def put(self, messages: list[dict[str, Any]], endpoint: str = ENDPOINT) -> dict[str, Any]:
        """PUT a list of messages; returns the server's answer (``brokerMessageId``, ``num_loaded``...)."""
        response = request(self.client, "PUT", endpoint, json=messages, headers=self.headers, policy=self.policy)
        body: dict[str, Any] = response.json()
        return body

    def close(self) -> None:
        """Close the HTTP client."""
        self.client.close()


def run_emulator(ctx: EmulatorContext) -> None:
    """Classify every alert of the stream and push the answers, one PUT per batch of alerts."""
    options = ctx.options
    early, late, switch_after = behaviour(options.get("mode", "last"))
    rng = random.Random(f"ampel-{options.get('seed', 0)}")
    serve_url = options.get("serve_url")
    if not serve_url:
        raise UsageError("the AMPEL emulator pushes to alertmux serve: give it serve_url (with username and "
                         "password, or token)")
    password = options.get("password")
    token = options.get("token")
    session = TomSession(str(serve_url), options.get("username"),
                         password.get_secret_value() if hasattr(password, "get_secret_value") else password,
                         token.get_secret_value() if hasattr(token, "get_secret_value") else token)
    hop_topic = options.get("hop_topic")
    producer = make_producer(ctx.bootstrap, ctx.client_config) if hop_topic else None
    endpoint = str(options.get("endpoint", ENDPOINT))
    try:
        for batch in alert_batches(ctx):
            ingest_ms = now_ms()
            messages = []
            for alert in batch:
                matrix = early if (alert.detections or 0) <= switch_after else late
                vector = dict(matrix.classify(alert.true_class, rng))
                messages.append(report(alert, vector, ingest_ms))
                if producer is not None:
                    producer.produce(str(hop_topic), avro_blob([lsst_report(alert, vector)]),
                                     key=str(alert.dia_object_id).encode(), headers=[("_format", b"avro")])
                    producer.poll(0)
            published = now_ms()
            for message in messages:
                message["brokerPublishTimestamp"] = published
            answer = session.put(messages, endpoint)
            log.debug("pushed %d message(s): %s", len(messages), answer)
            if producer is not None:
                producer.flush()
    except httpx.HTTPError as exc:  # pragma: no cover - request() turns these into HttpError
        raise HttpError(f"push failed: {exc}") from None
    finally:
        session.close()
        if producer is not None:
            producer.flush()
