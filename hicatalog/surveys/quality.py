"""Missing values and extreme values in the published catalogs: one rule for each.

**Missing** (null): a value is missing when it is empty, NaN, infinite, or one of the
*sentinels* that the survey teams write for "no measurement" in that column
(:data:`SENTINELS`: -9999, -999, -99 and 99.99 in the columns where they cannot be a
measurement, and MPA-JHU's -1 for the stellar mass). Every reader of
:mod:`hicatalog.surveys.readers` turns every measured column into float64 through
:func:`null_missing`, so downstream "valid" means ``isfinite``. A sentinel is matched at
float32 precision (relative 1e-6), so a FITS ``float32`` -99.99 is matched too.

**Extreme** (kept, flagged): a finite value that is not a sentinel is a measurement, however
far it lies from the bulk of the samples: a genuine nearby dwarf (AGC 5470, log M_HI = 3.76)
is a real galaxy. Such values are kept and flagged in the ``quality`` bitmask of the
``labels`` table (and so of the cutout shards fetched from it, ``schemas/labels.json``,
``schemas/cutouts.json``): bit :data:`EXTREME_LOG_MHI`, :data:`EXTREME_LOG_MSTAR`,
:data:`EXTREME_M` when ``log_mhi``, ``log_mstar`` or ``m_true`` lies outside
:data:`TYPICAL_RANGES`. ``quality == 0``: nothing flagged. What a consumer does with flagged
rows (train on them or not) is its choice; the labels keep them.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "SENTINELS",
    "TYPICAL_RANGES",
    "EXTREME_LOG_MHI",
    "EXTREME_LOG_MSTAR",
    "EXTREME_M",
    "QUALITY_BITS",
    "null_missing",
    "quality_flags",
]

_NO_MEASUREMENT = (-9999.0, -999.0, -99.0)

#: Per canonical column: the values that mean "no measurement" there. A value is a sentinel
#: only where it cannot be a measurement: -99 is a sentinel for a log mass but a possible
#: heliocentric velocity (km/s); 99.99 is one for a log mass or a redshift but a possible RA.
SENTINELS: dict[str, tuple[float, ...]] = {
    # positions (deg): published RAs lie in [0, 360), so these negatives are never positions
    "ra": _NO_MEASUREMENT,
    "dec": _NO_MEASUREMENT,
    "ra_hi": _NO_MEASUREMENT,
    "dec_hi": _NO_MEASUREMENT,
    "ra_oc": _NO_MEASUREMENT,
    "dec_oc": _NO_MEASUREMENT,
    "z": (*_NO_MEASUREMENT, 99.99),            # NSA and MPA-JHU write -9999 for "no redshift"
    "vhelio": (-9999.0, -999.0),                # km/s; -99 km/s is a real (blueshifted) velocity
    "w50": _NO_MEASUREMENT,                     # km/s, > 0
    "hi_flux": _NO_MEASUREMENT,                 # Jy km/s, > 0
    "dist_mpc": _NO_MEASUREMENT,                # Mpc, > 0
    "log_mhi": (*_NO_MEASUREMENT, 99.99),       # log10 Msun
    "log_mstar": (*_NO_MEASUREMENT, 99.99, -1.0),  # MPA-JHU totlgm: -1 = no estimate
    "log_sfr": (*_NO_MEASUREMENT, 99.99),       # log10 Msun/yr (MPA-JHU -99, -9999)
    "oh": (*_NO_MEASUREMENT, 99.99),            # 12 + log O/H (MPA-JHU -99, -9999)
}

#: The ranges (inclusive) that hold nearly every galaxy of the paper's samples: Wu (2020)
#: Table 1 gives 16th-84th percentiles of log M_HI 8.5-10.1, log M* 8.5-11.0 and M -1.8 to
#: +0.75; these bounds lie 1.5-2.5 dex beyond them. A value outside is real but unusual
#: (a dwarf of 10^4 Msun of H I, a distance error, a blend): kept and flagged.
TYPICAL_RANGES: dict[str, tuple[float, float]] = {
    "log_mhi": (6.0, 11.0),    # log10 Msun
    "log_mstar": (7.0, 12.0),  # log10 Msun
    "m_true": (-3.0, 2.0),     # dex, log10(M_HI / M*)
}

#: Bits of the ``quality`` column (int32); 0 = nothing flagged.
EXTREME_LOG_MHI = 1
EXTREME_LOG_MSTAR = 2
EXTREME_M = 4
#: Column -> bit, in bit order.
QUALITY_BITS: dict[str, int] = {
    "log_mhi": EXTREME_LOG_MHI, "log_mstar": EXTREME_LOG_MSTAR, "m_true": EXTREME_M,
}


def null_missing(values: np.ndarray, column: str) -> np.ndarray:
    """float64 ``(N,)`` copy of a measured column with every missing value as NaN.

    ``values``: numeric array, or an object array of numbers / ``None``. ``column``: its
    canonical name, a key of :data:`SENTINELS` (a column without sentinels is an error, so no
    measured column escapes the rule). Missing: ``None``, NaN, +-inf, and the column's
    sentinels (relative tolerance 1e-6).
    """
    if column not in SENTINELS:
        raise KeyError(f"no sentinel rule for column {column!r}; add it to SENTINELS")
    a = np.asarray(values)
    if a.dtype == object:
        arr = np.array([np.nan if v is None else v for v in a.tolist()], dtype=np.float64)
    else:
        arr = a.astype(np.float64)
    missing = ~np.isfinite(arr)
    for s in SENTINELS[column]:
        with np.errstate(invalid="ignore"):
            missing |= np.abs(arr - s) <= 1e-6 * abs(s)
    arr[missing] = np.nan
    return arr


def quality_flags(**columns: np.ndarray) -> np.ndarray:
    """int32 ``(N,)`` bitmask: the bit of each named column (keys of :data:`QUALITY_BITS`:
    ``log_mhi``, ``log_mstar``, ``m_true``) is set where its finite value lies outside
    :data:`TYPICAL_RANGES`. NaN (missing) sets no bit."""
    n = len(next(iter(columns.values()))) if columns else 0
    flags = np.zeros(n, dtype=np.int32)
    for name, values in columns.items():
        lo, hi = TYPICAL_RANGES[name]
        v = np.asarray(values, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            out = np.isfinite(v) & ((v < lo) | (v > hi))
        flags[out] |= QUALITY_BITS[name]
    return flags
