"""Fixtures of the AMPEL plugin tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach AMPEL, Hopskotch or the DESC TOM: only loopback hosts are allowed."""
    monkeypatch.setenv("ALERTMUX_LOOPBACK_ONLY", "1")
