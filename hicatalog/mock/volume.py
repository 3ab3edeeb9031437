"""Where the mock's galaxies are: the survey footprint, a clustered volume and its true overdensity.

The volume is an RA/Dec box (:func:`footprint_box`) times ``Z_MIN < z < Z_MAX``, filled with
galaxies of ``log M* >= LOG_MSTAR_MIN`` from a Schechter stellar mass function: a share
``GROUP_FRACTION`` in groups and clusters of 5-200 members (singular isothermal spheres with
velocity dispersions and radii growing with richness), the rest in the field. Parameters and
their sources: :mod:`hicatalog.mock.parameters`. The true overdensity of a set of galaxies is
the catalog's estimator (:func:`hicatalog.neighbours.projected_overdensity`).

Angles in degrees, distances in Mpc (comoving for positions, physical for group radii),
velocities in km/s; every array is float64 ``(N,)`` unless stated.
"""

from __future__ import annotations

import math

import numpy as np

from hicatalog.cosmology import C_KMS
from hicatalog.mock.columns import VOLUME_COLUMNS, Galaxies
from hicatalog.mock.distances import (
    angular_diameter_distance,
    comoving_distance,
    luminosity_distance,
    redshift_of_distance,
)
from hicatalog.mock.parameters import (
    DEC_HEIGHT_MAX_DEG,
    DEC_MIN_DEG,
    FIELD_SIGMA_V,
    GR_KNOT,
    GR_MIN,
    GROUP_FRACTION,
    GROUP_N_MAX,
    GROUP_N_MIN,
    GROUP_RADIUS_MAX,
    GROUP_RADIUS_MIN,
    GROUP_RICHNESS_SLOPE,
    GROUP_SCALING_EXPONENT,
    GROUP_SIGMA_V_MAX,
    GROUP_SIGMA_V_MIN,
    LOG_MSTAR_MAX,
    LOG_MSTAR_MIN,
    ML_A,
    ML_B,
    R_SUN_ABS,
    RA_CENTRE_DEG,
    RA_WIDTH_MAX_DEG,
    SMF_ALPHA,
    SMF_LOG_MC,
    SMF_PHI_STAR,
    Z_MAX,
    Z_MIN,
)
from hicatalog.neighbours import (
    N_NEIGHBOUR,
    VELOCITY_WINDOW_KMS,
    Z_WINDOW,
    projected_overdensity,
    unit_vectors,
)

__all__ = [
    "MAX_AREA_DEG2",
    "VOLUME_CHUNK",
    "footprint_box",
    "generate_volume",
    "sample_log_mstar",
    "smf_number_density",
    "true_overdensity",
]


# ------------------------------------------------------------------------------- mass function
def _smf_grid() -> tuple[np.ndarray, np.ndarray]:
    """(log M* grid of 4001 points on [LOG_MSTAR_MIN, LOG_MSTAR_MAX], Schechter dn/dlogM* / phi*
    / ln 10 on it)."""
    x = np.linspace(LOG_MSTAR_MIN, LOG_MSTAR_MAX, 4001)
    pdf = 10 ** ((SMF_ALPHA + 1) * (x - SMF_LOG_MC)) * np.exp(-(10 ** (x - SMF_LOG_MC)))
    return x, pdf


