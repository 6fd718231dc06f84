"""The emulated portal's instrument catalogue: instrument types in the shape of ``GET /api/instruments/``.

The portal builds that answer from its ConfigDB; the emulator builds it from these definitions, written here for
the emulator (the instrument type codes, slit and mode names are LCO's and SOAR's public ones where we know them;
the overheads are round values of ours, not ConfigDB's). Tests can load any recorded ``/api/instruments/`` answer
instead with :meth:`Catalogue.from_api`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

SITES: dict[str, tuple[str, float, float]] = {
    "ogg": ("ogg", 20.7069, -156.2575),  # Haleakala (LCO 2 m, FLOYDS)
    "coj": ("coj", -31.2733, 149.0707),  # Siding Spring (LCO 2 m, FLOYDS)
    "lsc": ("lsc", -30.1674, -70.8047),  # Cerro Tololo (LCO 1 m)
    "cpt": ("cpt", -32.3806, 20.8101),  # Sutherland (LCO 1 m)
    "elp": ("elp", 30.6797, -104.0152),  # McDonald (LCO 1 m)
    "tfn": ("tfn", 28.3004, -16.5117),  # Teide (LCO 1 m)
    "sor": ("sor", -30.2379, -70.7337),  # Cerro Pachon (SOAR 4.1 m)
    "tst": ("tst", -32.3805542, 20.8100352),  # the portal's own test site (its test ConfigDB)
}
"""Observing sites: (code, latitude, longitude east) in degrees."""


@dataclass(frozen=True, slots=True)
class Overheads:
    """How the emulator turns a requestgroup into telescope time (seconds)."""

    per_exposure: float = 1.0
    config_front_padding: float = 16.0
    request: float = 94.5
    """Per request: observation front padding, slew and settle."""


@dataclass(frozen=True, slots=True)
class Catalogue:
    """Instrument types as ``/api/instruments/`` lists them, their overheads and where each telescope class is."""

    instruments: Mapping[str, Mapping[str, Any]]
    overheads: Mapping[str, Overheads] = field(default_factory=dict)
    sites: Mapping[str, Sequence[tuple[str, float, float]]] = field(default_factory=dict)
    """Telescope class -> sites, for the visibility check."""

    @classmethod
    def from_api(cls, instruments: Mapping[str, Any], sites: Sequence[str] = ("tst",)) -> Catalogue:
        """A catalogue from a ``/api/instruments/`` answer (every class at ``sites``, default overheads)."""
        classes = {entry["class"] for entry in instruments.values()}
        return cls(dict(instruments), {}, {c: [SITES[s] for s in sites] for c in classes})

    def overhead(self, instrument_type: str) -> Overheads:
        """The overheads of an instrument type."""
        return self.overheads.get(instrument_type, Overheads())


def _mode(code: str, overhead: float, name: str | None = None) -> dict[str, Any]:
    return {"name": name or code, "overhead": overhead, "code": code, "schedulable": True, "validation_schema": {}}


def _modes(kind: str, default: str, modes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {"type": kind, "modes": list(modes), "default": default}


def _elements(codes: Sequence[str], default: str) -> list[dict[str, Any]]:
    return [{"name": c, "code": c, "schedulable": True, "default": c == default} for c in codes]


def _config_types(codes: Sequence[str]) -> dict[str, Any]:
    return {c: {"name": c.replace("_", " ").title(), "code": c, "config_change_overhead": 0.0,
                "requires_optical_elements": c not in ("BIAS", "DARK"), "force_acquisition_off": False,
                "schedulable": True} for c in codes}


def instrument(
    code: str, kind: str, telescope_class: str, *, optical: Mapping[str, tuple[Sequence[str], str]],
    modes: Mapping[str, tuple[str, Sequence[dict[str, Any]]]], configuration_types: Sequence[str],
    acceptability: float, pixel_scale: float, fov_arcmin: float,
) -> dict[str, Any]:
    """One ``/api/instruments/`` entry."""
    return {
        "type": kind, "class": telescope_class, "name": code,
        "optical_elements": {group: _elements(codes, default) for group, (codes, default) in optical.items()},
        "modes": {kind_: _modes(kind_, default, entries) for kind_, (default, entries) in modes.items()},
        "validation_schema": {},
        "default_acceptability_threshold": acceptability,
        "configuration_types": _config_types(configuration_types),
        "default_configuration_type": configuration_types[0],
        "camera_type": {"science_field_of_view": fov_arcmin, "autoguider_field_of_view": fov_arcmin,
                        "pixel_scale": pixel_scale, "pixels_x": 2048, "pixels_y": 2048, "orientation": 0.0},
    }


def lco_catalogue() -> Catalogue:
    """LCO as the emulator offers it: FLOYDS on the 2 m telescopes, a Sinistro imager on the 1 m ones."""
    floyds = instrument(
        "2M0-FLOYDS-SCICAM", "SPECTRA", "2m0",
        optical={"slits": (("slit_1.2as", "slit_1.6as", "slit_2.0as", "slit_6.0as"), "slit_2.0as")},
        modes={"readout": ("default", [_mode("default", 25.0)]),
               "acquisition": ("WCS", [_mode("WCS", 60.0), _mode("BRIGHTEST", 60.0)]),
               "guiding": ("ON", [_mode("ON", 0.0)]),
               "rotator": ("VFLOAT", [_mode("VFLOAT", 0.0), _mode("SKY", 0.0)])},
        configuration_types=("SPECTRUM", "REPEAT_SPECTRUM", "ARC", "LAMP_FLAT"),
        acceptability=100.0, pixel_scale=0.337, fov_arcmin=4.0,
    )
    sinistro = instrument(
        "1M0-SCICAM-SINISTRO", "IMAGE", "1m0",
        optical={"filters": (("U", "B", "V", "R", "I", "up", "gp", "rp", "ip", "zs"), "rp")},
        modes={"readout": ("full_frame", [_mode("full_frame", 28.0), _mode("central_2k_2x2", 12.0)]),
               "acquisition": ("OFF", [_mode("OFF", 0.0)]),
               "guiding": ("ON", [_mode("ON", 0.0), _mode("OFF", 0.0)])},
        configuration_types=("EXPOSE", "REPEAT_EXPOSE"),
        acceptability=90.0, pixel_scale=0.389, fov_arcmin=26.5,
    )
    return Catalogue(
        {"2M0-FLOYDS-SCICAM": floyds, "1M0-SCICAM-SINISTRO": sinistro},
        {"2M0-FLOYDS-SCICAM": Overheads(per_exposure=0.5, config_front_padding=16.0, request=300.0),
         "1M0-SCICAM-SINISTRO": Overheads(per_exposure=1.0, config_front_padding=16.0, request=94.5)},
        {"2m0": [SITES["ogg"], SITES["coj"]], "1m0": [SITES[s] for s in ("lsc", "cpt", "coj", "elp", "tfn")]},
    )


def soar_catalogue() -> Catalogue:
    """SOAR through the same portal: the Goodman spectrograph's red camera and its imager (AEON mode)."""
    goodman = instrument(
        "SOAR_GHTS_REDCAM", "SPECTRA", "4m0",
        optical={"slits": (("slit_0.45as", "slit_1.0as", "slit_1.5as"), "slit_1.0as"),
                 "gratings": (("SYZY_400", "RALC_1200-BLUE"), "SYZY_400")},
        modes={"readout": ("GHTS_R_400m1_2x2", [_mode("GHTS_R_400m1_2x2", 15.0), _mode("GHTS_R_400m2_2x2", 15.0)]),
               "acquisition": ("MANUAL", [_mode("MANUAL", 300.0)]),
               "guiding": ("ON", [_mode("ON", 0.0)]),
               "rotator": ("SKY", [_mode("SKY", 0.0)])},
        configuration_types=("SPECTRUM", "ARC", "LAMP_FLAT"),
        acceptability=100.0, pixel_scale=0.15, fov_arcmin=7.2,
    )
    imager = instrument(
        "SOAR_GHTS_REDCAM_IMAGER", "IMAGE", "4m0",
        optical={"filters": (("g-SDSS", "r-SDSS", "i-SDSS", "z-SDSS"), "r-SDSS")},
        modes={"readout": ("GHTS_R_Image_1x1", [_mode("GHTS_R_Image_1x1", 20.0), _mode("GHTS_R_Image_2x2", 10.0)]),
               "acquisition": ("OFF", [_mode("OFF", 0.0)]),
               "guiding": ("ON", [_mode("ON", 0.0)]),
               "rotator": ("SKY", [_mode("SKY", 0.0)])},
        configuration_types=("EXPOSE", "REPEAT_EXPOSE"),
        acceptability=90.0, pixel_scale=0.15, fov_arcmin=7.2,
    )
    return Catalogue(
        {"SOAR_GHTS_REDCAM": goodman, "SOAR_GHTS_REDCAM_IMAGER": imager},
        {"SOAR_GHTS_REDCAM": Overheads(per_exposure=1.0, config_front_padding=16.0, request=600.0),
         "SOAR_GHTS_REDCAM_IMAGER": Overheads(per_exposure=1.0, config_front_padding=16.0, request=120.0)},
        {"4m0": [SITES["sor"]]},
    )
