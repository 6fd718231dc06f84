"""The conformance kit: each check catches what it claims to, passes a good plugin, and runs over every plugin.

Plugins here are small modules built per test (a toy JSON broker and an in-memory facility) with one thing
broken at a time, so each test shows a check failing for its reason and only for it.
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from alertmux import (
    AlertSourceSpec,
    BrokerMessage,
    BrokerSpec,
    DecodeError,
    Delivery,
    EmulatorContext,
    EmulatorSpec,
    FacilitySpec,
    KafkaTransport,
    NormalizedLabel,
    NormalizerSpec,
    SourceObject,
    hookimpl,
)
from alertmux.builtin import author_commands, elasticc, simulated
from alertmux.builtin.author_commands import render_template
from alertmux.embedded import EmbeddedKafka, local_client_config
from alertmux.emulation import alert_batches
from alertmux.followup.errors import FacilityError
from alertmux.followup.models import DataProduct, StatusUpdate, Submission, Validation
from alertmux.followup.settings import FacilitySettings
from alertmux.host import PluginHost
from alertmux.kafka import make_producer
from alertmux.specs import SamplePayload
from alertmux.testing import (
    CHECKS,
    CheckResult,
    ConformanceSuite,
    LocalHttpServer,
    Produce,
    RunCli,
    json_app,
    load_recording,
    load_samples,
)

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
ELASTICC_SAMPLE = (SHARED / "data" / "elasticc" / "derived"
                   / "example_brokerClassification_elasticc2_v0_9_1_alertId102879800007.json")
EXAMPLE = ROOT / "plugins" / "example"
OFFLINE = [c.name for c in CHECKS if not c.needs_kafka]

# -- a toy broker, one part broken at a time ----------------------------------------------------------------------
TOY_LABELS: dict[int | str, NormalizedLabel] = {
    "Ia": NormalizedLabel(2222, source="toy docs: Ia"),
    "II": NormalizedLabel(2224, source="toy docs: II"),
    "junk": NormalizedLabel(None, kind="context", source="toy docs: artifact probability"),
}
GOOD = b'{"id": 101, "classes": {"Ia": 0.8, "II": 0.15, "junk": 0.05}}'


def toy_decode(payload: bytes, delivery: Delivery) -> list[BrokerMessage]:
    try:
        body = json.loads(payload)
        classes = body["classes"]
        if not isinstance(classes, dict) or not classes:
            raise DecodeError("classes must be a non-empty object")
        values = [float(v) for v in classes.values()]
        return [BrokerMessage(("Toy", "1", "clf", ""), "toy", list(classes), values, alert_id=int(body["id"]),
                              dia_source_id=int(body["id"]), broker_publish_ms=body.get("ms"))]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DecodeError(f"not a toy message: {exc}") from None


def toy_emulator(answer: Callable[[int], bool] = lambda alert_id: True) -> EmulatorSpec:
    def run(ctx: EmulatorContext) -> None:
        producer = make_producer(ctx.bootstrap, ctx.client_config)
        try:
            for batch in alert_batches(ctx, idle_timeout=5):
                for alert in batch:
                    if answer(alert.alert_id):
                        body = {"id": alert.alert_id, "classes": {"Ia": 0.6, "II": 0.4}}
                        producer.produce(f"toy-{ctx.run_id}", json.dumps(body).encode())
                producer.poll(0)
        finally:
            producer.flush()

    return EmulatorSpec(run=run, output_topics=lambda run_id: (f"toy-{run_id}",))


def plugin(name: str = "toy", **hooks: Callable[..., Any]) -> ModuleType:
    """A plugin module called ``name`` implementing ``hooks`` (hook name without the alertmux_ prefix)."""
    module = ModuleType(name)
    for hook, function in hooks.items():
        setattr(module, f"alertmux_{hook}", hookimpl(function))
    return module


def toy(*, samples: list[SamplePayload] | None = None, labels: dict[int | str, NormalizedLabel] | None = None,
        **spec: Any) -> ModuleType:
    fields: dict[str, Any] = {"name": "toy", "description": "A toy JSON broker",
                              "kafka": KafkaTransport(toy_decode, topics=("toy",))}
    if samples is not None:
        fields["samples"] = lambda: samples
    fields.update(spec)
    table = TOY_LABELS if labels is None else labels
    return plugin(
        brokers=lambda: [BrokerSpec(**fields)],
        classification_normalizers=lambda: [NormalizerSpec(scheme="toy", description="Toy labels", table=table)],
    )


def suite_for(module: ModuleType, tmp_path: Path, **options: Any) -> ConformanceSuite:
    """The suite for ``module``, in a host holding it and the simulated source the round trip streams from."""
    host = PluginHost(load_entrypoints=False, plugins=[module] if module is simulated else [module, simulated])
    return ConformanceSuite(module, host=host, workdir=tmp_path, **options)


def results(suite: ConformanceSuite, check: str) -> dict[str, CheckResult]:
    return {r.subject: r for r in suite.check(check)}


def only(suite: ConformanceSuite, check: str) -> CheckResult:
    (result,) = suite.check(check)
    return result


# -- a good plugin ------------------------------------------------------------------------------------------------
def test_a_good_plugin_passes_every_offline_check_but_the_entry_point_it_lacks(tmp_path: Path) -> None:
    module = toy(samples=[SamplePayload("good.json", GOOD, decoder="kafka")])
    suite = suite_for(module, tmp_path)
    by_check = {(r.check, r.subject): r for r in suite.run(OFFLINE)}
    assert by_check[("entry_point", "plugin toy")].status == "fail"
    assert "no entry point named 'toy'" in by_check[("entry_point", "plugin toy")].detail
    assert by_check[("specs", "broker toy")].status == "pass"
    assert by_check[("specs", "normalizer toy")].status == "pass"
    assert by_check[("normalizers", "normalizer toy")] == CheckResult("normalizers", "normalizer toy", "pass",
                                                                     "2 labels mapped, 1 context")
    assert by_check[("samples", "broker toy")].detail == "1 samples, 1 messages"
    assert by_check[("garbage", "broker toy")].status == "pass"
    not_applicable = {check for (check, _), r in by_check.items() if not r.applies}
    assert not_applicable == {"alert_sources", "facility_lifecycle"}


def test_the_kafka_checks_are_skipped_without_a_broker(tmp_path: Path) -> None:
    suite = suite_for(toy(), tmp_path)
    for check in ("emulator_round_trip", "dead_letters", "redelivery"):
        assert only(suite, check).status == "skip"
        assert only(suite, check).detail == "no Kafka broker given"


# -- each check catches its problem -------------------------------------------------------------------------------
def test_specs_names_every_malformed_field(tmp_path: Path) -> None:
    module = toy(name="Toy Broker", description="", kafka=KafkaTransport(toy_decode, topics="toy"),  # type: ignore[arg-type]
                 emulator=EmulatorSpec(run=lambda ctx: None, output_topics=lambda run_id: ("always-the-same",)),
                 homepage="toy.example.org")
    detail = results(suite_for(module, tmp_path), "specs")["broker Toy Broker"].detail
    for problem in ("name 'Toy Broker' must be lowercase", "no description", "kafka.topics must be a tuple",
                    "ignores the run id", "is not a URL"):
        assert problem in detail


def test_specs_fails_a_broker_without_transport_and_commands_without_help(tmp_path: Path) -> None:
    import click

    @click.command()
    def silent() -> None:
        pass

    module = plugin(brokers=lambda: [BrokerSpec(name="bare", description="No way in")],
                    register_commands=lambda cli: cli.add_command(silent))
    found = results(suite_for(module, tmp_path), "specs")
    assert "no transport" in found["broker bare"].detail
    assert "without help text" in found["commands of toy"].detail and "silent" in found["commands of toy"].detail


def test_normalizers_flags_silent_drops_unknown_ids_and_missing_sources(tmp_path: Path) -> None:
    labels = {"Ia": NormalizedLabel(2222, source="ok"), "dropped": NormalizedLabel(None, source="no kind given"),
              "typo": NormalizedLabel(2299, source="not a class"), "unsourced": NormalizedLabel(2224)}
    result = only(suite_for(toy(labels=labels), tmp_path), "normalizers")
    assert result.status == "fail"
    assert "'dropped': no class and kind 'probability'" in result.detail
    assert "'typo': 2299 is not an ELAsTiCC2 class id" in result.detail
    assert "'unsourced': no source" in result.detail
    assert "'Ia'" not in result.detail


@pytest.mark.parametrize(
    ("sample", "problem"),
    [
        (SamplePayload("broken.json", b'{"id": 1, "classes": '), "broken.json: does not decode: DecodeError"),
        (SamplePayload("new-label.json", b'{"id": 2, "classes": {"Ia": 0.5, "SLSN-I": 0.5}}'),
         "labels no normalizer knows (stored with class_id null): toy:'SLSN-I'"),
        (SamplePayload("seconds.json", b'{"id": 3, "classes": {"Ia": 1.0}, "ms": 1732147345}'),
         "broker_publish_ms=1732147345 is not epoch milliseconds"),
        (SamplePayload("percent.json", b'{"id": 4, "classes": {"Ia": 81.0, "II": 19.0}}'),
         "probability 81.0 of 'Ia' is outside [0, 1]"),
        (SamplePayload("good.json", GOOD, decoder="avro"), "sample names decoder 'avro'"),
    ],
    ids=["undecodable", "unknown-label", "seconds", "percent", "unknown-decoder"],
)
def test_samples_reports_what_is_wrong_with_each_payload(tmp_path: Path, sample: SamplePayload, problem: str) -> None:
    result = only(suite_for(toy(samples=[SamplePayload("good.json", GOOD), sample]), tmp_path), "samples")
    assert result.status == "fail"
    assert problem in result.detail
    assert "good.json:" not in result.detail or sample.name == "good.json"


def test_samples_is_skipped_without_samples_and_takes_extra_ones(tmp_path: Path) -> None:
    suite = suite_for(toy(), tmp_path)
    assert only(suite, "samples").status == "skip"
    suite.add_samples("toy", [SamplePayload("given.json", GOOD)])
    assert only(suite, "samples").detail == "1 samples, 1 messages"
    with pytest.raises(ValueError, match="no broker 'nope'"):
        suite.add_samples("nope", [])


def test_garbage_catches_decoders_that_swallow_or_accept_anything(tmp_path: Path) -> None:
    def swallowing(payload: bytes, delivery: Delivery) -> list[BrokerMessage]:
        try:
            return toy_decode(payload, delivery)
        except DecodeError:
            return []

    def credulous(payload: bytes, delivery: Delivery) -> list[BrokerMessage]:
        return [BrokerMessage(("Toy", "1", "clf", ""), "toy", ["Ia"], [1.0], alert_id=len(payload))]

    module = toy(samples=[SamplePayload("good.json", GOOD)], kafka=KafkaTransport(swallowing, topics=("toy",)),
                 decoders={"json": credulous})
    result = only(suite_for(module, tmp_path), "garbage")
    assert "decoder kafka returned nothing for empty" in result.detail
    assert "decoder kafka returned nothing for good.json cut in half" in result.detail
    assert "decoder json turned binary" in result.detail


class Plain(BaseModel):
    url: str
    password: str


class Unrecognized(BaseModel):
    url: str
    auth: SecretStr


class Good(BaseModel):
    url: str
    api_key: SecretStr
    retries: int = 3


@pytest.mark.parametrize(
    ("model", "status", "detail"),
    [
        (Plain, "fail", "field 'password' looks like a secret but is not a SecretStr"),
        (Unrecognized, "fail", "SecretStr field 'auth' has a name `alertmux config show` does not recognize"),
        (Good, "pass", "secret fields: api_key"),
    ],
)
def test_secrets_checks_types_names_and_dumps(tmp_path: Path, model: type[BaseModel], status: str,
                                              detail: str) -> None:
    result = only(suite_for(toy(config_model=model), tmp_path), "secrets")
    assert (result.status, detail in result.detail) == (status, True), result.detail


def test_secrets_catches_a_plugin_that_copies_a_configured_secret_into_its_spec(tmp_path: Path) -> None:
    def brokers() -> list[BrokerSpec]:
        token = os.environ.get("ALERTMUX__BROKERS__LEAKY__API_KEY", "unset")
        return [BrokerSpec(name="leaky", description=f"Leaky broker (key {token})", config_model=Good,
                           kafka=KafkaTransport(toy_decode, topics=("t",)))]

    result = only(suite_for(plugin("leaky", brokers=brokers), tmp_path), "secrets")
    assert result.status == "fail"
    assert "appears in the plugin's specs" in result.detail
    assert "ALERTMUX__BROKERS__LEAKY__API_KEY" not in os.environ


def test_alert_sources_passes_the_simulator_and_catches_disorder_and_invalid_alerts(tmp_path: Path) -> None:
    assert only(suite_for(simulated, tmp_path / "good"), "alert_sources").status == "pass"
    (good,) = simulated.open_simulated(objects=1, seed=3)

    def shuffled(**_: Any) -> Iterator[SourceObject]:
        yield SourceObject(alerts=list(reversed(good.alerts)), truth=good.truth)
        yield SourceObject(alerts=[{"alertId": "not-a-number"}], truth=None)

    module = plugin("bad_source", alert_sources=lambda: [AlertSourceSpec("bad", "A bad source", shuffled)])
    result = only(suite_for(module, tmp_path / "bad"), "alert_sources")
    assert "not in time order" in result.detail
    assert "alert 'not-a-number' is not an elasticc.v0_9_1 alert" in result.detail


# -- a facility and its emulator ------------------------------------------------------------------------------------
TOKEN = "emulator-token-4711"


class ToySettings(FacilitySettings):
    token: SecretStr
    url: str = "memory://toy"


def toy_facility(*, strict: bool = True, cancels: bool = True, logs_token: bool = False, echoes_token: bool = False,
                 emulator: bool = True) -> ModuleType:
    """A facility whose "telescope" is a dict: enough for the lifecycle check, which never looks at HTTP."""
    held: dict[str, dict[str, str]] = {}
    log = logging.getLogger("toy.facility")

    def authorize(settings: ToySettings) -> None:
        if logs_token:
            log.debug("calling the portal with token %s", settings.token.get_secret_value())
        if settings.token.get_secret_value() != TOKEN:
            shown = settings.token.get_secret_value() if echoes_token else "***"
            raise FacilityError(f"403: token {shown} refused")

    def validate(settings: ToySettings, request: Any) -> Validation:
        """Check a request."""
        authorize(settings)
        errors = {}
        if strict and request.window_end <= request.window_start:
            errors["windows"] = ["end before start"]
        return Validation(ok=not errors, payload={"name": request.name, "exposure": request.exposure_s},
                          errors=errors or None)

    def submit(settings: ToySettings, request: Any) -> Submission:
        """Create the request."""
        authorize(settings)
        held[request.name] = {"id": str(len(held) + 1), "state": "PENDING"}
        return Submission(held[request.name]["id"], "pending", "PENDING")

    def lookup(settings: ToySettings, name: str) -> Submission | None:
        """Find a request by name."""
        authorize(settings)
        found = held.get(name)
        return Submission(found["id"], "pending", found["state"], found_existing=True) if found else None

    def status(settings: ToySettings, records: list[Any]) -> list[StatusUpdate]:
        """Every record's state."""
        authorize(settings)
        states = {h["id"]: h["state"] for h in held.values()}
        return [StatusUpdate(r.request_id, "canceled" if states[r.facility_id] == "CANCELED" else "pending",
                             states[r.facility_id]) for r in records]

    def cancel(settings: ToySettings, record: Any) -> StatusUpdate:
        """Cancel a request."""
        authorize(settings)
        if cancels:
            held[record.name]["state"] = "CANCELED"
        return status(settings, [record])[0]

    def data_products(settings: ToySettings, record: Any) -> list[DataProduct]:
        """Frames of a request."""
        authorize(settings)
        return []

    @contextmanager
    def start(**_: Any) -> Iterator[dict[str, Any]]:
        yield {"token": TOKEN, "proposal": "TOY-1"}

    spec = FacilitySpec(name="toyscope", description="A toy telescope", validate=validate, submit=submit,
                        status=status, cancel=cancel, data_products=data_products, config_model=ToySettings,
                        lookup=lookup, emulator=start if emulator else None)
    return plugin("toyscope", facilities=lambda: [spec])


