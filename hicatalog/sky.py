"""Positions on the sky: the one rule for what counts as a usable (ra, dec).

Every stage that takes positions (the cutout fetch, the environment, the catalog's declination
zones, the survey readers) asks :func:`valid_coordinates`, so a galaxy is either usable
everywhere or flagged ``bad_coordinates`` everywhere, never fetched and then rejected later.

The rule: RA is an angle on a circle, so any finite RA is valid and means ``ra mod 360``
(``ra = -0.5`` is 359.5 deg); Dec must be finite and within [-90, 90] deg.
"""

from __future__ import annotations

import numpy as np

__all__ = ["valid_coordinates", "wrap_ra"]


def valid_coordinates(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    """Bool mask ``(N,)``: finite RA (any value, it wraps) and finite Dec in [-90, 90] deg.

    ``ra_deg``, ``dec_deg``: array-likes of shape ``(N,)`` in degrees (NaN for missing).
    """
    ra = np.asarray(ra_deg, dtype=np.float64)
    dec = np.asarray(dec_deg, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90.0)


def wrap_ra(ra_deg: np.ndarray) -> np.ndarray:
    """RA in [0, 360) deg (float64, same shape); NaN stays NaN."""
    ra = np.mod(np.asarray(ra_deg, dtype=np.float64), 360.0)
    # A tiny negative RA rounds to exactly 360.0 in np.mod: that is 0.
    return np.where(ra == 360.0, 0.0, ra)
