"""The HTML report: self-contained, written by the CLI, and rendered by a real browser."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from alertmux.report import write_report
from alertmux.scoring import SqliteScoring

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")


@pytest.fixture(scope="module")
def small_store(emulated_store: Callable[..., Path]) -> Path:
    return emulated_store("after3", 30, (1, 5), seed=7)


@pytest.fixture(scope="module")
def report(small_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report(small_store, tmp_path_factory.mktemp("report") / "report.html")


def test_report_is_self_contained(report: Path) -> None:
    text = report.read_text()
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)"', text)
    # One classifier: 3 selections x 2 levels of heatmaps, completeness/purity bars at 2 levels, turnaround,
    # versus peak.
    assert len(images) == 10
    assert all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)  # nothing to fetch from the network
    for heading in ("Stream completeness", "Confusion matrices", "Completeness and purity", "Turnaround",
                    "Versus days from peak"):
        assert heading in text
    assert "Dwarf Novae" in text and "SN-like" in text  # class names, in the tables too
    # The overview links each classifier to its section.
    (anchor,) = re.findall(r"<a href='#(classifier-\d+)'>", text)
    assert f"id='{anchor}'" in text


def test_headline_accuracy_is_the_confusion_diagonal(small_store: Path, report: Path) -> None:
    counts = SqliteScoring(sqlite3.connect(small_store)).confusion("last")
    diagonal = counts.loc[counts["true_class"] == counts["predicted_class"], "count"].sum()
    accuracy = diagonal / counts["count"].sum()
    assert 0 < accuracy < 1  # the emulator's matrix is neither perfect nor useless, so the check can fail
    card = f"<div class='value'>{accuracy:.1%}</div><div class='label'>top-1 accuracy (last, leaf)</div>"
    assert card in report.read_text()


def test_report_command(small_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from alertmux.cli import main

    out = tmp_path / "cli" / "report.html"
    main(["report", "--db", str(small_store), "--out", str(out)])
    assert json.loads(capsys.readouterr().out) == {"report": str(out)}
    assert out.stat().st_size > 50_000


def test_report_renders_in_chromium(report: Path, tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium): cannot screenshot the report")
    from PIL import Image

    profile = tmp_path / "profile"  # a new, empty profile: nothing cached, nothing synced
    profile.mkdir()
    shot = tmp_path / "report.png"
    subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={shot}", "--window-size=1400,3000",
         report.resolve().as_uri()],
        check=True, capture_output=True, timeout=120,
    )
    image = Image.open(io.BytesIO(shot.read_bytes())).convert("RGB")
    assert image.size == (1400, 3000)
    counts = image.getcolors(maxcolors=image.width * image.height)  # [(pixels, (r, g, b)), ...]
    assert counts is not None
    white = sum(n for n, colour in counts if colour == (255, 255, 255))
    ink = 1 - white / (image.width * image.height)
    # A blank page or a broken-image icon has a handful of colours; rendered heatmaps and text have thousands.
    assert len(counts) > 500, f"only {len(counts)} distinct colours: did the plots render?"
    assert ink > 0.05, f"only {ink:.1%} of the page is not white"
    # The heatmaps' dark blue cells (matplotlib's Blues near 1.0) are on the page.
    assert sum(n for n, (r, g, b) in counts if b > 90 and r < 60 and g < 90) > 1000
