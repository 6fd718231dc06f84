"""Decode, normalize and pack broker payloads into store rows: the hot path every transport shares.

The Kafka loop, the REST endpoint, ``alertmux decode`` and the dead-letter replay all go through
:class:`Ingestor`, so a message is stored the same way whichever way it arrived.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from alertmux.errors import DecodeError
from alertmux.host import PluginHost
from alertmux.specs import BrokerMessage, Decoder, Delivery, NormalizedLabel
from alertmux.store import DeadLetter, Store, now_ms

_IDENTITY_KEYS = ("brokerName", "brokerVersion", "classifierName", "classifierParams")
_CACHE_LIMIT = 4096  # label vectors cached per ingestor; cleared when full so memory stays flat


@dataclass(frozen=True, slots=True)
class _LabelVector:
    """Everything about a message's label list that does not depend on its values, computed once per list."""

    class_ids: tuple[int | None, ...]
    kinds: tuple[str, ...]
    class_ids_json: str
    native_json: str
    kinds_json: str | None
    rankable: tuple[int, ...]
    """Indexes that can be the top class: a known class id with kind probability."""
    all_rankable: bool
    unknown: tuple[int | str, ...]


class Ingestor:
    """Turns one broker's payloads into store rows (and dead letters), counting unknown labels."""

    def __init__(self, host: PluginHost, broker: str, store: Store | None = None, run_id: str | None = None) -> None:
        """Prepare the broker's decoder and the normalizers.

        Args:
            host: the plugin host.
            broker: the broker plugin name (``elasticc``, ``alerce``...).
            store: where rows go; only :meth:`rows` and :meth:`write` need it.
            run_id: the harness run the rows belong to.
        """
        self.spec = host.broker(broker)
        self.broker = broker
        self.store = store
        self.run_id = run_id
        self.normalizers = host.normalizers()
        self.unknown_labels: Counter[tuple[str, int | str]] = Counter()
        self._vectors: dict[tuple[str, tuple[int | str, ...]], _LabelVector] = {}
        self._classifier_ids: dict[tuple[str, str, str, str], int] = {}
        found = list(self.spec.decoders.items())
        if self.spec.kafka and all(d is not self.spec.kafka.decode for _, d in found):
            found.insert(0, ("kafka", self.spec.kafka.decode))
        self.decoders: list[tuple[str, Decoder]] = found
        """The broker's decoders, the Kafka one first (worked out once: specs are frozen)."""

    def decode(self, payload: bytes, delivery: Delivery, decoder: Decoder | None = None) -> list[BrokerMessage]:
        """Decode a payload with the given decoder, or with the first of the broker's decoders that accepts it."""
        if decoder is not None:
            return _as_list(decoder(payload, delivery))
        if len(self.decoders) == 1:  # the common case: one decoder, whose error needs no name in front
            ((name, only),) = self.decoders
            try:
                return _as_list(only(payload, delivery))
            except Exception as exc:  # noqa: BLE001 - the decoder reports in its own words
                raise DecodeError(f"{name}: {exc}") from None
        errors = []
        for name, candidate in self.decoders:
            try:
                return _as_list(candidate(payload, delivery))
            except Exception as exc:  # noqa: BLE001 - each decoder reports in its own words
                errors.append(f"{name}: {exc}")
        raise DecodeError("; ".join(errors) or f"broker {self.broker} has no decoder")

    def rows(
        self, messages: Iterable[BrokerMessage], delivery: Delivery, ingested_ms: int | None = None
    ) -> list[tuple[Any, ...]]:
        """Normalize and pack messages into :data:`alertmux.store.MESSAGE_COLUMNS` tuples."""
        assert self.store is not None, "rows() needs a store for the classifier ids"
        ingested = ingested_ms or now_ms()
        out = []
        for m in messages:
            _check_storable(m)
            vector = self._vector(m.scheme, m.labels)
            values = m.values
            top_id = top_p = None
            if vector.all_rankable:
                try:  # the common case: every label is a known class with a probability
                    top_p = max(values)
                    if top_p == top_p:  # not NaN (max() is unreliable around NaN: take the careful path)
                        top_id = vector.class_ids[values.index(top_p)]
                    else:
                        top_p = None
                except TypeError:  # a None among the values
                    top_p = None
            if top_id is None:
                top_p = None
                for i in vector.rankable:
                    v = values[i]
                    if v is not None and v == v and (top_p is None or v > top_p):  # v == v: not NaN
                        top_p, top_id = v, vector.class_ids[i]
            classifier_id = self._classifier_ids.get(m.classifier)
            if classifier_id is None:
                classifier_id = self._classifier_ids[m.classifier] = self.store.classifier_id(self.broker, m.classifier)
            alert_id = m.alert_id if m.alert_id is not None else m.dia_source_id
            out.append(
                (
                    classifier_id,
                    self.run_id,
                    alert_id,
                    m.dia_source_id,
                    m.dia_object_id,
                    m.scheme,
                    vector.class_ids_json,
                    _values_json(values),
                    vector.native_json,
                    vector.kinds_json,
                    top_id,
                    top_p,
                    m.alert_published_ms,
                    m.broker_ingest_ms,
                    m.broker_publish_ms if m.broker_publish_ms is not None else delivery.timestamp_ms,
                    ingested,
                    delivery.source,
                    delivery.partition,
                    delivery.offset,
                    _content_hash(m) if alert_id is None else None,
                )
            )
        return out

    def dead_letter(self, payload: bytes, delivery: Delivery, error: BaseException | str) -> DeadLetter:
        """A dead letter for a payload that failed, with the reason in one line."""
        reason = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        return DeadLetter(
            broker=self.broker,
            source=delivery.source,
            payload=payload,
            error=reason.splitlines()[0][:2000] if reason else "unknown error",
            partition=delivery.partition,
            offset=delivery.offset,
            key=delivery.key,
            run_id=self.run_id,
            received_ms=now_ms(),
        )

    def records(self, messages: Iterable[BrokerMessage], delivery: Delivery) -> Iterator[dict[str, Any]]:
        """One dict per (message, class) in the shape of :class:`alertmux.models.ClassificationRecord`."""
        for m in messages:
            vector = self._vector(m.scheme, m.labels)
            alert_id = m.alert_id if m.alert_id is not None else m.dia_source_id
            publish = m.broker_publish_ms if m.broker_publish_ms is not None else delivery.timestamp_ms
            for i, label in enumerate(m.labels):
                yield {
                    "broker": self.broker,
                    "classifier": dict(zip(_IDENTITY_KEYS, m.classifier, strict=True)),
                    "alert_id": alert_id,
                    "dia_source_id": m.dia_source_id,
                    "dia_object_id": m.dia_object_id,
                    "class_id": vector.class_ids[i],
                    "probability": m.values[i],
                    "kind": vector.kinds[i],
                    "native_class": str(label),
                    "native_scheme": m.scheme,
                    "alert_published_at": m.alert_published_ms,
                    "broker_ingest_at": m.broker_ingest_ms,
                    "broker_publish_at": publish,
                    "ingested_at": None,
                }

    def _vector(self, scheme: str, labels: Sequence[int | str]) -> _LabelVector:
        key = (scheme, tuple(labels))
        vector = self._vectors.get(key)
        if vector is None:
            if len(self._vectors) >= _CACHE_LIMIT:
                self._vectors.clear()
            vector = self._vectors[key] = self._build_vector(scheme, key[1])
        if vector.unknown:
            for label in vector.unknown:
                self.unknown_labels[(scheme, label)] += 1
        return vector

    def _build_vector(self, scheme: str, labels: tuple[int | str, ...]) -> _LabelVector:
        normalizer = self.normalizers.get(scheme)
        hits: list[NormalizedLabel | None] = [normalizer.normalize(label) if normalizer else None for label in labels]
        class_ids = tuple(h.class_id if h else None for h in hits)
        kinds = tuple(h.kind if h else "probability" for h in hits)
        return _LabelVector(
            class_ids=class_ids,
            kinds=kinds,
            class_ids_json=(ids_json := json.dumps(class_ids)),
            # The same object when the labels are the class ids (ELAsTiCC2): a store may then keep it once.
            native_json=ids_json if list(labels) == list(class_ids) else json.dumps(labels),
            kinds_json=None if all(k == "probability" for k in kinds) else json.dumps(kinds),
            rankable=(rankable := tuple(i for i, h in enumerate(hits)
                                        if h and h.class_id is not None and h.kind == "probability")),
            all_rankable=bool(labels) and len(rankable) == len(labels),
            unknown=tuple(label for label, h in zip(labels, hits, strict=True) if h is None),
        )