def sample_log_mstar(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` values of log10 M* (Msun) from the Schechter function on [LOG_MSTAR_MIN,
    LOG_MSTAR_MAX] by inverse CDF; one ``rng.random(n)`` draw. float64 ``(n,)``."""
    x, pdf = _smf_grid()
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(x))])
    return np.interp(rng.random(n) * cdf[-1], cdf, x)


def smf_number_density() -> float:
    """Galaxies per comoving Mpc^3 with LOG_MSTAR_MIN <= log M* <= LOG_MSTAR_MAX."""
    x, pdf = _smf_grid()
    return float(SMF_PHI_STAR * np.log(10) * np.trapezoid(pdf, x))


# ---------------------------------------------------------------------------------- footprint
def _max_area() -> float:
    d0, d1 = math.radians(DEC_MIN_DEG), math.radians(DEC_MIN_DEG + DEC_HEIGHT_MAX_DEG)
    return RA_WIDTH_MAX_DEG * (math.sin(d1) - math.sin(d0)) * 180 / math.pi


def footprint_box(area_deg2: float) -> tuple[float, float, float, float]:
    """``(ra_min, ra_max, dec_min, dec_max)`` (deg) of the RA/Dec box of about ``area_deg2``
    deg^2: square-ish up to DEC_HEIGHT_MAX_DEG of Dec from DEC_MIN_DEG, then wider in RA (at
    most RA_WIDTH_MAX_DEG), centred on RA_CENTRE_DEG."""
    height = min(math.sqrt(area_deg2), DEC_HEIGHT_MAX_DEG)
    dec_min, dec_max = DEC_MIN_DEG, DEC_MIN_DEG + height
    band = (math.sin(math.radians(dec_max)) - math.sin(math.radians(dec_min))) * 180 / math.pi
    width = min(area_deg2 / band, RA_WIDTH_MAX_DEG)
    return RA_CENTRE_DEG - width / 2, RA_CENTRE_DEG + width / 2, dec_min, dec_max


#: Largest footprint of one mock sky (deg^2).
MAX_AREA_DEG2 = _max_area()


def _uniform_in_box(rng, n, box):
    """``n`` (ra, dec) uniform on the sphere inside ``box`` (deg); draws RA, then sin(Dec)."""
    ra_min, ra_max, dec_min, dec_max = box
    ra = rng.uniform(ra_min, ra_max, n)
    s0, s1 = math.sin(math.radians(dec_min)), math.sin(math.radians(dec_max))
    dec = np.degrees(np.arcsin(rng.uniform(s0, s1, n)))
    return ra, dec


# ------------------------------------------------------------------------------------- volume
#: Galaxies of the volume made at a time (a constant, so that the draws do not depend on the
#: footprint's size): bounds the volume's working memory at ~100 MB whatever N.
VOLUME_CHUNK = 1 << 18


def _group_richnesses(rng: np.random.Generator, n_group_target: int) -> np.ndarray:
    """Group richnesses (int64) from a truncated power law until ``n_group_target`` members."""
    u = rng.random(max(16, n_group_target // GROUP_N_MIN + 16))
    a = 1.0 - GROUP_RICHNESS_SLOPE
    lo, hi = GROUP_N_MIN**a, (GROUP_N_MAX + 1) ** a
    draws = np.floor((lo + u * (hi - lo)) ** (1.0 / a)).astype(np.int64)
    n_groups = int(np.searchsorted(np.cumsum(draws), n_group_target)) if n_group_target else 0
    return draws[:n_groups]


def _group_centres(rng: np.random.Generator, richness: np.ndarray, box, dc_min: float,
                   dc_max: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each group's comoving distance (Mpc), velocity dispersion (km/s), radius (physical
    Mpc; members follow rho ~ r^-2, r = R u) and centre (comoving xyz, Mpc, shape (G, 3))."""
    g_ra, g_dec = _uniform_in_box(rng, len(richness), box)
    g_dc = np.cbrt(rng.uniform(dc_min**3, dc_max**3, len(richness)))
    scale = (richness / GROUP_N_MIN) ** GROUP_SCALING_EXPONENT
    g_sigma = np.clip(GROUP_SIGMA_V_MIN * scale, GROUP_SIGMA_V_MIN, GROUP_SIGMA_V_MAX)
    g_radius = np.clip(GROUP_RADIUS_MIN * scale, GROUP_RADIUS_MIN, GROUP_RADIUS_MAX)
    return g_dc, g_sigma, g_radius, unit_vectors(g_ra, g_dec) * g_dc[:, None]


def generate_volume(
    area_deg2: float, rng: np.random.Generator, r_limit: float | None = None
) -> Galaxies:
    """All galaxies with log M* >= LOG_MSTAR_MIN in the footprint box, clustered.

    With ``r_limit``, galaxies that could not be brighter than ``r_limit`` even with the
    bluest mass-to-light ratio of the model are dropped as they are made (they can never be
    tracers): the volume is drawn in chunks of :data:`VOLUME_CHUNK` galaxies (whole groups,
    then the field), so its memory does not grow with the footprint.

    ``area_deg2``: footprint area (deg^2, at most :data:`MAX_AREA_DEG2`); ``rng``: consumed in
    a fixed order (richnesses, group centres, then per chunk), so the volume is deterministic
    for the generator's state; ``r_limit``: optical limit (r mag) or None for the whole volume.

    Returns :data:`~hicatalog.mock.columns.VOLUME_COLUMNS` (ra, dec, z_cos, z, group_id,
    group_richness, log_mstar), 1-D arrays of one length N, groups first, then the field.
    """
    box = footprint_box(area_deg2)
    omega = area_deg2 * (math.pi / 180) ** 2
    dc_min, dc_max = comoving_distance(np.array([Z_MIN, Z_MAX]))
    volume = omega / 3 * (dc_max**3 - dc_min**3)
    n_total = int(round(smf_number_density() * volume))
    n_group_target = int(GROUP_FRACTION * n_total)

    richness_arr = _group_richnesses(rng, n_group_target)
    n_groups = len(richness_arr)
    n_members = int(richness_arr.sum())
    n_field = max(0, n_total - n_members)
    g_dc, g_sigma, g_radius, g_xyz = _group_centres(rng, richness_arr, box, dc_min, dc_max)

    ra_min, ra_max, dec_min, dec_max = box
    bluest_ml = ML_A + ML_B * min(GR_MIN, GR_KNOT)
    parts: list[dict[str, np.ndarray]] = []

    def keep(ra, dec, dc, vpec, gid, richness) -> None:
        z_cos = redshift_of_distance(dc)
        z_obs = (1 + z_cos) * (1 + vpec / C_KMS) - 1  # relativistic composition of redshifts
        inside = (
            (ra >= ra_min) & (ra <= ra_max) & (dec >= dec_min) & (dec <= dec_max)
            & (z_cos > Z_MIN) & (z_cos < Z_MAX) & (z_obs > Z_MIN) & (z_obs < Z_MAX)
        )
        log_mstar = sample_log_mstar(rng, len(ra))
        if r_limit is not None:
            d_l = np.maximum(luminosity_distance(z_cos), 1e-3)
            r_best = R_SUN_ABS - 2.5 * (log_mstar - bluest_ml) + 5 * np.log10(d_l * 1e5)
            inside &= r_best <= r_limit
        parts.append({
            "ra": ra[inside], "dec": dec[inside], "z_cos": z_cos[inside], "z": z_obs[inside],
            "group_id": gid[inside], "group_richness": richness[inside],
            "log_mstar": log_mstar[inside],
        })

    # Members, whole groups at a time, about VOLUME_CHUNK galaxies per chunk.
    ends = np.searchsorted(np.cumsum(richness_arr), np.arange(VOLUME_CHUNK, n_members,
                                                              VOLUME_CHUNK), "right")
    for g0, g1 in zip(np.r_[0, ends], np.r_[ends, n_groups], strict=True):
        gid = np.repeat(np.arange(g0, g1, dtype=np.int64), richness_arr[g0:g1])
        if gid.size == 0:
            continue
        z_centre = redshift_of_distance(g_dc[gid])
        r = g_radius[gid] * rng.random(len(gid)) * (1 + z_centre)  # comoving
        direction = rng.standard_normal((len(gid), 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        pos = g_xyz[gid] + direction * r[:, None]
        dc = np.linalg.norm(pos, axis=1)
        keep(np.degrees(np.arctan2(pos[:, 1], pos[:, 0])) % 360.0,
             np.degrees(np.arcsin(pos[:, 2] / dc)), dc,
             rng.standard_normal(len(gid)) * g_sigma[gid], gid, richness_arr[gid])
    # The field, VOLUME_CHUNK galaxies at a time.
    for f0 in range(0, n_field, VOLUME_CHUNK):
        m = min(VOLUME_CHUNK, n_field - f0)
        ra, dec = _uniform_in_box(rng, m, box)
        keep(ra, dec, np.cbrt(rng.uniform(dc_min**3, dc_max**3, m)),
             rng.standard_normal(m) * FIELD_SIGMA_V, np.full(m, -1, np.int64),
             np.zeros(m, np.int64))
    if not parts:
        return {c.name: np.empty(0, c.dtype) for c in VOLUME_COLUMNS}
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def true_overdensity(
    ra: np.ndarray, dec: np.ndarray, z: np.ndarray, n_neighbor: int = N_NEIGHBOUR,
    velocity_window_kms: float = VELOCITY_WINDOW_KMS, z_window: float = Z_WINDOW,
) -> tuple[np.ndarray, np.ndarray]:
    """The true projected overdensity of galaxies among themselves (Wu 2020, Section 7.1).

    The catalog's estimator, :func:`hicatalog.neighbours.projected_overdensity`, with every
    galaxy its own counterpart: D_N to the N-th nearest galaxy counting the galaxy itself
    within ``|c dz| <= velocity_window_kms``, Sigma_N = N / (pi D_N^2), 1 + delta = Sigma_N /
    its median in a sliding redshift boxcar of full width ``z_window``. Distances from the
    tabulated paper cosmology (:mod:`hicatalog.mock.distances`).

    ``ra``, ``dec`` (deg), ``z``: ``(N,)``; the mock calls it with the cosmological redshifts
    (no peculiar velocities). Returns ``(one_plus_delta, d_n_mpc)``, float64 ``(N,)`` in the
    input order; NaN where fewer than N galaxies lie in the velocity window.
    """
    n = len(ra)
    order = np.argsort(z, kind="stable")
    zs = z[order]
    xyz = unit_vectors(ra[order], dec[order])
    est = projected_overdensity(
        xyz, zs, np.arange(n, dtype=np.int64), xyz, zs, angular_diameter_distance,
        n_neighbor=n_neighbor, velocity_window_kms=velocity_window_kms, z_window=z_window,
        workers=1,
    )
    out = np.empty(n)
    out[order] = est.one_plus_delta
    d_out = np.empty(n)
    d_out[order] = est.d_n_mpc
    return out, d_out
