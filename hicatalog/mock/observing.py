"""How each imaged galaxy is observed: the seeing and sky of its field, the Galactic
extinction in front of it, and the neighbours that fall inside its cutout.

:func:`observe` gives every imaged galaxy of a population the
:data:`~hicatalog.mock.columns.OBSERVING_COLUMNS` and the list of its companions (the tracers
inside the cutout, with their offsets and render parameters) for the renderer. Everything here
is a function of the seed and the sky position, so a galaxy's conditions do not depend on the
batch or worker that renders it, and neighbours share their field's seeing and sky:

- seeing, sky and zero points: one value per field of FIELD_DEG x FIELD_DEG (a cell in Dec,
  and in RA cos Dec), drawn from a counter-based hash of (seed, imaging, cell)
  (:func:`field_conditions`);
- extinction: a smooth E(B-V) map over the sky, csc|b| times a lognormal cirrus field
  (:func:`ebv_map`);
- companions: every tracer within the cutout's half-diagonal, their offsets in pixels (north
  up, east left), blends and close pairs (tidal features) (:func:`find_companions`).

With an effect off its columns hold what the clean image uses: the survey's nominal PSF, a
sky factor of 1, E(B-V) 0, no companions.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
from scipy.spatial import cKDTree
from scipy.special import ndtri

from hicatalog.cosmology import C_KMS
from hicatalog.mock.columns import Galaxies
from hicatalog.mock.effects import Effects
from hicatalog.mock.instruments import SurveySpec
from hicatalog.mock.parameters import (
    BLEND_RE_SUM,
    EBV_CIRRUS_SIGMA_LN,
    EBV_CSC_B,
    EBV_MODES,
    EBV_SCALE_DEG,
    FIELD_DEG,
    SEEING_RANGE,
    SEEING_SIGMA_LN,
    SKY_SIGMA_MAG,
    TIDAL_DV_KMS,
    TIDAL_RP_KPC,
)
from hicatalog.neighbours import unit_vectors

__all__ = [
    "COMPANION_FIELDS", "ebv_map", "field_conditions", "field_zero_points", "find_companions",
    "observe",
]

#: Fields of one companion (the ``companions`` list column the renderer reads): its tracer
#: index (its render seed), its offset from the cutout's centre (px, +x west... east left,
#: +y south: rows grow downwards) and its render parameters.
COMPANION_FIELDS = (
    "tracer_index", "dx_px", "dy_px", "r_mag", "d_a_mpc", "re_disc_kpc", "bt", "axis_ratio",
    "cos_incl", "pa_deg", "pitch_deg", "gr_disc", "arm_frac", "knot_frac", "knots_mean",
    "a_r_incl",
)
_U64 = np.uint64


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser (Steele et al. 2014) on uint64 arrays (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = (x + _U64(0x9E3779B97F4A7C15)) & _U64(0xFFFFFFFFFFFFFFFF)
        x = ((x ^ (x >> _U64(30))) * _U64(0xBF58476D1CE4E5B9))
        x = ((x ^ (x >> _U64(27))) * _U64(0x94D049BB133111EB))
        return x ^ (x >> _U64(31))


def _hash_uniform(*keys: np.ndarray | int) -> np.ndarray:
    """Uniform (0, 1) numbers, one per element of the broadcast integer ``keys``, a pure
    function of the keys."""
    h = np.zeros(np.broadcast(*[np.asarray(k) for k in keys]).shape, dtype=_U64)
    for k in keys:
        h = _splitmix64(h ^ np.asarray(k).astype(np.int64).astype(_U64))
    return ((h >> _U64(11)).astype(np.float64) + 0.5) / float(1 << 53)


def _imaging_key(spec: SurveySpec) -> int:
    """A stable integer for the imaging (its label), so that two imagings of the same sky have
    different fields."""
    return int.from_bytes(spec.label.encode()[:8].ljust(8, b"\0"), "little") & 0x7FFFFFFFFFFFFFFF


def _field_cells(ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The field (cell) indices of sky positions: FIELD_DEG in Dec, FIELD_DEG in RA cos Dec."""
    i = np.floor(dec / FIELD_DEG).astype(np.int64)
    cos_c = np.cos(np.radians((i + 0.5) * FIELD_DEG))
    return i, np.floor(ra * cos_c / FIELD_DEG).astype(np.int64)