def test_a_facility_goes_through_its_whole_life_against_its_emulator(tmp_path: Path) -> None:
    suite = suite_for(toy_facility(), tmp_path)
    result = only(suite, "facility_lifecycle")
    assert result.status == "pass", result.detail
    assert result.detail == ("validate > invalid refused > submit (pending) > lookup > status > cancel > "
                             "data products (0) > wrong token")
    assert only(suite, "secrets").detail == "secret fields: token"


@pytest.mark.parametrize(
    ("broken", "problem"),
    [
        ({"strict": False}, "validate accepted a window ending before it starts"),
        ({"cancels": False}, "cancel left the request pending (PENDING)"),
        ({"logs_token": True}, "a secret was logged"),
        ({"echoes_token": True}, "an error raised with a wrong token contains the token"),
    ],
    ids=["lenient-validate", "cancel-no-op", "logs-token", "echoes-token"],
)
def test_facility_lifecycle_catches(tmp_path: Path, broken: dict[str, bool], problem: str) -> None:
    result = only(suite_for(toy_facility(**broken), tmp_path), "facility_lifecycle")
    assert result.status == "fail"
    assert problem in result.detail


def test_a_facility_without_emulator_is_skipped_with_the_reason(tmp_path: Path) -> None:
    result = only(suite_for(toy_facility(emulator=False), tmp_path), "facility_lifecycle")
    assert result.status == "skip" and "no emulator" in result.detail


