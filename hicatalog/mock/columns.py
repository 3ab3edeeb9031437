"""The columns of the mock's galaxy tables: one documented home for every key.

A mock population (:class:`hicatalog.mock.samples.Population`) holds its galaxies as
:data:`Galaxies`, a dict of equal-length 1-D numpy arrays, one per column. Each stage adds its
columns in this order; the tables below list every key with its dtype, unit and meaning, and
``tests/test_mock_population.py`` checks that a generated population has exactly these keys and
dtypes. ``object`` columns hold Python ``str``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = [
    "Column",
    "Galaxies",
    "VOLUME_COLUMNS",
    "PROPERTY_COLUMNS",
    "OVERDENSITY_COLUMNS",
    "GAS_COLUMNS",
    "TRACER_COLUMNS",
    "IMAGED_COLUMNS",
    "COLUMNS",
]

#: A galaxy table: column name -> 1-D array, all of one length (see :data:`COLUMNS`).
Galaxies = dict[str, np.ndarray]


class Column(NamedTuple):
    """One column: ``name``, numpy ``dtype`` name, ``unit`` ("" if dimensionless), meaning."""

    name: str
    dtype: str
    unit: str
    description: str


#: Where a galaxy is (:func:`hicatalog.mock.volume.generate_volume`).
VOLUME_COLUMNS: tuple[Column, ...] = (
    Column("ra", "float64", "deg", "right ascension (ICRS), inside the footprint box"),
    Column("dec", "float64", "deg", "declination (ICRS)"),
    Column("z_cos", "float64", "", "cosmological redshift (from the comoving distance)"),
    Column("z", "float64", "", "observed redshift: z_cos with the line-of-sight peculiar velocity"),
    Column("group_id", "int64", "", "index of the galaxy's group or cluster; -1 in the field"),
    Column("group_richness", "int64", "",
           "members drawn for the group (log M* >= LOG_MSTAR_MIN, before any cut); 0 in the field"),
    Column("log_mstar", "float64", "log10 Msun", "stellar mass"),
)
#: What it looks like and how bright it is (:func:`hicatalog.mock.galaxies.add_stellar_properties`).
PROPERTY_COLUMNS: tuple[Column, ...] = (
    Column("quenched", "bool", "", "on the red sequence (mass and environment quenching)"),
    Column("sf_state", "float64", "", "latent star-formation state s (N(0,1) if star-forming)"),
    Column("gr_disc", "float64", "mag", "g-r colour of the smooth disc light"),
    Column("bt", "float64", "", "bulge-to-total r-band light ratio"),
    Column("arm_frac", "float64", "", "fraction of the disc's r-band light in the blue arms"),
    Column("knot_frac", "float64", "", "fraction of the disc's r-band light in star-forming knots"),
    Column("knots_mean", "float64", "", "mean number of resolved star-forming knots"),
    Column("re_disc_kpc", "float64", "kpc", "disc half-light radius (physical)"),
    Column("cos_incl", "float64", "", "cosine of the disc inclination (1: face-on)"),
    Column("axis_ratio", "float64", "", "projected axis ratio b/a of the disc"),
    Column("pa_deg", "float64", "deg", "position angle of the major axis"),
    Column("pitch_deg", "float64", "deg", "pitch angle of the spiral arms"),
    Column("g_r", "float64", "mag", "light-weighted g-r colour of the whole galaxy"),
    Column("d_l_mpc", "float64", "Mpc", "luminosity distance at z_cos"),
    Column("r_mag", "float64", "mag", "apparent r magnitude (AB)"),
    Column("d_a_mpc", "float64", "Mpc", "angular diameter distance at z_cos"),
)
#: The true environment (:func:`hicatalog.mock.volume.true_overdensity` on z_cos).
OVERDENSITY_COLUMNS: tuple[Column, ...] = (
    Column("one_plus_delta5_true", "float64", "",
           "true 1+delta5 among the tracers; NaN with fewer than 5 in the velocity window"),
    Column("d5_true_mpc", "float64", "Mpc", "true projected distance to the 5th neighbour"),
)
#: H I content and detection (:func:`hicatalog.mock.galaxies.add_gas_and_detection`).
GAS_COLUMNS: tuple[Column, ...] = (
    Column("m_mass", "float64", "dex", "part of M = log10(M_HI/M*) from the xGASS scaling"),
    Column("m_visible", "float64", "dex", "part of M that the image shows (A_VISIBLE s)"),
    Column("m_env", "float64", "dex", "stripping part of M (<= 0), not in the image"),
    Column("m_scatter", "float64", "dex", "irreducible part of M, N(0, sigma_int)"),
    Column("m_true", "float64", "dex", "M = m_mass + m_visible + m_env + m_scatter"),
    Column("log_mhi", "float64", "log10 Msun", "H I mass, m_true + log_mstar"),
    Column("w50", "float64", "km/s", "H I line width (Tully-Fisher, inclination, turbulence)"),
    Column("log_s21", "float64", "log10 Jy km/s", "integrated H I line flux"),
    Column("log_s21_lim", "float64", "log10 Jy km/s", "ALFALFA Code-1 limit at this w50"),
    Column("p_detect", "float64", "", "probability that the ALFALFA-like survey detects it"),
    Column("detected", "bool", "", "detected by the ALFALFA-like survey (a draw of p_detect)"),
)
#: Every galaxy above the optical limit: :attr:`Population.tracers`, in this key order.
TRACER_COLUMNS: tuple[Column, ...] = (
    VOLUME_COLUMNS + PROPERTY_COLUMNS + OVERDENSITY_COLUMNS + GAS_COLUMNS
    + (Column("object_id", "object", "", "unique id, 'mock-<tag>-<7-digit tracer index>'"),)
)
#: The imaged galaxies: :attr:`Population.imaged`, the tracer columns and two more.
IMAGED_COLUMNS: tuple[Column, ...] = TRACER_COLUMNS + (
    Column("population", "object", "", "imaged sample: 'alfalfa', 'nondetections' or 'xgass'"),
    Column("tracer_index", "int64", "", "row in the tracers; with the seed, the render seed"),
)
#: Every column by name.
COLUMNS: dict[str, Column] = {c.name: c for c in IMAGED_COLUMNS}
