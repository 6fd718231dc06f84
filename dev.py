#!/usr/bin/env python3
"""Set up the development environment (a .venv with every distribution installed editable) and run a task.

    python3 dev.py demo [alertmux demo options]   # the local harness on embedded defaults
    python3 dev.py test [pytest options]          # the whole test suite
    python3 dev.py lint                           # ruff
    python3 dev.py alertmux ...                   # any alertmux command
    python3 dev.py bench                          # benchmarks/ (prints ratios measured in one run)

Only python3 (3.11+) is needed: everything else is installed from PyPI into .venv on first use, and again
whenever a pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
TEST_TOOLS = ["pytest>=8", "ruff>=0.6"]


def distributions() -> list[Path]:
    """Every installable distribution in the workspace, core first."""
    members = [ROOT / "core"]
    for group in ("plugins", "facilities"):
        members += sorted(p.parent for p in (ROOT / group).glob("*/pyproject.toml"))
    return members


def ensure_venv() -> None:
    members = distributions()
    stamp_text = "".join((m / "pyproject.toml").read_text() for m in members) + "".join(TEST_TOOLS)
    stamp = hashlib.sha256(stamp_text.encode()).hexdigest()
    stamp_file = VENV / ".alertmux-installed"
    if stamp_file.exists() and stamp_file.read_text() == stamp:
        return
    if not (BIN / "python").exists():
        print("creating .venv", file=sys.stderr)
        venv.create(VENV, with_pip=True)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    editable = [arg for m in members for arg in ("-e", f"{m}[test]" if "test" in (m / "pyproject.toml").read_text()
                                                  else str(m))]
    print(f"installing {len(members)} distributions into .venv", file=sys.stderr)
    subprocess.run(pip + editable + TEST_TOOLS, check=True)
    stamp_file.write_text(stamp)


def ensure_chromium() -> None:
    """The report test screenshots the HTML report in headless Chromium: install Debian's when missing."""
    if shutil.which("chromium") or not shutil.which("apt-get") or os.geteuid() != 0:
        return
    print("installing chromium (Debian package) for the report test", file=sys.stderr)
    quiet = {"stdout": subprocess.DEVNULL, "env": dict(os.environ, DEBIAN_FRONTEND="noninteractive")}
    subprocess.run(["apt-get", "update", "-qq"], check=False, **quiet)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=False, **quiet)


def main(argv: list[str]) -> int:
    task, args = (argv[0], argv[1:]) if argv else ("help", [])
    if task in ("help", "-h", "--help"):
        print(__doc__)
        return 0
    ensure_venv()
    if task == "test":
        ensure_chromium()
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    commands = {
        "demo": [str(BIN / "alertmux"), "demo", *args],
        "alertmux": [str(BIN / "alertmux"), *args],
        "test": [str(BIN / "python"), "-m", "pytest", *args],
        "lint": [str(BIN / "ruff"), "check", ".", *args],
        "bench": [str(BIN / "python"), str(ROOT / "benchmarks" / "run.py"), *args],
    }
    if task not in commands:
        print(f"unknown task {task!r}; tasks: {', '.join(commands)}", file=sys.stderr)
        return 2
    return subprocess.run(commands[task], cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
