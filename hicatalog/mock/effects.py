"""The real difficulties the mock can carry, each switchable on its own (issue 24).

A mock with every effect off is the *clean* mock: the correct-by-construction survey the
project had before, byte for byte (``tests/test_mock_clean.py``). With every effect on (the
default) its labels and images do what real ones do. Each effect, its published numbers and
how it shows in the truth table: ``docs/mock.md``; the numbers: :mod:`hicatalog.mock.parameters`.

========================  =====================================================================
``label_noise``           H I mass errors growing as the H I S/N falls, M* errors of 0.1 dex;
                          detection decided on the measured flux (Eddington bias)
``label_outliers``        a share of detections with a flux confused with a neighbour inside
                          the Arecibo beam or a wrong optical counterpart
``measured_labels``       the cutouts carry only what a survey measures: no M for ALFALFA
                          non-detections, xGASS upper limits below its gas-fraction limit
``seeing``                per-field PSF FWHM (and per band, Kolmogorov)
``sky_noise``             per-field sky noise (depth)
``calibration``           per-field, per-band photometric zero-point errors (colour shifts)
``extinction``            Galactic E(B-V) from a smooth map reddening and dimming the image
``inclination``           disc reddening and dimming with inclination (also in the r-band
                          selection of the tracers)
``neighbours``            companions where the tracers put them, blends, tidal features
========================  =====================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from hicatalog.errors import ConfigError

__all__ = ["EFFECTS", "Effects"]


@dataclass(frozen=True)
class Effects:
    """Which effects a mock carries (see the module table); all on by default."""

    label_noise: bool = True
    label_outliers: bool = True
    measured_labels: bool = True
    seeing: bool = True
    sky_noise: bool = True
    calibration: bool = True
    extinction: bool = True
    inclination: bool = True
    neighbours: bool = True

    @classmethod
    def chosen(cls, realism: str = "realistic", **switches: bool | None) -> Effects:
        """The effects of a mock of ``realism`` (``realistic``: every effect on, ``clean``:
        every effect off), with each effect named in ``switches`` set to its value unless it
        is None (``Effects.chosen("clean", seeing=True)``: seeing alone)."""
        if realism not in ("realistic", "clean"):
            raise ConfigError(f"realism must be 'realistic' or 'clean', got {realism!r}",
                              params=("realism",))
        unknown = sorted(set(switches) - set(EFFECTS))
        if unknown:
            raise ConfigError(f"unknown effects {unknown}; expected some of {list(EFFECTS)}")
        default = realism == "realistic"
        return cls(**{k: default if switches.get(k) is None else bool(switches[k])
                      for k in EFFECTS})

    @classmethod
    def none(cls) -> Effects:
        """The clean mock: every effect off."""
        return cls(**{f.name: False for f in fields(cls)})

    @property
    def any(self) -> bool:
        """True when at least one effect is on (the mock is not the clean one)."""
        return any(self.as_dict().values())

    @property
    def image(self) -> bool:
        """True when an effect changes how images are rendered."""
        return (self.seeing or self.sky_noise or self.calibration or self.extinction
                or self.inclination or self.neighbours)

    def as_dict(self) -> dict[str, bool]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


#: The effect names, in the table's order (the MockConfig fields of the same names).
EFFECTS: tuple[str, ...] = tuple(f.name for f in fields(Effects))