# -- the command line ---------------------------------------------------------------------------------------------
def authoring_host(*plugins: ModuleType) -> PluginHost:
    return PluginHost(load_entrypoints=False, plugins=[author_commands, elasticc, *plugins])


def test_conformance_command_prints_the_table_and_fails_on_a_failed_check(run_cli: RunCli) -> None:
    labels = dict(TOY_LABELS) | {"dropped": NormalizedLabel(None, source="forgot the kind")}
    result = run_cli("conformance", "toy", "--no-kafka", host=authoring_host(toy(labels=labels)))
    assert result.code == 1
    assert "'dropped': no class and kind 'probability'" in result.out
    assert "not applicable to this plugin: alert_sources, facility_lifecycle" in result.out
    assert result.err_lines == ["error: 2 of 12 conformance result(s) failed for plugin toy"]


def test_conformance_command_json_with_samples_and_one_check(run_cli: RunCli, tmp_path: Path) -> None:
    (tmp_path / "one.json").write_bytes(GOOD)
    (tmp_path / "SOURCES.md").write_text("where the samples come from")
    result = run_cli("conformance", "toy", "--json", "--samples", str(tmp_path), "--check", "samples",
                     host=authoring_host(toy()))
    assert result.code == 0, result.err
    assert result.json_lines == [{"check": "samples", "subject": "broker toy", "status": "pass",
                                  "detail": "1 samples, 1 messages", "applies": True}]


