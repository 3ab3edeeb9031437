"""The one coordinate rule (hicatalog.sky)."""

from __future__ import annotations

import numpy as np

from hicatalog.sky import valid_coordinates, wrap_ra


def test_any_finite_ra_is_valid_and_dec_is_bounded():
    ra = np.array([-0.5, 725.0, 10.0, np.inf, np.nan, 10.0, 10.0, 10.0])
    dec = np.array([0.0, 0.0, 90.0, 0.0, 0.0, 90.0001, -90.0, np.nan])
    assert valid_coordinates(ra, dec).tolist() == [True, True, True, False, False, False, True,
                                                   False]


def test_wrap_ra_stays_in_range():
    got = wrap_ra(np.array([-0.5, 725.0, 360.0, -1e-20, 0.0, np.nan]))
    np.testing.assert_array_equal(got[:5], [359.5, 5.0, 0.0, 0.0, 0.0])
    assert np.isnan(got[5]) and (got[:5] < 360.0).all()


def test_crossmatch_applies_the_same_rule_without_a_traceback():
    from hicatalog.surveys.crossmatch import has_neighbour, nearest_match

    # |dec| > 90 used to reach SkyCoord and raise; RA -0.5 is 359.5 and matches across 0.
    ra1, dec1 = np.array([-0.5, 10.0, np.nan]), np.array([1.0, 95.0, 0.0])
    ra2, dec2 = np.array([359.5, 10.0]), np.array([1.0 + 1.0 / 3600, 89.0])
    idx, sep = nearest_match(ra1, dec1, ra2, dec2, radius_arcsec=2.0)
    assert idx.tolist() == [0, -1, -1]
    np.testing.assert_allclose(sep[0], 1.0, rtol=1e-6)
    assert has_neighbour(ra1, dec1, ra2, dec2, 2.0).tolist() == [True, False, False]
