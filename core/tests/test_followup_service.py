"""The core's submission rules with an in-memory facility: checks before sending, idempotency, caps, outcomes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from alertmux import FacilitySpec, hookimpl
from alertmux.errors import UsageError
from alertmux.followup.errors import AmbiguousSubmission, FacilityUnavailable
from alertmux.followup.models import ObservationRequest, RankedTarget, StatusUpdate, Submission, Validation
from alertmux.followup.service import open_facility, poll, resolve_unconfirmed, submit_ranking
from alertmux.followup.storage import FollowupStore, record_positions
from alertmux.host import PluginHost


@dataclass
class Telescope:
    """A facility that keeps its requests in a dict; ``fail`` makes the next submits fail in a chosen way."""

    held: dict[str, Submission] = field(default_factory=dict)
    fail: list[str] = field(default_factory=list)
    sent: list[ObservationRequest] = field(default_factory=list)

    def validate(self, settings: Any, request: ObservationRequest) -> Validation:
        return Validation(True, {"name": request.name, "secret_token": "abc"}, duration_s=request.exposure_s + 100)

    def submit(self, settings: Any, request: ObservationRequest) -> Submission:
        self.sent.append(request)
        how = self.fail.pop(0) if self.fail else None
        if how == "down":
            raise FacilityUnavailable("T: cannot connect")
        submission = Submission(f"id-{len(self.held) + 1}", "pending", "QUEUED")
        self.held[request.name] = submission
        if how == "ambiguous":
            raise AmbiguousSubmission("T: no answer")
        return submission

    def lookup(self, settings: Any, name: str) -> Submission | None:
        return self.held.get(name)

    def status(self, settings: Any, records: Any) -> list[StatusUpdate]:
        return [StatusUpdate(r.request_id, "completed", "DONE") for r in records]


@pytest.fixture
def telescope() -> Telescope:
    return Telescope()


@pytest.fixture
def facility(telescope: Telescope) -> Any:
    class Plugin:
        @hookimpl
        def alertmux_facilities(self) -> Any:
            yield FacilitySpec(name="t", description="test", validate=telescope.validate, submit=telescope.submit,
                               status=telescope.status, lookup=telescope.lookup, aperture_m=4.0)

    host = PluginHost(load_entrypoints=False, plugins=[Plugin()])
    return open_facility(host, "t", {"proposal": "P", "max_requests": 3})


@pytest.fixture
def followup(tmp_store: Any) -> FollowupStore:
    store = FollowupStore(tmp_store)
    store.save_ranking("s", {}, 100.0, 4, [
        RankedTarget(1, 1, 1, 0.9, "a", None, None, 10.0, -20.0, 18.0, "r"),
        RankedTarget(2, 2, 2, 0.8, "no position", None, None, None, None, 18.0, "r"),
        RankedTarget(3, 3, 3, 0.7, "b", None, None, 20.0, -20.0, 18.5, "r"),
        RankedTarget(4, 4, 4, 0.6, "c", None, None, 30.0, -20.0, 19.0, "r"),
    ])
    return store


def test_dry_run_sends_nothing_and_confirm_sends_once(followup: FollowupStore, facility: Any,
                                                       telescope: Telescope) -> None:
    dry = submit_ranking(followup, facility, top=2)
    assert [(p.dia_object_id, p.action) for p in dry] == [(1, "would submit"), (2, "skipped"), (3, "would submit")]
    assert "no position" in dry[1].reason and telescope.sent == [] and followup.requests() == []
    assert dry[0].request is not None and dry[0].request.exposure_s == 60  # 18 mag on a 4 m: 43 s, RESSPECT's floor
    sent = submit_ranking(followup, facility, top=2, confirm=True)
    assert [p.action for p in sent if p.action != "skipped"] == ["submitted", "submitted"]
    stored = followup.requests()
    assert [(r.dia_object_id, r.state, r.native_state, r.facility_id) for r in stored] == [
        (1, "pending", "QUEUED", "id-1"), (3, "pending", "QUEUED", "id-2")]
    assert '"secret_token": "***"' in followup.conn.execute("SELECT payload FROM followup_requests").fetchone()[0]
    again = submit_ranking(followup, facility, top=2, confirm=True)
    assert [p.dia_object_id for p in again if p.action == "submitted"] == [4]  # 1 and 3 are already requested
    assert len(telescope.sent) == 3


def test_an_ambiguous_submission_is_resolved_by_lookup(followup: FollowupStore, facility: Any,
                                                       telescope: Telescope) -> None:
    telescope.fail.append("ambiguous")
    (first, *_) = submit_ranking(followup, facility, top=1, confirm=True)
    assert first.action == "unconfirmed" and first.record.state == "unconfirmed"
    assert "looks it up by name" in first.reason
    (record,) = resolve_unconfirmed(followup, facility)
    assert (record.state, record.facility_id) == ("pending", "id-1")
    assert len(telescope.sent) == 1
    assert poll(followup, facility)[0].state == "completed"
    assert followup.request(record.request_id).state == "completed"


def test_a_facility_that_never_answered_fails_the_record_and_stops(followup: FollowupStore, facility: Any,
                                                                   telescope: Telescope) -> None:
    telescope.fail.append("down")
    with pytest.raises(FacilityUnavailable):
        submit_ranking(followup, facility, top=2, confirm=True)
    (record,) = followup.requests()
    assert (record.state, record.native_state) == ("failed", "NOT_SENT") and "cannot connect" in record.detail
    resent = submit_ranking(followup, facility, top=1, confirm=True, resubmit=True)
    assert resent[0].action == "submitted" and resent[0].request.name == "alertmux-1-2"


def test_caps_count_requests_across_runs(followup: FollowupStore, facility: Any) -> None:
    capped = submit_ranking(followup, facility, top=4, confirm=True)
    actions = [(p.dia_object_id, p.action) for p in capped]
    assert actions == [(1, "submitted"), (2, "skipped"), (3, "submitted"), (4, "submitted")]
    later = followup.save_ranking("s", {}, 101.0, 1, [RankedTarget(1, 9, 1, 0.9, "d", None, None, 40.0, -20.0,
                                                                   18.0, "r")])
    (blocked,) = submit_ranking(followup, facility, top=1, ranking_id=later.ranking_id)
    assert blocked.action == "skipped" and "cap reached for proposal P: 3 requests" in blocked.reason


def test_no_proposal_no_ranking_are_clear(tmp_path: Any, followup: FollowupStore, facility: Any) -> None:
    from alertmux.store import open_store

    with pytest.raises(UsageError, match="no ranking stored: run `alertmux followup rank` first"):
        submit_ranking(FollowupStore(open_store(tmp_path / "empty.db")), facility, top=1)
    anonymous = facility.__class__(facility.spec, facility.settings.model_copy(update={"proposal": ""}))
    with pytest.raises(UsageError, match="set proposal"):
        submit_ranking(followup, anonymous, top=1, confirm=True)
    assert submit_ranking(followup, anonymous, top=1)[0].action == "would submit"  # a dry run needs none


def test_positions_recorded_from_alerts(tmp_store: Any) -> None:
    record_positions(tmp_store, [{"diaSource": {"diaObjectId": 5, "ra": 1.0, "decl": 2.0},
                                  "diaObject": {"diaObjectId": 5, "ra": 1.5, "decl": 2.5}},
                                 {"diaSource": {"diaObjectId": 6, "ra": 3.0, "decl": -4.0}},
                                 {"diaSource": {"diaObjectId": 7, "ra": 5.0, "dec": -6.0}},  # a Rubin record
                                 {"diaSource": {"diaObjectId": 8}}])  # no position: skipped
    assert FollowupStore(tmp_store).positions([5, 6, 7, 8]) == {5: (1.5, 2.5), 6: (3.0, -4.0), 7: (5.0, -6.0)}
