"""What a survey *measures* of a mock galaxy: its H I signal-to-noise, the catalogued H I and
stellar masses with their errors, the outliers, and the label a cutout carries.

The truth (:mod:`hicatalog.mock.galaxies`) knows M exactly; real labels do not:

- the H I S/N and the measured flux (:func:`hicatalog.mock.galaxies.hi_snr`,
  :func:`~hicatalog.mock.galaxies.measured_flux`: the true flux plus the radiometer noise,
  additive, so that the detection decided on it is Eddington-biased near the limit like a real
  flux-limited catalog's) come with the detection;
- :func:`add_measurements`: the catalogued log M_HI (the flux error plus the rest of the
  catalogued error, ``sqrt(HI_ERR_FLOOR^2 + (HI_ERR_K / S/N)^2)`` in all), log M* with its
  0.1 dex error, and the outliers: a share of the detections whose flux is confused with a
  neighbour inside the Arecibo beam or whose optical counterpart is the wrong galaxy;
- :func:`add_cutout_labels`: the label of each imaged galaxy as a survey gives it: none for an
  ALFALFA non-detection of the balanced samples, an upper limit for an xGASS-like galaxy below
  xGASS's gas-fraction limit (Catinella et al. 2018), an ALFALFA upper limit
  (:func:`alfalfa_log_mhi_limit`) for a non-detection of the magnitude-limited survey, else
  the measured M.

Every switch is an :class:`~hicatalog.mock.effects.Effects` field; with an effect off its
columns hold the true values (and ``log_mhi_err`` 0, ``outlier_kind`` ``"none"``). Columns:
:data:`hicatalog.mock.columns.MEASUREMENT_COLUMNS` and ``CUTOUT_LABEL_COLUMNS``. Masses in
log10 Msun, fluxes in Jy km/s, widths in km/s.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree
from scipy.special import ndtri

from hicatalog.cosmology import C_KMS
from hicatalog.mock.columns import Galaxies
from hicatalog.mock.effects import Effects
from hicatalog.mock.galaxies import alfalfa_flux_limit, cos_inclination, line_width
from hicatalog.mock.parameters import (
    ARECIBO_BEAM_FWHM_ARCMIN,
    DETECTION_WIDTH_DEX,
    HI_ERR_FLOOR,
    HI_ERR_K,
    HI_MASS_CONSTANT,
    MSTAR_ERR_DEX,
    SURVEY_LIMIT_P_DETECT,
    XGASS_GF_LIMIT_HIGH,
    XGASS_GF_LIMIT_LOW,
    XGASS_LOG_MHI_LIMIT_MID,
    XGASS_MIN_SNR,
)
from hicatalog.neighbours import unit_vectors

__all__ = [
    "OUTLIER_KINDS",
    "add_cutout_labels",
    "add_measurements",
    "alfalfa_log_mhi_limit",
    "hi_mass_error",
    "xgass_log_mhi_limit",
]

#: Values of ``outlier_kind``.
OUTLIER_KINDS = ("none", "confused", "wrong_counterpart")
_LOG10E = 1.0 / math.log(10.0)


def hi_mass_error(snr: np.ndarray) -> np.ndarray:
    """1-sigma error (dex) of a catalogued log M_HI at signal-to-noise ``snr``:
    ``sqrt(HI_ERR_FLOOR^2 + (HI_ERR_K / snr)^2)``."""
    return np.sqrt(HI_ERR_FLOOR**2 + (HI_ERR_K / snr) ** 2)


def xgass_log_mhi_limit(log_mstar: np.ndarray) -> np.ndarray:
    """log10 of the H I mass below which xGASS gives an upper limit (Catinella et al. 2018):
    a gas fraction of XGASS_GF_LIMIT_LOW below log M* = 10, else the larger of log M_HI =
    XGASS_LOG_MHI_LIMIT_MID and a gas fraction of XGASS_GF_LIMIT_HIGH."""
    high = np.maximum(XGASS_LOG_MHI_LIMIT_MID, log_mstar + math.log10(XGASS_GF_LIMIT_HIGH))
    return np.where(log_mstar < 10.0, log_mstar + math.log10(XGASS_GF_LIMIT_LOW), high)


def alfalfa_log_mhi_limit(log_mstar: np.ndarray, axis_ratio: np.ndarray,
                          d_l_mpc: np.ndarray) -> np.ndarray:
    """log10 of the ALFALFA upper limit on the H I mass (Msun) of an undetected galaxy, from
    what an observer has: its catalogued ``log_mstar`` (log10 Msun), projected ``axis_ratio``
    b/a and luminosity distance ``d_l_mpc`` (Mpc)::

        log M_HI,lim = log10(HI_MASS_CONSTANT) + 2 log10(d_L) + log10 S21,lim(W50)

    W50 is :func:`~hicatalog.mock.galaxies.line_width` of the stellar-mass Tully-Fisher
    relation at the inclination the axis ratio gives
    (:func:`~hicatalog.mock.galaxies.cos_inclination`); S21,lim is the Code-1 limit of
    Haynes et al. (2011) Eq. 4 (:func:`~hicatalog.mock.galaxies.alfalfa_flux_limit`, the 50%
    point) raised to where the mock's detection probability reaches SURVEY_LIMIT_P_DETECT
    (``+ ndtri(0.95) DETECTION_WIDTH_DEX`` = +0.082 dex). Float64 of the broadcast shape;
    NaN where an input is missing (not finite) or the distance is not positive: no limit
    can be computed there.
    """
    log_mstar, axis_ratio, d_l = np.broadcast_arrays(
        *(np.asarray(a, dtype=np.float64) for a in (log_mstar, axis_ratio, d_l_mpc)))
    ok = np.isfinite(log_mstar) & np.isfinite(axis_ratio) & np.isfinite(d_l) & (d_l > 0)
    w50 = line_width(np.where(ok, log_mstar, 10.0), cos_inclination(np.where(ok, axis_ratio, 1.0)))
    log_s21_lim = alfalfa_flux_limit(w50) + ndtri(SURVEY_LIMIT_P_DETECT) * DETECTION_WIDTH_DEX
    lim = math.log10(HI_MASS_CONSTANT) + 2 * np.log10(np.where(ok, d_l, 1.0)) + log_s21_lim
    return np.where(ok, lim, np.nan)


def _beam_neighbours(v: Galaxies, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(i, j)`` (int64 tracer indices, ``i`` in ``rows``, ``j != i``) whose separation
    is below one Arecibo beam FWHM."""
    xyz = unit_vectors(v["ra"], v["dec"])
    chord = 2.0 * math.sin(math.radians(ARECIBO_BEAM_FWHM_ARCMIN / 60.0) / 2.0)
    lists = cKDTree(xyz).query_ball_point(xyz[rows], chord)
    n = np.fromiter((len(x) for x in lists), np.int64, count=len(rows))
    i = np.repeat(rows, n)
    j = np.fromiter((k for x in lists for k in x), np.int64, count=int(n.sum()))
    keep = i != j
    return i[keep], j[keep]


