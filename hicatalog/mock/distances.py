"""Distances of the paper's cosmology over the mock's redshifts, tabulated for speed.

The volume is drawn in comoving distance and converted to redshift and back millions of
times, so :data:`hicatalog.cosmology.PAPER_COSMOLOGY` is tabulated once on
``0 <= z <= 1.2 Z_MAX`` (2001 points) and linearly interpolated: relative error below 1e-7
for ``Z_MIN < z < 1.2 Z_MAX``. Every function maps float64 arrays of shape ``(N,)`` (or
scalars) elementwise to float64 of the same shape; distances in Mpc. Used by the volume
(:mod:`hicatalog.mock.volume`) and the true overdensity; a galaxy's own ``d_l_mpc`` and
``d_a_mpc`` columns are exact astropy values (:mod:`hicatalog.mock.galaxies`).
"""

from __future__ import annotations

import numpy as np

from hicatalog.cosmology import PAPER_COSMOLOGY
from hicatalog.mock.parameters import Z_MAX

__all__ = [
    "angular_diameter_distance",
    "comoving_distance",
    "luminosity_distance",
    "redshift_of_distance",
]

_ZGRID = np.linspace(0.0, Z_MAX * 1.2, 2001)
_DC_GRID = PAPER_COSMOLOGY.comoving_distance(_ZGRID).value  # Mpc
_DL_GRID = PAPER_COSMOLOGY.luminosity_distance(_ZGRID).value  # Mpc


def comoving_distance(z: np.ndarray) -> np.ndarray:
    """Line-of-sight comoving distance (Mpc) at redshift ``z``."""
    return np.interp(z, _ZGRID, _DC_GRID)


def redshift_of_distance(dc: np.ndarray) -> np.ndarray:
    """Redshift at comoving distance ``dc`` (Mpc): the inverse of :func:`comoving_distance`."""
    return np.interp(dc, _DC_GRID, _ZGRID)


def luminosity_distance(z: np.ndarray) -> np.ndarray:
    """Luminosity distance (Mpc) at redshift ``z``."""
    return np.interp(z, _ZGRID, _DL_GRID)


def angular_diameter_distance(z: np.ndarray) -> np.ndarray:
    """Angular diameter distance (Mpc) at redshift ``z``: comoving / (1 + z) (flat LCDM)."""
    return comoving_distance(z) / (1 + z)
