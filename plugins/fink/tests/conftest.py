"""Fixtures of the Fink plugin tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach Fink itself: only loopback hosts are allowed."""
    monkeypatch.setenv("ALERTMUX_LOOPBACK_ONLY", "1")
