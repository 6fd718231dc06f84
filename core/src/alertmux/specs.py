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


@dataclass(slots=True)  # not frozen: built per Kafka message, and frozen fields cost a setattr call each
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
    moving_pattern: Callable[[], str] | None = None
    """For topics named by date (ALeRCE's daily topics): the pattern as of now. ``listen`` calls it again every
    few minutes and re-subscribes when it changes, so the window moves as days pass; ``topic_pattern`` is then
    its value when the plugin loaded, for commands that only need a pattern once."""
    description: str = ""


@dataclass(frozen=True, slots=True)
class RestPage:
    """One page of a REST poll: raw payloads to decode, and where the next poll resumes once they are stored."""

    payloads: Sequence[tuple[bytes, Delivery]]
    cursor: str | None = None
    """Saved (per broker and stream) after the payloads are committed; None keeps the previous one."""


@dataclass(frozen=True, slots=True)
class RestContext:
    """What a REST poller gets from the core (:mod:`alertmux.rest`): HTTP with retries, settings, its cursor."""

    base_url: str
    get_json: Callable[..., Any]
    """``get_json(path, params=None, *, missing_ok=False)``: GET ``base_url/path`` with the core's timeouts and
    retries (429 and 5xx, honouring Retry-After) and return the parsed JSON; a 404 returns None with
    ``missing_ok``, any other failure raises :class:`alertmux.errors.AlertmuxError` with a plain reason."""
    cursor: str | None = None
    """Where the previous poll stopped (None on the first one)."""
    settings: Mapping[str, Any] = field(default_factory=dict)
    """The broker's ``[brokers.NAME]`` table, secrets resolved."""
    should_stop: Callable[[], bool] = lambda: False


@dataclass(frozen=True, slots=True)
class RestTransport:
    """A broker's REST API that ``alertmux poll`` reads incrementally.

    ``poll(ctx)`` yields pages from ``ctx.cursor`` on; the core decodes each payload with ``decode``, stores the
    rows (idempotently: REST data without an alert id is keyed by content hash), then saves the page's cursor.
    """

    poll: Callable[[RestContext], Iterable[RestPage]]
    decode: Decoder
    base_url: str = ""
    """Default API base URL (``[brokers.NAME] api_url`` overrides it)."""
    interval: float = 300.0
    """Seconds between polls."""
    probe: Callable[[RestContext], str] | None = None
    """A cheap request for ``alertmux check``: returns what it saw in one line, raises with the reason."""
    description: str = ""


@dataclass(frozen=True, slots=True)
class PushTransport:
    """A broker that pushes ELAsTiCC brokerClassification JSON to ``alertmux serve`` (as AMPEL did to the DESC TOM).

    ``alertmux serve`` routes each pushed item to the broker whose ``broker_names`` holds the item's
    ``brokerName`` (case-insensitive), and to the built-in ``elasticc`` broker otherwise.
    """

    decode: Decoder
    """Decodes one pushed item (its JSON bytes) into messages."""
    broker_names: tuple[str, ...] = ()
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
class SamplePayload:
    """One payload as a broker sends it (captured with ``alertmux record``, or synthesized from its schema)."""

    name: str
    payload: bytes
    decoder: str | None = None
    """The decoder that reads it: a key of ``BrokerSpec.decoders`` or ``"kafka"``; None tries them all in order."""
    origin: str = ""
    """Where it comes from ("captured from topic T on 2026-01-05", "synthesized from schema S"), for reviewers."""
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


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
    samples: Callable[[], Iterable[SamplePayload]] | None = None
    """Payloads the broker really sends, shipped with the plugin; loaded only by tests and ``alertmux conformance``,
    which decode every one of them. A callable, so that importing the plugin reads no files."""
    rest: RestTransport | None = None
    """A REST API polled by ``alertmux poll --broker NAME``."""
    push: PushTransport | None = None
    """Messages the broker pushes to ``alertmux serve``; an emulator with no output topics pushes there too."""


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
    """Alert records as decoded, in time order: ``elasticc.v0_9_1`` (the simulator's), ``elasticc.v0_9`` or Rubin
    ``lsst.vX_Y``; the streamer tells them apart by their fields and re-encodes them to the output schema."""
    truth: SimulatedTruth | None = None
    ddf: bool = False
    """A deep-drilling-field object: with a ``{part}`` topic its alerts go to ``ddf-full`` (365 days of history)
    and ``ddf-limited`` (30 days), as DESC sent them, instead of ``wfd``."""


@dataclass(frozen=True, slots=True)
class AlertSourceSpec:
    """A source of alerts the streamer can send: simulated, files, a Kafka topic..."""

    name: str
    description: str
    open: Callable[..., Iterator[SourceObject]]
    """Called with the user's options (``objects``, ``seed``, ``path``...) as keyword arguments."""


