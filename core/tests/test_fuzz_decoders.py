"""Property-based fuzzing of every decoder the installed plugins register, through the listen loop's batch path.

For random bytes and mutations (byte-level, and field-level for JSON) of real payloads: a bad payload ends in the
dead-letter table, whole, with a one-line reason; a decoder never raises anything but an ``Exception`` and never
hangs; whatever a decoder accepts can be stored (no row that makes the batch write fail and so stops the stream);
and the good messages of the same batch are all stored.

Seeds are real payloads: the ELAsTiCC examples in ../shared/data, every small file under
``../shared/data/brokers/<broker>/`` and the plugins' own test data; a seed is "good" for a broker when that
broker decodes it.
"""

from __future__ import annotations

import dataclasses
import json
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alertmux.host import PluginHost
from alertmux.ingest import Ingestor
from alertmux.kafka import ListenStats, _handle_batch
from alertmux.serde import load_schema, schemaless_encode
from alertmux.specs import Delivery
from alertmux.store import SqliteStore, open_store

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "dev.py").exists())
SHARED = ROOT.parent / "shared" / "data"
MAX_SEED_BYTES = 256 * 1024
TOPIC = "fuzz"
EXAMPLES = 100


def _elasticc_seeds() -> list[bytes]:
    record = {"alertId": 7, "diaSourceId": 7, "elasticcPublishTimestamp": 1_700_000_000_000,
              "brokerIngestTimestamp": 1_700_000_000_500, "brokerName": "B", "brokerVersion": "1",
              "classifierName": "C", "classifierParams": "P",
              "classifications": [{"classId": 2222, "probability": 0.75}, {"classId": 2223, "probability": 0.25}]}
    return [schemaless_encode(record, load_schema("elasticc.v0_9_1.brokerClassification")),
            json.dumps(record).encode()]


def _files(folder: Path) -> Iterator[Path]:
    if folder.is_dir():
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix not in (".py", ".pyc", ".md", ".pem") and path.stat().st_size \
                    <= MAX_SEED_BYTES:
                yield path


def seeds() -> list[bytes]:
    found = _elasticc_seeds()
    for folder in (SHARED / "elasticc" / "derived", SHARED / "elasticc" / "prototype_lsst_v4_1", SHARED / "brokers",
                   *(ROOT / group for group in ("plugins", "facilities"))):
        for path in _files(folder):
            if "tests" in path.parts or "plugins" not in path.parts:  # plugins: their test data only
                found.append(path.read_bytes())
    return list(dict.fromkeys(found))


HOST = PluginHost()
SEEDS = seeds()


def decoders_of(broker: str) -> list[tuple[str, Callable[..., Any]]]:
    """Every decoder a broker registers: named decoders and each transport's own."""
    spec = HOST.broker(broker)
    found: dict[int, tuple[str, Callable[..., Any]]] = {}
    for field in dataclasses.fields(spec):
        transport = getattr(spec, field.name)
        if callable(getattr(transport, "decode", None)):
            found.setdefault(id(transport.decode), (field.name, transport.decode))
    for name, decoder in spec.decoders.items():
        found.setdefault(id(decoder), (name, decoder))
    return list(found.values())


DECODERS = [(broker, name, decoder) for broker in sorted(HOST.brokers()) for name, decoder in decoders_of(broker)]


class _Timeout(BaseException):
    pass


class deadline:  # noqa: N801 - used as a context manager, reads as a phrase
    """SIGALRM after ``seconds``: a decoder that loops forever fails the example instead of hanging the suite."""

    def __init__(self, seconds: int = 5) -> None:
        self.seconds = seconds

    def __enter__(self) -> None:
        def fire(*_: Any) -> None:
            raise _Timeout(f"no answer within {self.seconds} s")

        self.previous = signal.signal(signal.SIGALRM, fire)
        signal.alarm(self.seconds)

    def __exit__(self, *_: Any) -> None:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, self.previous)


@st.composite
def byte_mutations(draw: st.DrawFn, seed_list: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seed_list)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "overwrite"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 16))]
        elif op == "truncate":
            del data[pos:]
        else:
            chunk = draw(st.binary(min_size=1, max_size=9))
            data[pos:pos + len(chunk)] = chunk
    return bytes(data)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**80), 2**80) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def json_mutations(draw: st.DrawFn, seed_list: list[Any]) -> bytes:
    """A JSON seed with one value replaced, one key dropped, or its type changed, anywhere in the document."""
    document = json.loads(json.dumps(draw(st.sampled_from(seed_list))))
    containers: list[Any] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict | list):
            containers.append(node)
            for child in node.values() if isinstance(node, dict) else node:
                walk(child)

    walk(document)
    if not containers:
        return json.dumps(draw(JSON_VALUES)).encode()
    target = draw(st.sampled_from(containers))
    keys = list(target) if isinstance(target, dict) else list(range(len(target)))
    if keys:
        key = draw(st.sampled_from(keys))
        if isinstance(target, dict) and draw(st.booleans()):
            del target[key]
        else:
            target[key] = draw(JSON_VALUES)
    return json.dumps(document, allow_nan=True).encode()


def _json_seeds() -> list[Any]:
    parsed = []
    for seed in SEEDS:
        try:
            parsed.append(json.loads(seed))
        except ValueError:
            continue
    return parsed