def _separation_arcmin(v: Galaxies, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    a, b = unit_vectors(v["ra"][i], v["dec"][i]), unit_vectors(v["ra"][j], v["dec"][j])
    return np.degrees(2 * np.arcsin(np.clip(np.linalg.norm(a - b, axis=1) / 2, 0, 1))) * 60


def _add_outliers(v: Galaxies, det: np.ndarray, u_out: np.ndarray, outlier_fraction: float,
                  kind: np.ndarray, partner: np.ndarray) -> None:
    """Give ``outlier_fraction`` of the detections ``det`` (indices into ``v``, chosen where
    ``u_out`` (uniform draws, one per galaxy) is small) a confused flux or a wrong
    counterpart from their neighbours in the Arecibo beam: ``v["log_mhi_obs"]``, ``kind`` and
    ``partner`` (one per galaxy) are set in place."""
    n = len(kind)
    i, j = _beam_neighbours(v, det)
    sep = _separation_arcmin(v, i, j)
    dv = C_KMS * np.abs(v["z"][i] - v["z"][j]) / (1 + v["z"][i])
    overlap = dv < 0.5 * (v["w50"][i] + v["w50"][j])
    detected_j = v["detected"][j]
    can_confuse = np.zeros(n, bool)
    can_confuse[i[overlap]] = True
    can_swap = np.zeros(n, bool)
    can_swap[i[detected_j]] = True
    eligible = det[can_confuse[det] | can_swap[det]]
    p = min(1.0, outlier_fraction * det.size / max(eligible.size, 1))
    chosen = eligible[u_out[eligible] < p]
    is_chosen = np.zeros(n, bool)
    is_chosen[chosen] = True
    # confused: the beam-weighted flux of every overlapping neighbour, at this distance
    gain = np.exp(-4 * math.log(2) * (sep / ARECIBO_BEAM_FWHM_ARCMIN) ** 2)
    c = is_chosen[i] & overlap
    extra_flux = gain[c] * 10.0 ** v["log_s21"][j[c]]
    extra_mass = np.zeros(n)
    np.add.at(extra_mass, i[c], extra_flux * HI_MASS_CONSTANT * v["d_l_mpc"][i[c]] ** 2)
    best = np.full(n, -1.0)
    for a, b, f in zip(i[c], j[c], extra_flux, strict=True):
        if f > best[a]:
            best[a], partner[a] = f, b
    conf = is_chosen & can_confuse
    kind[conf] = "confused"
    v["log_mhi_obs"][conf] = np.log10(10.0 ** v["log_mhi_obs"][conf] + extra_mass[conf])
    # wrong counterpart: the nearest detected neighbour's H I, measured like this one's
    swap = is_chosen & ~can_confuse
    w = swap[i] & detected_j
    order = np.lexsort((sep[w], i[w]))
    first = np.r_[True, np.diff(i[w][order]) != 0] if order.size else np.zeros(0, bool)
    src, dst = i[w][order][first], j[w][order][first]
    kind[src] = "wrong_counterpart"
    partner[src] = dst
    v["log_mhi_obs"][src] = v["log_mhi"][dst] + (v["log_mhi_obs"][src] - v["log_mhi"][src])


def add_measurements(v: Galaxies, rng: np.random.Generator, effects: Effects,
                     outlier_fraction: float) -> None:
    """Add the catalogued masses and the outliers to the tracers ``v`` in place
    (:data:`~hicatalog.mock.columns.MEASUREMENT_COLUMNS` but ``snr_hi`` and ``log_s21_obs``,
    which :func:`hicatalog.mock.galaxies.add_gas_and_detection` adds).

    With ``effects.label_noise``: log M_HI is off by the flux error (``log_s21_obs -
    log_s21``) plus a Gaussian rest so that its error is :func:`hi_mass_error` of the S/N
    (where S/N < XGASS_MIN_SNR the flux is not measurable by ALFALFA: a deeper observation at
    that S/N gives the value); log M* is off by N(0, MSTAR_ERR_DEX). With
    ``effects.label_outliers``: among the detections that have a neighbour inside the beam,
    a share is chosen so that ``outlier_fraction`` of all detections are outliers (all of the
    eligible ones if fewer): ``confused`` when a neighbour's line overlaps in velocity (the
    measured flux adds the beam-weighted flux of every such neighbour, as the catalogued
    value would), else ``wrong_counterpart`` (the H I of the nearest *detected* neighbour in
    the beam is given to this galaxy). ``rng`` is the realism stream: three normal draws and
    one uniform draw per tracer, in that order, whatever is switched on.
    """
    n = len(v["ra"])
    z_rest = rng.standard_normal(n)
    z_mstar = rng.standard_normal(n)
    z_deep = rng.standard_normal(n)
    u_out = rng.random(n)
    snr = v["snr_hi"]
    if effects.label_noise:
        err = hi_mass_error(np.maximum(snr, XGASS_MIN_SNR))
        flux_part = v["log_s21_obs"] - v["log_s21"]
        rest = np.sqrt(np.maximum(err**2 - (_LOG10E / np.maximum(snr, XGASS_MIN_SNR)) ** 2, 0.0))
        measurable = (snr >= XGASS_MIN_SNR) & np.isfinite(flux_part)
        delta = np.where(measurable, flux_part + rest * z_rest, err * z_deep)
        v["log_mhi_err"] = err
        v["log_mhi_obs"] = v["log_mhi"] + delta
        v["log_mstar_obs"] = v["log_mstar"] + MSTAR_ERR_DEX * z_mstar
    else:
        v["log_mhi_err"] = np.zeros(n)
        v["log_mhi_obs"] = v["log_mhi"].copy()
        v["log_mstar_obs"] = v["log_mstar"].copy()
    kind = np.full(n, "none", dtype=object)
    partner = np.full(n, -1, dtype=np.int64)
    det = np.flatnonzero(v["detected"])
    if effects.label_outliers and outlier_fraction > 0 and det.size:
        _add_outliers(v, det, u_out, outlier_fraction, kind, partner)
    v["outlier_kind"] = kind
    v["outlier_partner"] = partner
    if effects.label_noise or effects.label_outliers:
        v["m_obs"] = v["log_mhi_obs"] - v["log_mstar_obs"]
    else:
        v["m_obs"] = v["m_true"].copy()


def add_cutout_labels(im: Galaxies, effects: Effects) -> None:
    """Add ``m_label`` and ``label_is_limit`` to the imaged galaxies ``im`` in place: the M a
    cutout carries. With ``effects.measured_labels``: detections their measured ``m_obs``;
    non-detections of the balanced samples NaN (no H I measurement exists); xGASS-like
    galaxies the measured value above xGASS's limit (:func:`xgass_log_mhi_limit` of the
    measured M*), else the limit minus log M* as an upper limit; non-detections of the
    magnitude-limited survey (``population == "survey"``) the ALFALFA upper limit
    (:func:`alfalfa_log_mhi_limit` of the catalogued M*, the axis ratio and d_L) minus the
    catalogued log M*, as an upper limit, or NaN and no limit where it cannot be computed;
    the same survey observed as deep as xGASS (``population == "survey_deep"``: a
    representative sample with gas-fraction-limited H I data, what a calibration needs) the
    measured value where ALFALFA detects the galaxy or its H I lies above xGASS's limit, else
    that limit minus log M* as an upper limit. Without it, ``m_obs`` for every row."""
    n = len(im["ra"])
    label = im["m_obs"].copy()
    limit = np.zeros(n, bool)
    if effects.measured_labels:
        xg = np.isin(im["population"], ("xgass", "survey_deep"))
        lim = xgass_log_mhi_limit(im["log_mstar_obs"])
        below = xg & ~im["detected"] & (im["log_mhi_obs"] < lim)
        label[below] = (lim - im["log_mstar_obs"])[below]
        limit[below] = True
        survey = im["population"] == "survey"
        label[(im["population"] == "nondetections") | (~im["detected"] & ~xg & ~survey)] = np.nan
        u = survey & ~im["detected"]
        if u.any():
            lms = im["log_mstar_obs"][u]
            m_lim = alfalfa_log_mhi_limit(lms, im["axis_ratio"][u], im["d_l_mpc"][u]) - lms
            label[u] = m_lim
            limit[u] = np.isfinite(m_lim)
    im["m_label"] = label
    im["label_is_limit"] = limit
