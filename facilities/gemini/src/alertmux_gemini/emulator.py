"""A loopback emulator of Gemini's ToO trigger endpoint (``/too``), with the documented rules.

It authenticates the user key (program, email, password), finds the template observation and checks it is On
Hold, checks the parameters as ``urltoo_readme.txt`` says (a missing target/ra/dec is a 400 naming it; an
unparsable position or probe is a 400; guide-star parameters must be complete, else 400 "guide star not
completely specified"; exptime an integer 1-1200; magnitudes "value/band/system"), then clones the template and
answers its new id as text. The wording of the other error texts is this emulator's own (not recorded).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from alertmux.followup.emulator import Fault, Faults, LoopbackServer, RateLimiter, Reply, Request
from alertmux_gemini.too import BANDS

_RA = re.compile(r"^\d{1,2}:\d{2}:\d{2}(\.\d+)?$")
_DEC = re.compile(r"^[+-]?\d{1,2}:\d{2}:\d{2}(\.\d+)?$")


@dataclass
class Program:
    """A program with its user keys and observations (template number -> status)."""

    users: dict[str, str]
    observations: dict[int, str] = field(default_factory=dict)


class GeminiTooEmulator:
    """``/too`` on 127.0.0.1; use as a context manager."""

    def __init__(
        self,
        programs: dict[str, Program] | None = None,
        *,
        rate_limit: int | None = None,
        rate_period_s: float = 1.0,
        name: str = "gemini-emulator",
    ) -> None:
        """Configure the programs (default: ``GS-2026B-Q-101`` with template 1 On Hold for one user key)."""
        self.programs = programs or {
            "GS-2026B-Q-101": Program(users={"pi@example.org": "user-key-secret"}, observations={1: "On Hold"}),
        }
        self.clones: list[dict[str, str]] = []
        """Every observation created, with the parameters it was created from (password removed)."""
        self.limiter = RateLimiter(rate_limit, rate_period_s)
        self.faults = Faults()
        self._lock = threading.Lock()
        self.server = LoopbackServer(self.handle, name)

    def __enter__(self) -> GeminiTooEmulator:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.__exit__(*exc)

    @property
    def url(self) -> str:
        """The portal's base URL."""
        return self.server.url

    def settings(self) -> dict[str, Any]:
        """Settings that point the ``gemini`` facility at this emulator: its first program and user key.

        Its template observation takes four exposures.
        """
        program_id, program = next(iter(self.programs.items()))
        email, password = next(iter(program.users.items()))
        template = next(n for n, status in program.observations.items() if status == "On Hold")
        return {"portal_url": self.url, "proposal": program_id, "email": email, "password": password,
                "template_observation": template, "template_exposures": 4}

    def inject(self, fault: Fault) -> None:
        """Fail the next matching call (once)."""
        self.faults.inject(fault)

    def handle(self, request: Request) -> Reply:
        """Answer one HTTP request."""
        if request.path != "/too":
            return Reply.text(404, "Not Found")
        if request.method not in ("GET", "POST"):
            return Reply.text(405, "Method Not Allowed")
        if self.limiter.wait_needed("all"):
            return Reply.text(429, "Too many requests", headers={"Retry-After": "1"})
        fault = self.faults.take(request)
        if fault is not None and fault.kind == "status":
            return Reply.text(fault.status, "Service Unavailable")
        with self._lock:
            reply = self._trigger(request.form())
        return Faults.apply(fault, reply)

    def _trigger(self, p: dict[str, str]) -> Reply:
        program = self.programs.get(p.get("prog", ""))
        if program is None:
            return Reply.text(400, f"unknown program {p.get('prog', '')!r}")
        if program.users.get(p.get("email", "")) != p.get("password") or not p.get("password"):
            return Reply.text(401, "invalid user key (email/password) for this program")
        try:
            obsnum = int(p.get("obsnum", ""))
        except ValueError:
            return Reply.text(400, "obsnum")
        if program.observations.get(obsnum) != "On Hold":
            return Reply.text(400, f"template observation {obsnum} is not 'On hold'")
        for key in ("target", "ra", "dec"):
            if not p.get(key):
                return Reply.text(400, key)
        if not _RA.match(p["ra"]) or not _DEC.match(p["dec"]):
            return Reply.text(400, "could not parse ra/dec")
        guide = [k for k in ("gstarget", "gsra", "gsdec", "gsmags", "gsprobe") if p.get(k)]
        if guide and not all(p.get(k) for k in ("gsra", "gsdec", "gsprobe")):
            return Reply.text(400, "guide star not completely specified")
        if guide and p["gsprobe"] not in ("PWFS1", "PWFS2", "OIWFS", "AOWFS"):
            return Reply.text(400, "could not parse gsprobe")
        if "exptime" in p:
            if not p["exptime"].isdigit() or not 1 <= int(p["exptime"]) <= 1200:
                return Reply.text(400, "exptime must be an integer between 1 and 1200")
        for mag in filter(None, p.get("mags", "").split(",")):
            parts = mag.split("/")
            if len(parts) != 3 or parts[1] not in BANDS or parts[2] not in ("Vega", "AB", "Jy"):
                return Reply.text(400, f"could not parse magnitude {mag!r}")
            try:
                float(parts[0])
            except ValueError:
                return Reply.text(400, f"could not parse magnitude {mag!r}")
        number = max(program.observations) + 1
        program.observations[number] = "Ready" if p.get("ready", "true") == "true" else "On Hold"
        observation_id = f"{p['prog']}-{number}"
        self.clones.append({"id": observation_id, **{k: v for k, v in p.items() if k != "password"}})
        return Reply.text(200, observation_id)


@contextmanager
def running(**options: Any) -> Iterator[GeminiTooEmulator]:
    """A started emulator, stopped on exit."""
    with GeminiTooEmulator(**options) as emulator:
        yield emulator
