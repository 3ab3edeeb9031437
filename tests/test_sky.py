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