_INT64 = range(-(2**63), 2**63)
_ID_FIELDS = ("alert_id", "dia_source_id", "dia_object_id", "alert_published_ms", "broker_ingest_ms",
              "broker_publish_ms")


def _check_storable(m: BrokerMessage) -> None:
    # A decoder's bug (a string id, an id past 64 bits) must dead-letter its payload, not stop the loop at commit.
    ids = (m.alert_id, m.dia_source_id, m.dia_object_id, m.alert_published_ms, m.broker_ingest_ms, m.broker_publish_ms)
    for i, value in enumerate(ids):
        if value is not None and (type(value) is not int or value not in _INT64):
            raise DecodeError(f"{_ID_FIELDS[i]} must be a 64-bit integer or null, got {value!r:.60}")
    if len(m.labels) != len(m.values):
        raise DecodeError(f"{len(m.labels)} labels but {len(m.values)} values")


def _as_list(messages: Iterable[BrokerMessage]) -> list[BrokerMessage]:
    # Decoders usually return a list already: copying it would be a wasted allocation per payload.
    return messages if type(messages) is list else list(messages)


def _values_json(values: Sequence[float | None]) -> str:
    # Avro floats are float32: 7 significant digits keep them exactly enough, at a third of json.dumps' cost.
    try:
        text = "[" + ",".join(["%.7g" % v for v in values]) + "]"  # noqa: UP031 - fastest formatting
        if "n" not in text:  # "nan" and "inf" are not JSON
            return text
    except TypeError:  # a None among them (context labels carry no value)
        pass
    finite = [v if v is not None and math.isfinite(v) else None for v in values]
    return json.dumps([None if v is None else float(f"{v:.7g}") for v in finite])


def _content_hash(m: BrokerMessage) -> str:
    body = json.dumps([m.scheme, list(m.labels), list(m.values)], default=str).encode()
    return hashlib.sha1(body, usedforsecurity=False).hexdigest()
