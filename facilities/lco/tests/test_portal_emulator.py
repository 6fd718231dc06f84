"""The portal emulator answers as the real Observation Portal server did (responses recorded from it).

The recordings are GPL-licensed: they are read from ../shared at test time and never copied into the package.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from alertmux_lco.catalogue import Catalogue
from alertmux_lco.emulator import OcsPortalEmulator

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "dev.py").exists())
REAL = ROOT.parent / "shared" / "data" / "facilities" / "lco_observation_portal" / "real_responses"


def recorded(name: str) -> Any:
    return json.loads((REAL / f"{name}.json").read_text())


def shape(document: Any, path: str = "") -> set[str]:
    """Every key path in a JSON document, with list items merged."""
    keys: set[str] = set()
    if isinstance(document, dict):
        for key, value in document.items():
            keys |= {f"{path}.{key}"} | shape(value, f"{path}.{key}")
    elif isinstance(document, list):
        for item in document:
            keys |= shape(item, f"{path}[]")
    return keys


def without(document: Any, volatile: set[str]) -> Any:
    if isinstance(document, dict):
        return {k: without(v, volatile) for k, v in document.items() if k not in volatile}
    if isinstance(document, list):
        return [without(v, volatile) for v in document]
    return document


@pytest.fixture
def portal() -> Iterator[tuple[OcsPortalEmulator, httpx.Client]]:
    # The recordings were made against the portal's test ConfigDB (site "tst") with proposal LocalTestProposal.
    catalogue = Catalogue.from_api(recorded("instruments"), sites=("tst",))
    with OcsPortalEmulator(catalogue, tokens={"test-token": "observer"}) as emulator, \
            httpx.Client(base_url=emulator.url, headers={"Authorization": "Token test-token"}) as client:
        yield emulator, client


def test_instruments_are_served_as_loaded(portal: Any) -> None:
    _, client = portal
    answer = client.get("/api/instruments/")
    assert answer.status_code == 200 and answer.json() == recorded("instruments")
    only_2m = client.get("/api/instruments/", params={"telescope_class": "2m0"}).json()
    assert sorted(only_2m) == ["2M0-FLOYDS-SCICAM", "2M0-SCICAM-MUSCAT"]


def test_validation_errors_are_the_portals_to_the_letter(portal: Any) -> None:
    _, client = portal
    body = recorded("invalid_requestgroup")
    validate = client.post("/api/requestgroups/validate/", json=body)
    assert validate.status_code == 200 and validate.json() == recorded("validate_invalid")
    submit = client.post("/api/requestgroups/", json=body)
    assert submit.status_code == 400 and submit.json() == recorded("submit_invalid")


def test_a_valid_group_validates_with_the_portals_durations(portal: Any) -> None:
    _, client = portal
    answer = client.post("/api/requestgroups/validate/", json=recorded("valid_requestgroup")).json()
    real = recorded("validate_valid")
    assert answer["errors"] == {}
    assert without(answer, {"largest_interval"}) == without(real, {"largest_interval"})
    ours = answer["request_durations"]["requests"][0]["largest_interval"]
    theirs = real["request_durations"]["requests"][0]["largest_interval"]
    assert ours == pytest.approx(theirs, rel=0.05)  # our airmass/twilight model is not the portal's rise-set code


def test_a_request_longer_than_the_target_is_up_is_refused(portal: Any) -> None:
    _, client = portal
    body = recorded("too_long_requestgroup")
    answer = client.post("/api/requestgroups/validate/", json=body).json()
    real = recorded("validate_too_long")
    assert shape(answer) == shape(real)
    pattern = re.compile(r"the target will only be visible for a maximum of (\d+\.\d\d) hours within the time window\. "
                         r"This is less than the duration of your request (\d+\.\d\d) hours\.")
    ours = pattern.search(answer["errors"]["requests"][0]["non_field_errors"][0])
    theirs = pattern.search(real["errors"]["requests"][0]["non_field_errors"][0])
    assert ours and theirs and ours.group(2) == theirs.group(2) == "64.20"
    assert float(ours.group(1)) == pytest.approx(float(theirs.group(1)), abs=0.2)
    assert client.post("/api/requestgroups/", json=body).status_code == 400


def test_a_submitted_group_has_the_portals_shape_and_defaults(portal: Any) -> None:
    _, client = portal
    created = client.post("/api/requestgroups/", json=recorded("valid_requestgroup"))
    real = recorded("submit_valid")
    assert created.status_code == 201
    group = created.json()
    assert shape(group) == shape(real)
    assert without(group, {"created", "modified"}) == without(real, {"created", "modified"})
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", group["created"])
    assert client.get(f"/api/requestgroups/{group['id']}/").json() == group


def test_cancel_answers_the_group_and_again_when_repeated(portal: Any) -> None:
    _, client = portal
    group = client.post("/api/requestgroups/", json=recorded("valid_requestgroup")).json()
    canceled = client.post(f"/api/requestgroups/{group['id']}/cancel/")
    assert canceled.status_code == 200
    assert without(canceled.json(), {"created", "modified"}) == without(recorded("cancel_requestgroup"),
                                                                        {"created", "modified"})
    again = client.post(f"/api/requestgroups/{group['id']}/cancel/")
    assert again.status_code == 200 and again.json()["state"] == "CANCELED"
    after = client.get(f"/api/requestgroups/{group['id']}/").json()
    assert without(after, {"created", "modified"}) == without(recorded("get_after_cancel"), {"created", "modified"})


def test_missing_and_unauthorized_answers(portal: Any) -> None:
    emulator, client = portal
    missing = client.get("/api/requestgroups/4242/")
    assert missing.status_code == 404 and missing.json() == recorded("get_missing")
    bad = httpx.get(f"{emulator.url}/api/requestgroups/", headers={"Authorization": "Token wrong"})
    assert bad.status_code == 403 and bad.json() == recorded("bad_token")
    anonymous = httpx.post(f"{emulator.url}/api/requestgroups/", json=recorded("valid_requestgroup"))
    assert anonymous.status_code == 403 and "credentials" in anonymous.json()["detail"]


def test_listing_filters_and_pages_like_the_portal(portal: Any) -> None:
    _, client = portal
    body = recorded("valid_requestgroup")
    for i in range(12):
        client.post("/api/requestgroups/", json=body | {"name": f"group-{i}"})
    first = client.get("/api/requestgroups/").json()
    assert first["count"] == 12 and len(first["results"]) == 10 and first["previous"] is None
    assert first["results"][0]["name"] == "group-11"  # newest first
    second = client.get(first["next"]).json()
    assert len(second["results"]) == 2 and second["next"] is None
    named = client.get("/api/requestgroups/", params={"name": "GROUP-1"}).json()  # "contains", case-insensitive
    assert sorted(g["name"] for g in named["results"]) == ["group-1", "group-10", "group-11"]
    assert client.get("/api/requestgroups/", params={"proposal": "Other"}).json()["count"] == 0


def test_throttling_answers_429_with_retry_after() -> None:
    catalogue = Catalogue.from_api(recorded("instruments"))
    with OcsPortalEmulator(catalogue, rate_limit=2, rate_period_s=5.0) as emulator, \
            httpx.Client(base_url=emulator.url, headers={"Authorization": "Token test-token"}) as client:
        answers = [client.get("/api/instruments/") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].headers["Retry-After"] in {"4", "5"}
    assert re.fullmatch(r"Request was throttled\. Expected available in \d seconds?\.", answers[2].json()["detail"])