def test_conformance_command_refuses_unknown_names_and_checks(run_cli: RunCli) -> None:
    host = authoring_host(toy())
    assert "no installed plugin or broker called 'nope'" in run_cli("conformance", "nope", host=host).err
    assert "unknown check(s) spelling" in run_cli("conformance", "toy", "--check", "spelling", host=host).err


def test_new_plugin_writes_a_plugin_that_passes_the_offline_checks(
    run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "toybroker"
    result = run_cli("new-plugin", "toybroker", "--dir", str(target))
    assert result.code == 0, result.err
    assert 'toybroker = "alertmux_toybroker"' in (target / "pyproject.toml").read_text()
    assert (target / "src" / "alertmux_toybroker" / "samples" / "classification.json").is_file()
    assert "class TestConformance(PluginConformance):" in (target / "tests" / "test_toybroker.py").read_text()
    monkeypatch.syspath_prepend(str(target / "src"))
    import alertmux_toybroker  # type: ignore[import-not-found]

    suite = suite_for(alertmux_toybroker, tmp_path / "work")
    for check in ("specs", "normalizers", "samples", "garbage"):
        assert all(r.status == "pass" for r in suite.check(check)), suite.check(check)
    assert only(suite, "entry_point").status == "fail"  # not installed: pip install -e it first


def test_new_plugin_refuses_bad_names_and_existing_files(run_cli: RunCli, tmp_path: Path) -> None:
    assert "must be lowercase letters" in run_cli("new-plugin", "My-Broker", "--dir", str(tmp_path / "x")).err
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    assert "is not empty" in run_cli("new-plugin", "ok", "--dir", str(tmp_path / "taken")).err
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"


@pytest.mark.skipif(not EXAMPLE.is_dir(), reason="plugins/example is not beside the core")
def test_the_example_plugin_is_the_template_rendered() -> None:
    rendered = render_template("example")
    on_disk = {p.relative_to(EXAMPLE).as_posix(): p.read_text() for p in EXAMPLE.rglob("*")
               if p.is_file() and "__pycache__" not in p.parts and not any(".egg-info" in x for x in p.parts)}
    assert rendered.keys() == on_disk.keys(), "run python docs/scripts/plugin_template.py"
    for path, text in rendered.items():
        assert on_disk[path] == text, f"{path} differs from the template: run python docs/scripts/plugin_template.py"


# -- fixtures for plugin authors ----------------------------------------------------------------------------------
def test_http_server_serves_a_real_socket_and_records_requests(
    http_server: Callable[..., LocalHttpServer],
) -> None:
    import httpx

    def handler(request: Any) -> tuple[int, Any]:
        if request.method == "POST":
            return 201, {"got": request.json()}
        return 404, "nothing here", {"Retry-After": "1"}

    server = http_server(json_app(handler))
    assert server.url.startswith("http://127.0.0.1:")
    with httpx.Client(base_url=server.url, timeout=5) as client:
        created = client.post("/api/requestgroups/", json={"name": "x"}, headers={"Authorization": "Token t"})
        missing = client.get("/nowhere", params={"page": 2})
    assert (created.status_code, created.json()) == (201, {"got": {"name": "x"}})
    assert (missing.status_code, missing.text, missing.headers["retry-after"]) == (404, "nothing here", "1")
    first, second = server.requests
    assert (first.method, first.path, first.headers["Authorization"], first.json()) == (
        "POST", "/api/requestgroups/", "Token t", {"name": "x"})
    assert (second.method, second.path, second.query) == ("GET", "/nowhere", "page=2")


def test_load_samples_reads_files_directories_and_rejects_nothing_there(tmp_path: Path) -> None:
    (tmp_path / "a.avro").write_bytes(b"\x01")
    (tmp_path / "b.json").write_bytes(b"{}")
    (tmp_path / "README.md").write_text("notes")
    assert [s.name for s in load_samples(tmp_path)] == ["a.avro", "b.json"]
    assert load_samples(tmp_path / "b.json", decoder="json")[0].decoder == "json"
    with pytest.raises(Exception, match="no samples at"):
        load_samples(tmp_path / "missing")


# -- through Kafka ------------------------------------------------------------------------------------------------
INSTALLED = sorted({ep.name for ep in entry_points(group="alertmux")})


@pytest.mark.kafka
@pytest.mark.parametrize("name", INSTALLED)
def test_every_installed_plugin_passes_the_conformance_suite(
    name: str, kafka_broker: EmbeddedKafka, tmp_path: Path
) -> None:
    suite = ConformanceSuite(name, workdir=tmp_path)
    suite.use_kafka(kafka_broker.bootstrap, local_client_config())
    if name == "elasticc" and ELASTICC_SAMPLE.exists():  # the core ships no broker message of its own
        suite.add_samples("elasticc", load_samples(ELASTICC_SAMPLE))
    outcome = suite.run()
    failed = [f"{r.check} / {r.subject}: {r.detail}" for r in outcome if r.status == "fail"]
    assert not failed, "\n".join(failed)


def _install_metadata(project: Path, site: Path) -> None:
    """What ``pip install`` writes for ``project`` that discovery reads: a dist-info with the pyproject's metadata.

    No build (the template's build backend is not installed offline): the package itself is imported from src.
    """
    import tomllib

    meta = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    info = site / f"{meta['name'].replace('-', '_')}-{meta['version']}.dist-info"
    info.mkdir(parents=True)
    requires = "".join(f"Requires-Dist: {r.split('#')[0].strip()}\n" for r in meta["dependencies"])
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n"
                                   f"{requires}")
    groups = meta["entry-points"]
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()) for group, points in groups.items()))


