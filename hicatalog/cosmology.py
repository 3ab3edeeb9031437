"""The cosmology and physical constants of the whole project, defined once (from astropy).

The paper (Wu 2020, Section 7.1) uses flat LCDM with H0 = 70 km/s/Mpc, Om = 0.3, OL = 0.7:
:data:`PAPER_COSMOLOGY`. The mock's distances, its true overdensity and the catalog's
environment all take it from here (the environment accepts another astropy cosmology).
"""

from __future__ import annotations

from astropy import constants as const
from astropy import units as u
from astropy.cosmology import FlatLambdaCDM

__all__ = ["PAPER_COSMOLOGY", "C_KMS", "paper_cosmology"]

#: Flat LCDM, H0 = 70 km/s/Mpc, Om0 = 0.3 (so OL = 0.7), as in Wu (2020) Section 7.1.
PAPER_COSMOLOGY = FlatLambdaCDM(H0=70.0, Om0=0.3, name="Wu2020")

#: Speed of light in km/s (astropy's CODATA value, 299792.458).
C_KMS: float = const.c.to_value(u.km / u.s)


def paper_cosmology(h0: float = 70.0, om0: float = 0.3) -> FlatLambdaCDM:
    """A flat LCDM cosmology; the defaults are :data:`PAPER_COSMOLOGY`'s (returned as is)."""
    if (h0, om0) == (70.0, 0.3):
        return PAPER_COSMOLOGY
    return FlatLambdaCDM(H0=h0, Om0=om0)
