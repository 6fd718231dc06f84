"""``alertmux followup submit|status|products|history|cancel`` with the lco facility, against its emulator.

The token comes from the environment through ``${LCO_TOKEN}`` in alertmux.toml, as a user would set it up.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alertmux_lco.catalogue import lco_catalogue
from alertmux_lco.emulator import OcsPortalEmulator

from alertmux.followup.models import RankedTarget
from alertmux.followup.storage import FollowupStore
from alertmux.followup.visibility import now_utc, visibility
from alertmux.store import open_store

TOKEN = "cli-secret-token-8c1d"
FLOYDS_SITES = (("ogg", 20.7069, -156.2575), ("coj", -31.2733, 149.0707))


@functools.cache
def visible_positions() -> list[tuple[float, float]]:
    """Two positions well observable from the FLOYDS sites in the coming three days."""
    start = now_utc()

    def hours(ra: float, dec: float) -> float:
        return max(v.hours for v in visibility(ra, dec, FLOYDS_SITES, start, start + timedelta(hours=72)))

    found = sorted(((ra, dec) for ra in range(0, 360, 10) for dec in (-40, -10, 15)), key=lambda p: -hours(*p))
    return [(float(ra), float(dec)) for ra, dec in found[:2]]


@pytest.fixture
def portal() -> Iterator[OcsPortalEmulator]:
    with OcsPortalEmulator(lco_catalogue(), tokens={TOKEN: "observer"}, proposals={"LCO2026B-042": 50.0},
                           complete_after_s=900) as emulator:
        yield emulator


@pytest.fixture
def setup(tmp_path: Path, portal: OcsPortalEmulator, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    monkeypatch.setenv("LCO_TOKEN", TOKEN)
    config = tmp_path / "alertmux.toml"
    config.write_text(f"""