@dataclass(frozen=True, slots=True)
class FacilitySpec:
    """A follow-up facility (telescope) adapter: the verbs of an observation request's life.

    Every verb takes the facility's settings first (an instance of ``config_model``, built from the
    ``[facilities.NAME]`` table) and works with the types of :mod:`alertmux.followup.models`:
    ``validate(settings, request) -> Validation`` (a dry run: what would be sent and what the facility thinks of
    it), ``submit(settings, request) -> Submission``, ``status(settings, records) -> list[StatusUpdate]`` (every
    open record at once, in as few calls as the facility allows), ``cancel(settings, record) -> StatusUpdate``,
    ``data_products(settings, record) -> list[DataProduct]``, ``lookup(settings, name) -> Submission | None`` and
    ``instruments(settings) -> dict``.
    """

    name: str
    description: str
    validate: Callable[..., Any]
    submit: Callable[..., Any]
    status: Callable[..., Any]
    cancel: Callable[..., Any] | None = None
    """None where the facility offers no cancel (a Gemini ToO trigger)."""
    data_products: Callable[..., Any] | None = None
    config_model: type[BaseModel] | None = None
    lookup: Callable[..., Any] | None = None
    """Finds a request the facility already holds by the unique name alertmux gave it, so that a retried or repeated
    submit never creates a second one. None where the facility cannot be asked: an ambiguous failure (a timeout
    after the request was sent) is then never retried automatically, and the user is told."""
    instruments: Callable[..., Any] | None = None
    """What the facility offers right now (an OCS portal's ``/api/instruments/``), for ``alertmux followup``."""
    emulator: Callable[..., Any] | None = None
    """Starts a loopback stand-in of the facility: ``emulator(**options)`` is a context manager yielding the settings
    (a mapping) that point the facility's verbs at it. Used by the tests and ``alertmux demo --followup``."""
    aperture_m: float | None = None
    """Primary mirror diameter in metres: exposure times are computed from magnitudes with it."""
    cancel_scope: Literal["request", "group"] = "request"
    """What a cancel takes down: the one request, or its whole group (an OCS requestgroup)."""
    status_api: bool = True
    """False where the facility reports nothing back (a Gemini ToO trigger): records stay ``submitted``."""
    homepage: str = ""


@dataclass(frozen=True, slots=True)
class FollowupCandidate:
    """One object as a follow-up ranking strategy sees it, as of ``mjd_now``.

    Built by :mod:`alertmux.followup.candidates` from the stored classifications (the latest message of each
    classifier for the object, spectroscopic ones excluded) and the stored light curve (difference flux, nJy).
    """

    dia_object_id: int
    mjd_now: float
    probabilities: Mapping[int, float]
    """ELAsTiCC2 class id -> probability, averaged over the classifiers that classified the object."""
    classifiers: int
    """How many classifiers the probabilities average."""
    ra: float | None = None
    dec: float | None = None
    n_detections: int = 0
    last_mjd: float | None = None
    """Time of the latest detection."""
    last_mag: float | None = None
    """AB magnitude of the latest detection (the flux of a detection is positive)."""
    last_band: str | None = None
    peak_mag: float | None = None
    """Brightest magnitude measured so far in ``last_band``."""
    peak_mjd: float | None = None
    rising: bool | None = None
    """Whether the latest point in ``last_band`` is brighter than the previous one by more than 1 sigma (None: too
    few points)."""
    exposure_s: Mapping[str, float | None] = field(default_factory=dict)
    """Telescope class (``"4m"``, ``"8m"``) -> exposure time for a spectrum at the ranking's S/N; None: not
    feasible (over two hours), as RESSPECT marks it."""

    def probability(self, class_id: int) -> float:
        """The probability of ``class_id`` or any class below it in the ELAsTiCC2 tree (2220 sums every SN-like)."""
        from alertmux.taxonomy import ELASTICC2, taxonomy

        tax = taxonomy(ELASTICC2)
        return sum(
            p for c, p in self.probabilities.items() if c == class_id or (c in tax and class_id in tax.ancestors(c))
        )


@dataclass(frozen=True, slots=True)
class FollowupPick:
    """One object a strategy chose, best first in the list it returns."""

    dia_object_id: int
    score: float
    reason: str
    """Why, in a line a person reads: the numbers the decision used."""
    priority: int | None = None
    """1 (most urgent) to 5; None lets the core assign it from the rank (see :mod:`alertmux.followup.ranking`)."""
    telescope: str | None = None
    """The telescope class whose budget the pick uses (``"4m"``, ``"8m"``), when the strategy budgets time."""
    exposure_s: float | None = None


@dataclass(frozen=True, slots=True)
class FollowupStrategySpec:
    """A follow-up ranking strategy: candidates in, picks out (best first)."""

    name: str
    description: str
    rank: Callable[[Sequence[FollowupCandidate], Any], Iterable[FollowupPick]]
    """``rank(candidates, options)``: ``options`` is an ``options_model`` instance (or a dict without one)."""
    options_model: type[BaseModel] | None = None
    reference: str = ""
    """The method it follows (a paper, a repository path)."""


CommandRegistrar = Callable[["click.Group"], None]
