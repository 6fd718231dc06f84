"""Follow-up: from classifications to spectra. Rank objects, request observations, track them, learn what they are.

* :mod:`~alertmux.followup.candidates` and :mod:`~alertmux.followup.ranking`: candidates as of a time, ranking
  strategies (plugins, through ``alertmux_followup_strategies``), priorities 1-5, stored rankings.
* :mod:`~alertmux.followup.strategies`: the built-in ``near-peak`` and RESSPECT-style ``uncertainty``;
  :mod:`~alertmux.followup.exptime`: exposure times from magnitudes for a 4 m and an 8 m telescope.
* :mod:`~alertmux.followup.service`: submit (a dry run unless confirmed, with visibility and cap checks),
  bulk status, cancel, data products; :mod:`~alertmux.followup.storage`: the follow-up tables, spectroscopic
  classifications stored beside the brokers'.
* :mod:`~alertmux.followup.models`: the request records and the normalized states; :mod:`~alertmux.followup.http`
  and :mod:`~alertmux.followup.emulator`: what facility plugins and their emulators are built from.
* :mod:`~alertmux.followup.demo`: ``run_followup_demo``, the whole loop against the emulators.
"""

from __future__ import annotations

from alertmux.followup.models import (
    OPEN,
    STATES,
    TERMINAL,
    DataProduct,
    ObservationRequest,
    Part,
    RankedTarget,
    Ranking,
    RequestRecord,
    StatusUpdate,
    Submission,
    Validation,
)

__all__ = [
    "OPEN",
    "STATES",
    "TERMINAL",
    "DataProduct",
    "ObservationRequest",
    "Part",
    "RankedTarget",
    "Ranking",
    "RequestRecord",
    "StatusUpdate",
    "Submission",
    "Validation",
]
