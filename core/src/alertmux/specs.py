"""Typed spec objects that plugins return from the registration hooks.

A plugin never subclasses anything from the core: it describes what it provides with these frozen dataclasses
and the core decides when to call the functions they carry. They are plain dataclasses, not pydantic models,
because some of them (``BrokerMessage``) sit on the ingest hot path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import click
    from pydantic import BaseModel

    from alertmux.store import Store

Kind = Literal["probability", "score", "context"]


@dataclass(slots=True)
class BrokerMessage:
    """One classification message as a broker sent it, before normalization (the hot-path record).

    ``labels`` and ``values`` are parallel: the broker's own class labels, verbatim, in its own ``scheme``, and the
    probability or score it gave each. Timestamps are epoch milliseconds; ``None`` where the source has none.
    """

    classifier: tuple[str, str, str, str]
    """DESC's classifier identity: (brokerName, brokerVersion, classifierName, classifierParams), verbatim."""
    scheme: str
    labels: Sequence[int | str]
    values: Sequence[float | None]
    alert_id: int | None = None
    dia_source_id: int | None = None
    dia_object_id: int | None = None
    alert_published_ms: int | None = None
    broker_ingest_ms: int | None = None
    broker_publish_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where a raw payload came from: a Kafka message, a REST response or a file."""

    source: str
    """Kafka topic, REST endpoint or file path."""
    partition: int | None = None
    offset: int | None = None
    timestamp_ms: int | None = None
    """The transport's own timestamp (Kafka message timestamp), used as the broker publish time when the payload
    carries none."""
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


Decoder = Callable[[bytes, Delivery], Iterable[BrokerMessage]]
"""Turns one raw payload into broker messages. Raises on malformed input: the core dead-letters it."""


@dataclass(frozen=True, slots=True)
class KafkaTransport:
    """A Kafka output of a broker: which topics to read and how to decode them."""

    decode: Decoder
    topics: tuple[str, ...] = ()
    topic_pattern: str | None = None
    """A regex (librdkafka's ``^`` convention is added when missing) for brokers that create topics as they go."""
    description: str = ""


@dataclass(frozen=True, slots=True)
class EmulatorContext:
    """What an emulator gets from the harness."""

    bootstrap: str
    alert_topics: tuple[str, ...]
    store: Store
    run_id: str
    client_config: Mapping[str, str]
    stop: Callable[[], bool]
    """Returns True once the harness wants the emulator to finish (after it drained what it had)."""
    expected_alerts: Callable[[], int | None] = lambda: None
    """How many alerts the stream sent, once it is done (None until then, or when unknown)."""
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EmulatorSpec:
    """A local stand-in for a broker, speaking its wire format, fed by the harness's alert stream."""

    run: Callable[[EmulatorContext], None]
    """Runs until ``context.stop()`` is true and every alert it consumed has been answered."""
    output_topics: Callable[[str], tuple[str, ...]]
    """The topics it publishes to for a given run id, so the harness can point the broker's consumer at them."""
    answers_per_alert: int = 1
    """Messages it sends per alert (one per classifier it emulates): the harness waits for that many."""


@dataclass(frozen=True, slots=True)
class BrokerSpec:
    """A broker: how to consume it, its configuration and, optionally, an emulator."""

    name: str
    description: str
    kafka: KafkaTransport | None = None
    decoders: Mapping[str, Decoder] = field(default_factory=dict)
    """Named decoders for every wire format the broker uses (``alertmux decode --broker`` tries them in order)."""
    config_model: type[BaseModel] | None = None
    emulator: EmulatorSpec | None = None
    homepage: str = ""


@dataclass(frozen=True, slots=True)
class NormalizedLabel:
    """Where one native label lands in the ELAsTiCC2 taxonomy."""

    class_id: int | None
    kind: Kind = "probability"
    source: str = ""
    """Why this row is right (a document, a paper, a code path)."""


@dataclass(frozen=True, slots=True)
class NormalizerSpec:
    """Maps the labels of one native scheme onto ELAsTiCC2 class ids.

    Give either a ``table`` (label -> NormalizedLabel) or a ``lookup`` function; labels missing from a table
    are unknown: stored with ``class_id=None``, kept verbatim and counted.
    """

    scheme: str
    description: str
    table: Mapping[int | str, NormalizedLabel] | None = None
    lookup: Callable[[int | str], NormalizedLabel | None] | None = None

    def __post_init__(self) -> None:
        if (self.table is None) == (self.lookup is None):
            raise ValueError(f"normalizer {self.scheme!r}: give exactly one of table= or lookup=")

    def normalize(self, label: int | str) -> NormalizedLabel | None:
        """Return where ``label`` lands, or None when the scheme does not know it."""
        if self.table is not None:
            return self.table.get(label)
        assert self.lookup is not None
        return self.lookup(label)


@dataclass(frozen=True, slots=True)
class SimulatedTruth:
    """The true nature of a simulated object, recorded for scoring."""

    dia_object_id: int
    class_id: int
    gentype: int | None = None
    peak_mjd: float | None = None
    redshift: float | None = None


@dataclass(frozen=True, slots=True)
class SourceObject:
    """One object's alerts as a source yields them, with its truth when the source knows it."""

    alerts: Sequence[dict[str, Any]]
    """``elasticc.v0_9_1`` alert records, in time order."""
    truth: SimulatedTruth | None = None


@dataclass(frozen=True, slots=True)
class AlertSourceSpec:
    """A source of alerts the streamer can send: simulated, files, a Kafka topic..."""

    name: str
    description: str
    open: Callable[..., Iterator[SourceObject]]
    """Called with the user's options (``objects``, ``seed``, ``path``...) as keyword arguments."""


@dataclass(frozen=True, slots=True)
class FacilitySpec:
    """A follow-up facility (telescope) adapter: the verbs of an observation request's life."""

    name: str
    description: str
    validate: Callable[..., Any]
    submit: Callable[..., Any]
    status: Callable[..., Any]
    cancel: Callable[..., Any] | None = None
    """None where the facility offers no cancel (a Gemini ToO trigger)."""
    data_products: Callable[..., Any] | None = None
    config_model: type[BaseModel] | None = None


CommandRegistrar = Callable[["click.Group"], None]
