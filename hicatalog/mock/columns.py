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
    "MEASUREMENT_COLUMNS",
    "TRACER_COLUMNS",
    "IMAGED_COLUMNS",
    "OBSERVING_COLUMNS",
    "TRUTH_EFFECT_COLUMNS",
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
    Column("a_r_incl", "float64", "mag",
           "r-band attenuation of the disc light by its inclination (Masters et al. 2010); "
           "in the images and the selection only with the inclination effect"),
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
    Column("snr_hi", "float64", "", "ALFALFA S/N of the true flux (Haynes et al. 2011, Eq. 2)"),
    Column("log_s21_obs", "float64", "log10 Jy km/s",
           "measured flux (true + radiometer noise with label_noise; -inf if not positive); "
           "the detection is decided on it"),
    Column("p_detect", "float64", "", "probability that the ALFALFA-like survey detects it"),
    Column("detected", "bool", "", "detected by the ALFALFA-like survey (a draw of p_detect)"),
)
#: What a survey catalogues (:func:`hicatalog.mock.labels.add_measurements`); with the label
#: effects off these are the true values.
MEASUREMENT_COLUMNS: tuple[Column, ...] = (
    Column("log_mhi_err", "float64", "dex", "1-sigma error of the catalogued log M_HI (0: no noise)"),
    Column("log_mhi_obs", "float64", "log10 Msun",
           "catalogued H I mass: noise, and the outlier's confusion or wrong counterpart"),
    Column("log_mstar_obs", "float64", "log10 Msun", "catalogued stellar mass (0.1 dex error)"),
    Column("outlier_kind", "object", "", "'none', 'confused' or 'wrong_counterpart'"),
    Column("outlier_partner", "int64", "",
           "tracer index of the neighbour whose H I the outlier's label carries; -1 if none"),
    Column("m_obs", "float64", "dex", "measured M = log_mhi_obs - log_mstar_obs"),
)
#: Every galaxy above the optical limit: :attr:`Population.tracers`, in this key order.
TRACER_COLUMNS: tuple[Column, ...] = (
    VOLUME_COLUMNS + PROPERTY_COLUMNS + OVERDENSITY_COLUMNS + GAS_COLUMNS + MEASUREMENT_COLUMNS
    + (Column("object_id", "object", "", "unique id, 'mock-<tag>-<7-digit tracer index>'"),)
)
#: The imaged galaxies: :attr:`Population.imaged`, the tracer columns and four more.
IMAGED_COLUMNS: tuple[Column, ...] = TRACER_COLUMNS + (
    Column("population", "object", "",
           "imaged sample: 'alfalfa', 'nondetections', 'xgass' or 'survey' (magnitude-limited)"),
    Column("tracer_index", "int64", "", "row in the tracers; with the seed, the render seed"),
    Column("m_label", "float64", "dex",
           "the M the cutout carries (m_true column of the shards): m_obs, NaN where no survey "
           "measures it, the xGASS or (survey non-detections) ALFALFA limit for an upper limit "
           "(hicatalog.mock.labels)"),
    Column("label_is_limit", "bool", "",
           "m_label is an upper limit: xGASS's, or ALFALFA's for a survey non-detection"),
)
#: How each imaged galaxy is observed (:func:`hicatalog.mock.observing.observe`): one row per
#: cutout, for the renderer and the truth; the values a clean image uses when an effect is off.
OBSERVING_COLUMNS: tuple[Column, ...] = (
    Column("seeing_fwhm_arcsec", "float64", "arcsec", "r-band PSF FWHM of the cutout's field"),
    Column("sky_noise_factor", "float64", "",
           "per-pixel sky noise over the imaging's nominal (field sky brightness)"),
    Column("sky_noise_r_nmgy", "float64", "nmgy", "per-pixel sky noise in r (or its red band)"),
    Column("depth_r_mag", "float64", "mag", "5-sigma r point-source depth of the cutout"),
    Column("zp_red_mag", "float64", "mag",
           "zero-point error of the red band (i or z) in the cutout's field (0 without calibration)"),
    Column("zp_r_mag", "float64", "mag", "zero-point error of the r band"),
    Column("zp_g_mag", "float64", "mag", "zero-point error of the g band"),
    Column("ebv", "float64", "mag", "Galactic E(B-V) at the galaxy (0 without extinction)"),
    Column("n_companions", "int64", "", "tracers inside the cutout besides the galaxy"),
    Column("companion_sep_arcsec", "float64", "arcsec", "separation of the nearest; NaN if none"),
    Column("blend", "bool", "", "a companion overlaps the galaxy's light (BLEND_RE_SUM)"),
    Column("tidal", "bool", "", "a close pair (TIDAL_RP_KPC, TIDAL_DV_KMS): tidal tails drawn"),
)
#: Every column by name.
COLUMNS: dict[str, Column] = {c.name: c for c in IMAGED_COLUMNS + OBSERVING_COLUMNS}
#: The truth columns that record the effects (optional in ``schemas/truth.json``): written when
#: at least one effect is on, so that the clean mock's truth is the pre-effects one.
TRUTH_EFFECT_COLUMNS: tuple[str, ...] = (
    "m_obs", "log_mhi_obs", "log_mstar_obs", "log_mhi_err", "snr_hi", "outlier_kind",
    "outlier_partner_id", "m_label", "label_is_limit", "axis_ratio", "a_r_incl",
    "seeing_fwhm_arcsec", "sky_noise_r_nmgy", "depth_r_mag", "zp_red_mag", "zp_r_mag",
    "zp_g_mag", "ebv", "n_companions",
    "companion_sep_arcsec", "blend", "tidal", "imaging",
)
