"""Positional cross-matching on the sky, through astropy's ``SkyCoord`` (no hand-written
spherical trigonometry). Inputs are ICRS degrees as numpy arrays; positions that fail the
project's coordinate rule (:func:`hicatalog.sky.valid_coordinates`: NaN, infinite, |dec| > 90)
never match.
"""

from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord, search_around_sky

from hicatalog.sky import valid_coordinates, wrap_ra

__all__ = ["nearest_match", "has_neighbour", "sky_coords"]


def sky_coords(ra: np.ndarray, dec: np.ndarray) -> SkyCoord:
    """``SkyCoord`` of valid positions (deg); an invalid row is placed at (0, -90) deg, to be
    masked by the caller with :func:`hicatalog.sky.valid_coordinates`."""
    ok = valid_coordinates(ra, dec)
    return SkyCoord(np.where(ok, wrap_ra(ra), 0.0) * u.deg, np.where(ok, dec, -90.0) * u.deg)


def nearest_match(
    ra1: np.ndarray, dec1: np.ndarray, ra2: np.ndarray, dec2: np.ndarray, radius_arcsec: float
) -> tuple[np.ndarray, np.ndarray]:
    """For each position of catalog 1, the nearest position of catalog 2 within the radius.

    Returns
    -------
    ``(index, sep_arcsec)``: int64 ``(N1,)`` index into catalog 2 (-1: nothing within
    ``radius_arcsec`` or a NaN position) and float64 ``(N1,)`` separation in arcsec (NaN when
    unmatched).
    """
    ra1, dec1, ra2, dec2 = (np.asarray(a, dtype=float) for a in (ra1, dec1, ra2, dec2))
    n1 = len(ra1)
    index = np.full(n1, -1, dtype=np.int64)
    sep = np.full(n1, np.nan)
    ok1, ok2 = valid_coordinates(ra1, dec1), valid_coordinates(ra2, dec2)
    if not ok1.any() or not ok2.any():
        return index, sep
    idx2 = np.flatnonzero(ok2)
    c1 = sky_coords(ra1[ok1], dec1[ok1])
    c2 = sky_coords(ra2[ok2], dec2[ok2])
    if len(idx2) == 1:  # match_to_catalog_sky needs at least two catalog entries
        d = c1.separation(c2[0]).arcsec
        j = np.zeros(len(d), dtype=np.int64)
    else:
        j, d2d, _ = c1.match_to_catalog_sky(c2)
        d = d2d.arcsec
    within = d <= radius_arcsec
    rows = np.flatnonzero(ok1)
    index[rows[within]] = idx2[j[within]]
    sep[rows[within]] = d[within]
    return index, sep


def has_neighbour(
    ra: np.ndarray,
    dec: np.ndarray,
    ra_ref: np.ndarray,
    dec_ref: np.ndarray,
    radius_arcsec: float,
    exclude_same_index: bool = False,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Whether each position has at least one reference position within ``radius_arcsec``.

    Parameters
    ----------
    exclude_same_index: the two catalogs are the same; pair (i, i) is the galaxy itself.
    exclude: int64 ``(N,)`` reference index to ignore for each position (e.g. its own match;
        -1 ignores nothing).

    Returns
    -------
    bool ``(N,)``; invalid positions have no neighbours.
    """
    ra, dec, ra_ref, dec_ref = (np.asarray(a, dtype=float) for a in (ra, dec, ra_ref, dec_ref))
    out = np.zeros(len(ra), dtype=bool)
    ok, ok_ref = valid_coordinates(ra, dec), valid_coordinates(ra_ref, dec_ref)
    if not ok.any() or not ok_ref.any():
        return out
    rows, refs = np.flatnonzero(ok), np.flatnonzero(ok_ref)
    i, j, _, _ = search_around_sky(
        sky_coords(ra[ok], dec[ok]), sky_coords(ra_ref[ok_ref], dec_ref[ok_ref]),
        radius_arcsec * u.arcsec,
    )
    gi, gj = rows[i], refs[j]
    keep = np.ones(len(gi), dtype=bool)
    if exclude_same_index:
        keep &= gi != gj
    if exclude is not None:
        keep &= gj != np.asarray(exclude, dtype=np.int64)[gi]
    out[gi[keep]] = True
    return out