@pytest.mark.kafka
def test_a_new_plugin_once_installed_passes_the_whole_conformance_suite(
    run_cli: RunCli, kafka_broker: EmbeddedKafka, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib
    import sys

    target = tmp_path / "zebra"
    assert run_cli("new-plugin", "zebra", "--dir", str(target)).code == 0
    _install_metadata(target, tmp_path / "site")
    monkeypatch.syspath_prepend(str(target / "src"))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    try:
        suite = ConformanceSuite("zebra", workdir=tmp_path / "work")
        suite.use_kafka(kafka_broker.bootstrap, local_client_config())
        results = suite.run()
    finally:
        sys.modules.pop("alertmux_zebra", None)
    assert not [r for r in results if r.status == "fail"], results
    passed = {r.check for r in results if r.status == "pass"}
    assert {"entry_point", "specs", "normalizers", "samples", "garbage", "emulator_round_trip", "dead_letters",
            "redelivery"} <= passed, results


@pytest.mark.kafka
def test_round_trip_fails_when_the_emulator_leaves_alerts_unanswered(kafka_broker: EmbeddedKafka,
                                                                      tmp_path: Path) -> None:
    module = toy(emulator=toy_emulator(answer=lambda alert_id: alert_id % 3 != 0))
    suite = suite_for(module, tmp_path, drain_timeout=6.0)
    suite.use_kafka(kafka_broker.bootstrap, local_client_config())
    result = only(suite, "emulator_round_trip")
    assert result.status == "fail"
    assert "answers stored for" in result.detail and "answers cover" in result.detail


@pytest.mark.kafka
def test_a_decoder_returning_an_unstorable_id_is_dead_lettered_and_the_loop_goes_on(kafka_broker: EmbeddedKafka,
                                                                                    tmp_path: Path) -> None:
    def poisoned(payload: bytes, delivery: Delivery) -> list[BrokerMessage]:
        if payload.startswith(b'{"unexpected"'):  # decodes garbage into an id the database cannot bind
            return [BrokerMessage(("Toy", "1", "clf", ""), "toy", ["Ia"], [1.0], alert_id=["not", "an", "id"])]  # type: ignore[arg-type]
        return toy_decode(payload, delivery)

    module = toy(samples=[SamplePayload("good.json", GOOD)], kafka=KafkaTransport(poisoned, topics=("toy",)))
    suite = suite_for(module, tmp_path)
    suite.use_kafka(kafka_broker.bootstrap, local_client_config())
    assert "decoder kafka turned unrelated JSON" in only(suite, "garbage").detail
    # The core checks ids before the database sees them, so this poison pill is a dead letter like any other.
    result = only(suite, "dead_letters")
    assert result.status == "pass", result.detail


@pytest.mark.kafka
def test_redelivery_fails_for_messages_that_change_at_each_delivery(kafka_broker: EmbeddedKafka,
                                                                    tmp_path: Path) -> None:
    def unstable(payload: bytes, delivery: Delivery) -> list[BrokerMessage]:
        (m,) = toy_decode(payload, delivery)
        # No alert id, and a value drawn at decode time: the content hash differs at every delivery.
        return [BrokerMessage(m.classifier, "toy", ["Ia"], [random.random()], dia_object_id=m.alert_id)]

    module = toy(samples=[SamplePayload("good.json", GOOD)], kafka=KafkaTransport(unstable, topics=("toy",)))
    suite = suite_for(module, tmp_path)
    suite.use_kafka(kafka_broker.bootstrap, local_client_config())
    result = only(suite, "redelivery")
    assert result.status == "fail"
    assert "1 payloads sent twice left 2 rows, 1 expected" in result.detail


@pytest.mark.kafka
def test_record_captures_bytes_key_and_headers_and_reports_what_does_not_decode(
    run_cli: RunCli, produce: Produce, unique_topic: str, kafka_broker: EmbeddedKafka, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    canary = "hunter2-do-not-write-me"
    monkeypatch.setenv("ALERTMUX__KAFKA__SASL_PASSWORD", canary)  # ignored on a PLAINTEXT connection
    monkeypatch.chdir(tmp_path)
    payloads = [GOOD, b"\x00garbage", b'{"id": 102, "classes": {"II": 1.0}}']
    produce(unique_topic, payloads, key=b"obj-7", headers=[("schema", b"toy/1"), ("empty", None)])
    out = tmp_path / "rec"
    result = run_cli("record", "toy", "--bootstrap", kafka_broker.bootstrap, "--topic", unique_topic, "--from",
                     "earliest", "--max-messages", "3", "--idle-exit", "10", "--out", str(out),
                     host=authoring_host(toy()))
    assert result.code == 0, result.err
    (summary,) = result.json_lines
    assert (summary["recorded"], summary["decode_failures"]) == (3, 1)
    assert "000002.bin" in result.err and "does not decode as toy" in result.err
    recorded = load_recording(out)
    assert [m.payload for m in recorded] == payloads
    assert [(m.topic, m.partition, m.offset, m.key) for m in recorded] == [(unique_topic, 0, i, b"obj-7")
                                                                           for i in range(3)]
    assert recorded[0].headers == (("schema", b"toy/1"), ("empty", None))
    assert recorded[0].delivery.headers == (("schema", b"toy/1"), ("empty", b""))
    assert json.loads((out / "recording.json").read_text())["messages"] == 3
    assert not any(canary.encode() in p.read_bytes() for p in out.iterdir()), "a secret reached the recording"
    assert canary not in result.out + result.err
    # The recording replays as samples: the good payloads decode, the garbage one is what a fix would need.
    suite = suite_for(toy(), tmp_path / "work")
    suite.add_samples("toy", [s for s in load_samples(out) if s.payload != b"\x00garbage"])
    assert only(suite, "samples").detail == "2 samples, 2 messages"
    (out / "000001.bin").write_bytes(b"tampered")
    with pytest.raises(Exception, match="does not match its sha256"):
        load_recording(out)