JSON_SEEDS = _json_seeds()
PAYLOADS = st.one_of(st.binary(max_size=512), byte_mutations(SEEDS), json_mutations(JSON_SEEDS))


def good_seeds(ingestor: Ingestor) -> list[bytes]:
    good = []
    for seed in SEEDS:
        try:
            with deadline():
                if ingestor.rows(ingestor.decode(seed, Delivery(TOPIC, 0, 0)), Delivery(TOPIC, 0, 0)):
                    good.append(seed)
        except Exception:  # noqa: BLE001, S112 - not this broker's format
            continue
    return good


class FakeMessage:
    """What confluent-kafka's consume() hands the loop, for a payload at a given offset."""

    def __init__(self, value: bytes, offset: int) -> None:
        self._value, self._offset = value, offset

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return 1, 1_700_000_000_000

    def key(self) -> bytes:
        return b"k"

    def headers(self) -> None:
        return None

    def value(self) -> bytes:
        return self._value


class FakeConsumer:
    def __init__(self) -> None:
        self.stored: list[Any] = []

    def store_offsets(self, offsets: list[Any]) -> None:
        self.stored.extend(offsets)


# Found by this fuzzing: the ELAsTiCC JSON form with "diaSourceId": [] decoded, and its row, which SQLite cannot
# bind, failed the whole batch's write, so the listen loop stopped on that message at every restart.
def test_a_payload_with_a_list_for_an_id_is_dead_lettered_not_fatal(tmp_path: Path) -> None:
    store = open_store(tmp_path / "fuzz.db")
    ingestor = Ingestor(HOST, "elasticc", store)
    poison = json.loads(_elasticc_seeds()[1])
    poison["diaSourceId"] = []
    batch = [FakeMessage(_elasticc_seeds()[0], 0), FakeMessage(json.dumps(poison).encode(), 1)]
    _handle_batch(FakeConsumer(), ingestor, batch, ListenStats(), None)  # type: ignore[arg-type]
    assert [d.offset for d in store.dead_letters()] == [1]
    assert "diaSourceId" in store.dead_letters()[0].error or "dia_source_id" in store.dead_letters()[0].error


@pytest.mark.parametrize("broker", sorted(HOST.brokers()))
def test_bad_payloads_are_dead_lettered_and_good_ones_stored(broker: str, tmp_path: Path) -> None:
    store = open_store(tmp_path / "fuzz.db")
    assert isinstance(store, SqliteStore)
    ingestor = Ingestor(HOST, broker, store)
    good = good_seeds(ingestor)
    good_rows = sum(len(ingestor.rows(ingestor.decode(g, Delivery(TOPIC, 0, 0)), Delivery(TOPIC, 0, 0)))
                    for g in good)
    offsets = iter(range(10**9))

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(bad=st.lists(PAYLOADS, min_size=1, max_size=4))
    def check(bad: list[bytes]) -> None:
        expected_dead = []
        expected_rows = good_rows
        for payload in bad:
            try:
                with deadline():
                    expected_rows += len(ingestor.rows(ingestor.decode(payload, Delivery(TOPIC, 0, 0)),
                                                       Delivery(TOPIC, 0, 0)))
            except Exception:  # noqa: BLE001 - the loop must dead-letter exactly these
                expected_dead.append(payload)
        batch = [FakeMessage(p, next(offsets)) for p in [*good, *bad, *good]]
        dead_before = len(store.dead_letters())
        stats = ListenStats()
        consumer = FakeConsumer()
        with deadline(20):
            _handle_batch(consumer, ingestor, batch, stats, None)  # type: ignore[arg-type]
        new_dead = store.dead_letters()[dead_before:]
        assert sorted(d.payload for d in new_dead) == sorted(expected_dead)
        for d in new_dead:
            assert d.error and "\n" not in d.error and len(d.error) <= 2000
            assert (d.source, d.partition, d.broker) == (TOPIC, 0, broker)
        # Every row decoded reached the store: new, or a duplicate of an earlier example's (good seeds repeat).
        assert stats.stored + stats.duplicates == expected_rows + good_rows
        assert stats.dead_letters == len(expected_dead)
        assert consumer.stored and consumer.stored[-1].offset == batch[-1].offset() + 1  # the stream goes on

    check()
    if good:
        assert store.conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0] >= 1
    store.close()


@pytest.mark.parametrize(("broker", "name", "decoder"), DECODERS, ids=[f"{b}-{n}" for b, n, _ in DECODERS])
def test_each_decoder_raises_an_exception_or_returns_storable_messages(
    broker: str, name: str, decoder: Callable[..., Any], tmp_path: Path
) -> None:
    store = open_store(tmp_path / "fuzz.db")
    ingestor = Ingestor(HOST, broker, store)

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(payload=PAYLOADS)
    def check(payload: bytes) -> None:
        delivery = Delivery(TOPIC, 0, 1, 1_700_000_000_000, b"k")
        try:
            with deadline():
                messages = list(decoder(payload, delivery))
                rows = ingestor.rows(messages, delivery)
        except Exception:  # noqa: BLE001 - any Exception is a clean refusal; BaseException, hangs are not
            return
        store.write_batch(rows)  # what a decoder accepts must be storable, or it would stop the listen loop

    check()
    store.close()