def field_conditions(ra: np.ndarray, dec: np.ndarray, spec: SurveySpec, seed: int,
                     seeing: bool, sky_noise: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(seeing_fwhm_arcsec, sky_noise_factor)`` float64 (N,) of the fields at (``ra``,
    ``dec``) (deg): the r-band FWHM is lognormal around ``spec.seeing_median`` with
    SEEING_SIGMA_LN, clipped to SEEING_RANGE; the sky brightness offset d_mu ~ N(0,
    SKY_SIGMA_MAG) (clipped at 3 sigma) scales the per-pixel noise by 10^(-0.2 d_mu). With
    ``seeing`` / ``sky_noise`` off: ``spec.psf_fwhm`` / 1."""
    i, j = _field_cells(ra, dec)
    key = _imaging_key(spec)
    if seeing:
        g = ndtri(_hash_uniform(seed, key, 1, i, j))
        fwhm = np.clip(spec.seeing_median * np.exp(SEEING_SIGMA_LN * g), *SEEING_RANGE)
    else:
        fwhm = np.full(len(ra), spec.psf_fwhm)
    if sky_noise:
        d_mu = SKY_SIGMA_MAG * np.clip(ndtri(_hash_uniform(seed, key, 2, i, j)), -3, 3)
        factor = 10 ** (-0.2 * d_mu)
    else:
        factor = np.ones(len(ra))
    return fwhm, factor


def field_zero_points(ra: np.ndarray, dec: np.ndarray, spec: SurveySpec, seed: int
                      ) -> np.ndarray:
    """Zero-point errors (mag) of the three bands (R, G, B order), float64 (3, N): per field,
    N(0, ``spec.zp_sigma``) for each band independently. A band's flux is multiplied by
    10^(-0.4 zp)."""
    i, j = _field_cells(ra, dec)
    key = _imaging_key(spec)
    return np.stack([spec.zp_sigma * ndtri(_hash_uniform(seed, key, 3 + b, i, j))
                     for b in range(3)])


def ebv_map(ra: np.ndarray, dec: np.ndarray, seed: int) -> np.ndarray:
    """Galactic E(B-V) (mag, float64 (N,)) at (``ra``, ``dec``) (deg): EBV_CSC_B / sin|b|
    (|b| floored at 10 deg) times exp(EBV_CIRRUS_SIGMA_LN g - sigma^2/2), g a unit-variance
    field, the sum of EBV_MODES plane waves with random directions, phases and wavelengths
    in EBV_SCALE_DEG (from ``seed``): smooth over the footprint, the same for every imaging."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    b = SkyCoord(ra=np.asarray(ra) * u.deg, dec=np.asarray(dec) * u.deg).galactic.b.radian
    rng = np.random.default_rng([seed, 0xEB5])
    k = rng.standard_normal((EBV_MODES, 3))
    k /= np.linalg.norm(k, axis=1, keepdims=True)
    lo, hi = EBV_SCALE_DEG
    wavenumber = 2 * np.pi / np.radians(np.exp(rng.uniform(np.log(lo), np.log(hi), EBV_MODES)))
    phase = rng.uniform(0, 2 * np.pi, EBV_MODES)
    xyz = unit_vectors(np.asarray(ra, float), np.asarray(dec, float))
    g = np.cos((xyz @ k.T) * wavenumber + phase).sum(axis=1) / math.sqrt(EBV_MODES / 2)
    s = EBV_CIRRUS_SIGMA_LN
    return EBV_CSC_B / np.sin(np.maximum(np.abs(b), np.radians(10.0))) * np.exp(s * g - s * s / 2)


def find_companions(im: Galaxies, t: Galaxies, spec: SurveySpec, size: int
                    ) -> tuple[dict[str, np.ndarray], pa.Array]:
    """The tracers ``t`` inside each imaged galaxy's cutout (``size`` px of ``spec``).

    Returns ``(columns, companions)``: ``columns`` = ``n_companions`` (int64),
    ``companion_sep_arcsec`` (nearest, NaN if none), ``blend`` and ``tidal`` (bool), one per
    imaged row; ``companions``: a list<struct> Arrow array, one list per imaged row, of
    :data:`COMPANION_FIELDS` (those within half a cutout plus a margin of the frame; the light
    of a companion just outside still reaches in).
    """
    n = len(im["ra"])
    half_diag = size * spec.pixel_scale / math.sqrt(2.0) + 20.0  # arcsec
    xyz_t = unit_vectors(t["ra"], t["dec"])
    xyz_i = unit_vectors(im["ra"], im["dec"])
    chord = 2 * math.sin(math.radians(half_diag / 3600) / 2)
    lists = cKDTree(xyz_t).query_ball_point(xyz_i, chord)
    counts = np.fromiter((len(x) for x in lists), np.int64, count=n)
    host = np.repeat(np.arange(n), counts)
    comp = np.fromiter((k for x in lists for k in x), np.int64, count=int(counts.sum()))
    not_self = comp != im["tracer_index"][host]
    host, comp = host[not_self], comp[not_self]
    # tangent-plane offsets (arcsec): x towards the west (east is left), y towards the south
    ra0, dec0 = np.radians(im["ra"][host]), np.radians(im["dec"][host])
    ra1, dec1 = np.radians(t["ra"][comp]), np.radians(t["dec"][comp])
    cosc = np.sin(dec0) * np.sin(dec1) + np.cos(dec0) * np.cos(dec1) * np.cos(ra1 - ra0)
    xi = np.cos(dec1) * np.sin(ra1 - ra0) / cosc
    eta = (np.cos(dec0) * np.sin(dec1) - np.sin(dec0) * np.cos(dec1) * np.cos(ra1 - ra0)) / cosc
    dx, dy = -np.degrees(xi) * 3600, -np.degrees(eta) * 3600
    sep = np.hypot(dx, dy)
    in_frame = (np.abs(dx) < size * spec.pixel_scale / 2) & (np.abs(dy) < size * spec.pixel_scale / 2)
    arcsec_per_kpc = 1.0 / (im["d_a_mpc"][host] * 1e3 * math.radians(1 / 3600))
    re_p = im["re_disc_kpc"][host] * arcsec_per_kpc
    re_c = t["re_disc_kpc"][comp] / (t["d_a_mpc"][comp] * 1e3 * math.radians(1 / 3600))
    dv = C_KMS * np.abs(t["z"][comp] - im["z"][host]) / (1 + im["z"][host])
    close = (sep / arcsec_per_kpc < TIDAL_RP_KPC) & (dv < TIDAL_DV_KMS)
    blend = sep < BLEND_RE_SUM * (re_p + re_c)

    n_comp = np.bincount(host[in_frame], minlength=n).astype(np.int64)
    nearest = np.full(n, np.inf)
    np.minimum.at(nearest, host[in_frame], sep[in_frame])
    nearest[~np.isfinite(nearest)] = np.nan
    is_blend = np.bincount(host[blend], minlength=n) > 0
    is_tidal = np.bincount(host[close], minlength=n) > 0
    cols = {"n_companions": n_comp, "companion_sep_arcsec": nearest, "blend": is_blend,
            "tidal": is_tidal}
    values = {"tracer_index": comp, "dx_px": dx / spec.pixel_scale, "dy_px": dy / spec.pixel_scale}
    for f in COMPANION_FIELDS[3:]:
        values[f] = t[f][comp]
    order = np.argsort(host, kind="stable")
    struct = pa.StructArray.from_arrays([pa.array(values[f][order]) for f in COMPANION_FIELDS],
                                        names=list(COMPANION_FIELDS))
    offsets = np.concatenate([[0], np.cumsum(np.bincount(host, minlength=n))]).astype(np.int32)
    return cols, pa.ListArray.from_arrays(pa.array(offsets), struct)


def observe(im: Galaxies, t: Galaxies, spec: SurveySpec, size: int, seed: int,
            effects: Effects) -> tuple[Galaxies, pa.Array]:
    """The :data:`~hicatalog.mock.columns.OBSERVING_COLUMNS` of the imaged galaxies ``im``
    (tracers ``t``) in imaging ``spec`` at ``size`` px, and their companions (an empty list
    each without ``effects.neighbours``). See the module docstring."""
    n = len(im["ra"])
    fwhm, factor = field_conditions(im["ra"], im["dec"], spec, seed, effects.seeing,
                                    effects.sky_noise)
    red_noise = spec.noise_nmgy[1] * factor  # the r band is the middle (G) channel
    sig_px = fwhm / 2.3548 / spec.pixel_scale
    depth = 22.5 - 2.5 * np.log10(5 * red_noise * np.sqrt(4 * np.pi * sig_px**2))
    zp = (field_zero_points(im["ra"], im["dec"], spec, seed) if effects.calibration
          else np.zeros((3, n)))
    out: Galaxies = {
        "seeing_fwhm_arcsec": fwhm, "sky_noise_factor": factor, "sky_noise_r_nmgy": red_noise,
        "depth_r_mag": depth, "zp_red_mag": zp[0], "zp_r_mag": zp[1], "zp_g_mag": zp[2],
        "ebv": ebv_map(im["ra"], im["dec"], seed) if effects.extinction else np.zeros(n),
    }
    if effects.neighbours:
        cols, companions = find_companions(im, t, spec, size)
    else:
        cols = {"n_companions": np.zeros(n, np.int64), "companion_sep_arcsec": np.full(n, np.nan),
                "blend": np.zeros(n, bool), "tidal": np.zeros(n, bool)}
        empty = {f: np.empty(0) for f in COMPANION_FIELDS}
        struct = pa.StructArray.from_arrays([pa.array(empty[f]) for f in COMPANION_FIELDS],
                                            names=list(COMPANION_FIELDS))
        companions = pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, np.int32)), struct)
    out.update(cols)
    return out, companions
