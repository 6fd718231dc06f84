"""Fixtures of the ALeRCE plugin tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alertmux_alerce.emulator import AlerceRestEmulator

from alertmux.serve import serve_in_thread


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach ALeRCE itself: only loopback hosts are allowed."""
    monkeypatch.setenv("ALERTMUX_LOOPBACK_ONLY", "1")


@pytest.fixture
def rest_emulator() -> Iterator[tuple[AlerceRestEmulator, str]]:
    """ALeRCE's REST routes on a free loopback port: (the emulator, its base URL)."""
    emulator = AlerceRestEmulator()
    with serve_in_thread(emulator.app()) as url:
        yield emulator, url
