"""``run_followup_demo``: alerts -> brokers -> ranking -> requests -> observed -> spectra scored, on one machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from alertmux.followup.demo import run_followup_demo, summary_lines
from alertmux.followup.storage import SPECTROSCOPY_BROKER, FollowupStore
from alertmux.store import open_store

pytest.importorskip("alertmux_lco")
pytest.importorskip("alertmux_soar")
pytest.importorskip("alertmux_gemini")


@pytest.mark.kafka
def test_the_whole_follow_up_loop_against_the_emulators(tmp_path: Path, kafka_broker: Any,
                                                        kafka_client_config: dict[str, str]) -> None:
    db = tmp_path / "demo.db"
    result = run_followup_demo(db, objects=120, seed=3, bootstrap=kafka_broker.bootstrap,
                               client_config=kafka_client_config, top=2, complete_after_s=0.5, wait_s=20)
    ranking = result["ranking"]
    assert ranking["ranked"] > 0 and ranking["candidates"] >= ranking["ranked"]
    facilities = result["facilities"]
    assert set(facilities) == {"lco", "soar", "gemini"}
    submitted = sum(f["submitted"] for f in facilities.values())
    assert submitted >= 1
    store = open_store(db)
    followup = FollowupStore(store)
    requests = followup.requests()
    assert len(requests) == submitted
    assert len({r.dia_object_id for r in requests}) == submitted  # one facility per object
    observed = [r for r in requests if r.state == "completed"]
    assert all(r.facility in ("lco", "soar") for r in observed)
    assert all(r.state == "submitted" for r in requests if r.facility == "gemini")
    assert result["spectra"] == len(observed) == len(followup.spectra())
    if observed:
        assert result["products"] >= 3 * len(observed)
        scored = result["demo"]["brokers"][SPECTROSCOPY_BROKER]
        assert scored["objects_scored"] == len(observed) and scored["top1_accuracy"] is not None
    for name, info in facilities.items():
        for skipped in info["skipped"]:
            assert skipped["reason"], name
    lines = summary_lines(result)
    assert lines[0].startswith(f"follow-up ranking {ranking['ranking_id']}") and any("gemini" in x for x in lines)
    for info in facilities.values():  # every skip is told, with its reason
        for skipped in info["skipped"]:
            assert f"    object {skipped['object']} skipped: {skipped['reason']}" in lines
    assert result["demo"]["brokers"]["elasticc"]["messages"] == result["demo"]["alerts_sent"]
    store.close()