[facilities.lco]
portal_url = "{portal.url}"
archive_url = "{portal.url}/archive"
token = "${{LCO_TOKEN}}"
proposal = "LCO2026B-042"
timeout_s = 2.0
max_requests = 5
""")
    db = tmp_path / "alertmux.db"
    store = open_store(db)
    (a, b) = visible_positions()
    FollowupStore(store).save_ranking("near-peak", {}, 100.0, 10, [
        RankedTarget(1, 101, 1, 0.9, "best", "4m", 300.0, *a, 17.0, "r"),
        RankedTarget(2, 102, 1, 0.8, "never up", "4m", 300.0, 10.0, 85.0, 17.0, "r"),
        RankedTarget(3, 103, 2, 0.7, "faint", "8m", 3000.0, *a, 23.0, "r"),
        RankedTarget(4, 104, 3, 0.6, "second", "4m", 300.0, *b, 17.5, "r"),
        RankedTarget(5, 105, 5, 0.5, "third", "4m", 300.0, *b, 17.5, "r"),
    ])
    store.close()
    return {"config": config, "db": db, "tmp": tmp_path}


def cli(run_cli: Any, setup: dict[str, Path], *args: str) -> Any:
    return run_cli("--config", str(setup["config"]), "followup", *args[:1], "--db", str(setup["db"]), *args[1:])


def creates(portal: OcsPortalEmulator) -> int:
    return sum(1 for r in portal.server.requests if r.method == "POST" and r.path == "/api/requestgroups/")


def test_submit_is_a_dry_run_until_confirmed(run_cli: Any, setup: dict[str, Path], portal: OcsPortalEmulator) -> None:
    result = cli(run_cli, setup, "submit", "--facility", "lco", "--top", "2")
    assert result.code == 0, result.err
    lines = result.json_lines
    assert [(line["object"], line["action"]) for line in lines] == [
        (101, "would submit"), (102, "skipped"), (103, "skipped"), (104, "would submit")]
    assert "not observable" in lines[1]["reason"] and "too faint: 23.00 mag" in lines[2]["reason"]
    payload = lines[0]["payload"]
    assert payload["name"] == "alertmux-101" and payload["proposal"] == "LCO2026B-042"
    assert payload["requests"][0]["configurations"][0]["instrument_type"] == "2M0-FLOYDS-SCICAM"
    assert lines[0]["duration_s"] > lines[0]["exposure_s"]
    assert "dry run" in result.err
    assert creates(portal) == 0 and FollowupStore(open_store(setup["db"])).requests() == []


def test_the_whole_life_of_a_request(run_cli: Any, setup: dict[str, Path], portal: OcsPortalEmulator) -> None:
    sent = cli(run_cli, setup, "submit", "--facility", "lco", "--top", "2", "--confirm")
    assert sent.code == 0, sent.err
    actions = {line["object"]: line for line in sent.json_lines}
    assert actions[101]["action"] == actions[104]["action"] == "submitted"
    assert actions[101]["state"] == "pending" and actions[101]["native_state"] == "PENDING"
    assert creates(portal) == 2

    again = cli(run_cli, setup, "submit", "--facility", "lco", "--top", "2", "--confirm")
    assert again.code == 0
    assert {line["object"]: line["action"] for line in again.json_lines}[101] == "skipped"
    assert "already requested" in again.json_lines[0]["reason"]
    assert creates(portal) == 3 - 1 + 1  # only object 105 was new: 101 and 104 were not sent again

    status = cli(run_cli, setup, "status", "--json")
    assert {row["state"] for row in status.json_lines} == {"pending"}
    open_one = {row["object"]: row for row in status.json_lines}[105]["request_id"]
    canceled = cli(run_cli, setup, "cancel", str(open_one))
    assert canceled.code == 0, canceled.err
    assert json.loads(canceled.out)["state"] == "canceled" and "cancels whole groups" in canceled.err
    portal.clock.advance(901)
    status = cli(run_cli, setup, "status", "--json")
    rows = {row["object"]: row for row in status.json_lines}
    assert rows[101]["state"] == "completed" and rows[101]["parts"][0]["native_state"] == "COMPLETED"
    assert rows[105]["state"] == "canceled" and "2 open request(s) polled" in status.err

    request_id = rows[101]["request_id"]
    products = cli(run_cli, setup, "products", str(request_id), "--download", str(setup["tmp"] / "frames"))
    assert products.code == 0, products.err
    kinds = sorted(line["kind"] for line in products.json_lines)
    assert kinds == ["ARC", "LAMP_FLAT", "SPECTRUM"]
    for line in products.json_lines:
        assert Path(line["path"]).read_bytes().startswith(b"SIMPLE  =")

    history = cli(run_cli, setup, "history", str(request_id))
    states = [(event["part_id"], event["state"]) for event in history.json_lines]
    assert states[0] == (None, "unconfirmed") and (None, "pending") in states and states[-1][1] == "completed"

    refused = cli(run_cli, setup, "cancel", str(request_id))
    assert refused.code == 2 and "already completed" in refused.err


def test_caps_per_proposal_stop_submissions(run_cli: Any, setup: dict[str, Path], portal: OcsPortalEmulator) -> None:
    result = cli(run_cli, setup, "submit", "--facility", "lco", "--top", "3", "--confirm", "--set",
                 "max_requests=1")
    actions = [(line["object"], line["action"]) for line in result.json_lines]
    assert actions[0] == (101, "submitted") and (104, "skipped") in actions
    capped = next(line for line in result.json_lines if line["object"] == 104)
    assert "cap reached for proposal LCO2026B-042: 1 requests" in capped["reason"]
    hours = cli(run_cli, setup, "submit", "--facility", "lco", "--top", "1", "--set", "max_hours=0.01")
    assert "cap reached" in hours.json_lines[-1]["reason"]
    assert creates(portal) == 1


def test_the_token_reaches_neither_output_nor_database(run_cli: Any, setup: dict[str, Path],
                                                       portal: OcsPortalEmulator) -> None:
    outputs = [cli(run_cli, setup, "submit", "--facility", "lco", "--top", "1", "--confirm"),
               cli(run_cli, setup, "status", "--json"),
               run_cli("--config", str(setup["config"]), "config", "show")]
    assert all(TOKEN not in r.out and TOKEN not in r.err for r in outputs)
    assert TOKEN not in setup["db"].read_bytes().decode("latin-1")
    assert any(r.headers.get("authorization") == f"Token {TOKEN}" for r in portal.server.requests)


def test_a_wrong_token_is_a_clear_error(run_cli: Any, setup: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LCO_TOKEN", "not-the-token")
    result = cli(run_cli, setup, "submit", "--facility", "lco", "--top", "1")
    assert result.code == 4 and "refused the credentials" in result.err and "Invalid token." in result.err
    assert "not-the-token" not in result.err
    monkeypatch.delenv("LCO_TOKEN")
    missing = cli(run_cli, setup, "submit", "--facility", "lco", "--top", "1")
    assert missing.code == 2 and "LCO_TOKEN" in missing.err
