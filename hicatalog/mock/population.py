"""The mock galaxy population: clustered positions, stellar masses, gas fractions, detection.

Everything here is vectorised numpy; no images are made (see :mod:`hicatalog.mock.render`).
The generator builds a survey *volume* (an RA/Dec box, ``Z_MIN < z < Z_MAX``) filled with
galaxies of ``log M* >= LOG_MSTAR_MIN`` in groups/clusters and in the field, keeps the
ones brighter than the optical limit as *tracers* (the NSA-like neighbour catalog), computes
their true overdensity, their H I content and whether an ALFALFA-like survey detects them, and
draws the *imaged* samples (ALFALFA-like detections, non-detections, an xGASS-like sample).

The H I mass fraction of every galaxy is the sum of four recorded parts::

    M = log10(M_HI / M*) = m_mass + m_visible + m_env + m_scatter

* ``m_mass``: the xGASS scaling relation with stellar mass (Catinella et al. 2018);
* ``m_visible``: ``A_VISIBLE * s`` where ``s`` is a latent star-formation state that sets the
  colour, the blue arm and knot light, the bulge fraction and the disc size in the image;
* ``m_env``: ram-pressure/tidal stripping above ``log(1+delta5) = ENV_ONSET`` (Wu 2020,
  Section 7.2), ``<= 0``, with *no* effect on the stellar image;
* ``m_scatter``: Gaussian, ``sigma_int`` (default 0.20 dex), not in the image.

Units: masses in log10 Msun, distances in Mpc (physical for sizes, comoving for positions),
velocities in km/s, fluxes in SDSS nanomaggies (``m = 22.5 - 2.5 log10 f``), H I flux in
Jy km/s. Cosmology: :data:`hicatalog.cosmology.PAPER_COSMOLOGY` (flat LCDM, H0 = 70
km/s/Mpc, Om = 0.3, the paper's).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from hicatalog.cosmology import C_KMS, PAPER_COSMOLOGY
from hicatalog.neighbours import projected_overdensity, unit_vectors

log = logging.getLogger("hicatalog.mock.population")

__all__ = [
    "Population",
    "generate_population",
    "generate_volume",
    "true_overdensity",
    "population_counts",
]

# ---------------------------------------------------------------------------- volume / footprint
#: Redshift range of the volume (DESIGN: 0.002 < z < 0.06; ALFALFA reaches cz ~ 18000 km/s).
Z_MIN, Z_MAX = 0.002, 0.06
#: Lower Dec edge and centre RA of the footprint box (deg): the ALFALFA spring sky
#: (Haynes et al. 2011, 0 < Dec < 36, 7.5h < RA < 16.5h).
DEC_MIN_DEG, RA_CENTRE_DEG = 2.0, 180.0
#: Largest Dec height of the box (deg); wider footprints grow in RA (up to 359 deg), so one
#: mock sky holds up to ~17,000 deg^2, i.e. ~200k imaged galaxies.
DEC_HEIGHT_MAX_DEG = 60.0

# ------------------------------------------------------------------------ stellar mass function
#: Schechter stellar mass function: characteristic mass, faint-end slope and normalisation
#: (log Mc ~ 10.7, alpha ~ -1.3; of the order of Baldry et al. 2012, phi* in Mpc^-3 dex^-1).
SMF_LOG_MC, SMF_ALPHA, SMF_PHI_STAR = 10.7, -1.3, 5.0e-3
#: Stellar mass range of the volume (log10 Msun).
LOG_MSTAR_MIN, LOG_MSTAR_MAX = 8.0, 11.5

# ------------------------------------------------------------------------- groups and clusters
#: Fraction of the volume's galaxies in groups/clusters of >= 5 members (the rest is field);
#: about half of low-z galaxies live in groups (Yang et al. 2007; Eke et al. 2004).
GROUP_FRACTION = 0.5
#: Richness range (members with log M* >= LOG_MSTAR_MIN) and slope of the multiplicity
#: function dN/dN_mem ~ N_mem^-GROUP_RICHNESS_SLOPE.
GROUP_N_MIN, GROUP_N_MAX, GROUP_RICHNESS_SLOPE = 5, 200, 2.0
#: Line-of-sight velocity dispersion and radius of a group of GROUP_N_MIN members, growing as
#: (N/5)^GROUP_SCALING_EXPONENT up to the cluster values (Carlberg et al. 1996; Yang et al.
#: 2007): 200 -> 1000 km/s and 0.3 -> 1.5 Mpc (physical) from 5 to 200 members.
GROUP_SIGMA_V_MIN, GROUP_SIGMA_V_MAX = 200.0, 1000.0
GROUP_RADIUS_MIN, GROUP_RADIUS_MAX = 0.3, 1.5
GROUP_SCALING_EXPONENT = math.log(5.0) / math.log(40.0)  # 5x growth over 40x richness
#: (Members follow rho ~ r^-2, a singular isothermal sphere, inside the group radius.)
#: Field galaxies: line-of-sight peculiar velocity dispersion (km/s).
FIELD_SIGMA_V = 150.0
#: Quenched (red-sequence) galaxies: the quenched fraction is 1 - (1 - eps_mass)(1 - eps_env)
#: (Peng et al. 2010) with eps_mass = 1 - exp(-(M*/10^Q_MASS_PIVOT)^Q_MASS_EXP) and eps_env
#: rising to Q_ENV_MAX in the richest clusters (morphology-density relation: Dressler 1980;
#: Wetzel et al. 2012). Quenching is *visible* (red, smooth, bulgy), unlike stripping.
Q_MASS_PIVOT, Q_MASS_EXP, Q_ENV_MAX = 10.6, 0.6, 0.5
#: Star-formation state of quenched galaxies: s ~ N(S_QUENCHED, S_QUENCHED_SCATTER), which puts
#: their M ~1.5 dex (A_VISIBLE * S_QUENCHED) below the star-forming sequence (xGASS gas
#: fractions of a few per cent or less on the red sequence, Catinella et al. 2018).
#: Star-forming galaxies: s ~ N(0, 1).
S_QUENCHED, S_QUENCHED_SCATTER = -2.15, 0.4

# ------------------------------------------------------------------------------- optical limit
#: SDSS main-sample spectroscopic limit (Petrosian r, Strauss et al. 2002): tracers are the
#: galaxies brighter than this.
R_MAG_LIMIT = 17.77
#: Absolute r magnitude of the Sun (Blanton & Roweis 2007).
R_SUN_ABS = 4.65
#: Colour-dependent r-band mass-to-light ratio: log(M*/L_r) = a + b (g-r) (Bell et al. 2003).
ML_A, ML_B = -0.306, 1.097

# ------------------------------------------------------------------------ gas fraction: M parts
#: xGASS scaling relation (Catinella et al. 2018): median log(M_HI/M*) = M_AT_10 at
#: log M* = 10, falling by M_SLOPE per dex of stellar mass.
M_AT_10, M_SLOPE = -0.5, -0.65
#: m_visible = A_VISIBLE * s with s ~ N(0, 1) for star-forming galaxies. Calibrated on the
#: paper's own numbers: the ALFALFA-like detections get std(M) ~0.58 dex, between the paper's
#: alpha.40B (0.50) and alpha.40A (0.68 dex, Section 4.1), and a classifier that knew every
#: visible quantity exactly would separate detections from non-detections with ~92% accuracy
#: (the paper's CNN: 93%, Section 5.3). With A_VISIBLE = 0.5 that ceiling was ~89%, below what
#: the paper measured on real galaxies, so the mock was harder than the sky.
A_VISIBLE = 0.70
#: Environment stripping: m_env = -ENV_MAX_DEX * clip((x - ENV_ONSET) / ENV_WIDTH, 0, 1),
#: x = log10(1 + one_plus_delta5_true); the paper's transition at log(1+delta5) ~ 0.5 (Section 7.2).
ENV_MAX_DEX, ENV_ONSET, ENV_WIDTH = 0.5, 0.5, 0.6

# ----------------------------------------------------------------------------- image physics
#: Disc colour: g-r = GR_0 + GR_MASS (log M* - 10) - GR_S s + N(0, GR_NOISE), saturating
#: smoothly at GR_MAX (red sequence), floor GR_MIN: ~0.35 for gas-rich star-forming discs to
#: ~0.75-0.85 on the red sequence (Strateva et al. 2001; Baldry et al. 2004). The implied
#: slope, ~ -3 dex of M per mag of g-r at fixed M*, is steeper than the photometric gas
#: fraction of Zhang et al. (2009), -1.7 dex/mag, because there size and surface brightness
#: share the work.
GR_0, GR_MASS, GR_S, GR_NOISE, GR_MIN, GR_MAX = 0.60, 0.08, 0.16, 0.03, 0.20, 0.85
#: Bulge (old population) colour g-r and r-i; star-forming knots and arm light colours.
GR_BULGE, GR_KNOT, GR_ARM = 0.80, 0.10, 0.35
#: r-i and r-z from g-r for stellar populations (approximate SDSS/DECam colour-colour loci).
RI_A, RI_B = 0.08, 0.40
RZ_A, RZ_B = 0.10, 1.10
#: Bulge-to-total light ratio: BT_0 + BT_MASS (log M* - 10) - BT_S s, clipped [0, BT_MAX]
#: (bulges grow with mass and quenching; Gadotti 2009).
BT_0, BT_MASS, BT_S, BT_MAX = 0.18, 0.18, 0.10, 0.8
#: Disc half-light radius: RE_10_5 kpc at log M* = 10.5, growing as M*^RE_MASS_SLOPE (Shen et
#: al. 2003: R50 ~ M*^0.22 for late types), larger for gas-rich discs (lower surface
#: brightness: Zhang et al. 2009) by 10^(RE_S s), lognormal scatter RE_SCATTER dex.
RE_10_5, RE_MASS_SLOPE, RE_S, RE_SCATTER = 4.0, 0.22, 0.08, 0.08
#: Bulge effective radius as a fraction of the disc half-light radius.
BULGE_RE_FRACTION = 0.25
#: Intrinsic disc thickness (axis ratio seen edge-on; Holmberg formula).
DISC_Q0 = 0.2
#: Fraction of the disc's r-band light in blue arms and in star-forming knots, rising with s:
#: ARM_MAX * Phi(s) and KNOT_MAX * Phi(s - 0.3) (Phi the normal CDF).
ARM_MAX, KNOT_MAX = 0.35, 0.25
#: Mean number of resolved star-forming knots: KNOTS_MEAN * exp(KNOTS_S s).
KNOTS_MEAN, KNOTS_S = 8.0, 1.0
#: Spiral pitch angle range (deg), tighter for bulge-dominated discs (Kennicutt 1981).
PITCH_MIN_DEG, PITCH_MAX_DEG = 10.0, 30.0

# ----------------------------------------------------------------------------- H I detection
#: H I flux: S21 [Jy km/s] = M_HI / (HI_MASS_CONSTANT D^2), D in Mpc (Haynes et al. 2011).
HI_MASS_CONSTANT = 2.356e5
#: Stellar-mass Tully-Fisher relation, log V_rot = TF_A + TF_B (log M* - TF_PIVOT), km/s
#: (Reyes et al. 2011, V80).
TF_A, TF_B, TF_PIVOT = 2.142, 0.278, 10.10
#: Minimum (turbulent) line width added in quadrature (km/s).
W50_TURB = 20.0
#: ALFALFA Code-1 completeness limit (Haynes et al. 2011, Eq. 4): log S_lim = 0.5 log W50 -
#: 1.207 for log W50 < 2.5, log W50 - 2.457 above; used as the 50% point of an error-function
#: completeness of width DETECTION_WIDTH_DEX.
DETECTION_WIDTH_DEX = 0.05

# ------------------------------------------------------------------------ imaged populations
#: Share of the imaged sample per population when ``population="all"``: ALFALFA-like
#: detections and as many non-detections (the PR classes), plus an xGASS-like sample.
XGASS_SHARE = 0.12
#: Non-detections come from tracers inside the ALFALFA volume, z < 0.06 (Wu 2020, Section 5.2).
NONDET_Z_MAX = 0.06
#: xGASS-like sample (Catinella et al. 2018): GASS-low, 9 < log M* < 10 at 0.01 < z < 0.02, and
#: GASS, 10 < log M* < 11.5 at 0.025 < z < 0.05; flat in log M*, selected regardless of H I.
XGASS_LOW_LOG_MSTAR, XGASS_LOW_Z = (9.0, 10.0), (0.01, 0.02)
XGASS_HIGH_LOG_MSTAR, XGASS_HIGH_Z = (10.0, 11.5), (0.025, 0.05)
#: Environment: the 5th nearest neighbour (counting the galaxy itself) within +-1000 km/s,
#: normalised by the median in a redshift boxcar of width 0.02 (Wu 2020, Section 7.1).
DELTA5_N, DELTA5_DV_KMS, DELTA5_DZ_BOX = 5, 1000.0, 0.02

#: Each imaged population takes at most 1/POOL_FACTOR of the galaxies that qualify for it, so
#: the imaged samples stay random subsets of a real survey; the footprint grows until they do.
POOL_FACTOR = 1.5

POPULATIONS = ("alfalfa", "nondetections", "xgass")


@dataclass
class Population:
    """A generated mock survey.

    ``tracers``: dict of 1-D arrays over every galaxy above the optical limit (length
    ``n_tracers``): object_id (str), ra, dec (deg), z (observed), and all truth columns.
    ``imaged``: dict of 1-D arrays over the imaged galaxies (length ``n``), the tracer
    columns plus ``population`` and the render parameters (see :mod:`hicatalog.mock.render`).
    ``area_deg2``: footprint area; ``seed``: the seed it was made with.
    """

    tracers: dict[str, np.ndarray]
    imaged: dict[str, np.ndarray]
    area_deg2: float
    seed: int


# ------------------------------------------------------------------------------------ helpers
def _sample_schechter(rng: np.random.Generator, n: int) -> np.ndarray:
    """log10 M* from the Schechter function on [LOG_MSTAR_MIN, LOG_MSTAR_MAX] (inverse CDF)."""
    x = np.linspace(LOG_MSTAR_MIN, LOG_MSTAR_MAX, 4001)
    pdf = 10 ** ((SMF_ALPHA + 1) * (x - SMF_LOG_MC)) * np.exp(-(10 ** (x - SMF_LOG_MC)))
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(x))])
    return np.interp(rng.random(n) * cdf[-1], cdf, x)


def smf_number_density() -> float:
    """Galaxies per comoving Mpc^3 with LOG_MSTAR_MIN <= log M* <= LOG_MSTAR_MAX."""
    x = np.linspace(LOG_MSTAR_MIN, LOG_MSTAR_MAX, 4001)
    pdf = 10 ** ((SMF_ALPHA + 1) * (x - SMF_LOG_MC)) * np.exp(-(10 ** (x - SMF_LOG_MC)))
    return float(SMF_PHI_STAR * np.log(10) * np.trapezoid(pdf, x))


_ZGRID = np.linspace(0.0, Z_MAX * 1.2, 2001)
_DC_GRID = PAPER_COSMOLOGY.comoving_distance(_ZGRID).value  # Mpc
_DL_GRID = PAPER_COSMOLOGY.luminosity_distance(_ZGRID).value  # Mpc


def comoving_distance(z: np.ndarray) -> np.ndarray:
    """Comoving distance (Mpc) for redshift(s) ``z`` (tabulated astropy cosmology)."""
    return np.interp(z, _ZGRID, _DC_GRID)


def redshift_of_distance(dc: np.ndarray) -> np.ndarray:
    """Inverse of :func:`comoving_distance`."""
    return np.interp(dc, _DC_GRID, _ZGRID)


def _max_area() -> float:
    d0, d1 = math.radians(DEC_MIN_DEG), math.radians(DEC_MIN_DEG + DEC_HEIGHT_MAX_DEG)
    return 359.0 * (math.sin(d1) - math.sin(d0)) * 180 / math.pi


def _footprint(area_deg2: float) -> tuple[float, float, float, float]:
    """(ra_min, ra_max, dec_min, dec_max) of an RA/Dec box of about ``area_deg2``."""
    height = min(math.sqrt(area_deg2), DEC_HEIGHT_MAX_DEG)
    dec_min, dec_max = DEC_MIN_DEG, DEC_MIN_DEG + height
    band = (math.sin(math.radians(dec_max)) - math.sin(math.radians(dec_min))) * 180 / math.pi
    width = min(area_deg2 / band, 359.0)
    return RA_CENTRE_DEG - width / 2, RA_CENTRE_DEG + width / 2, dec_min, dec_max


#: Largest footprint of one mock sky (deg^2).
MAX_AREA_DEG2 = _max_area()


def _uniform_in_box(rng, n, box):
    ra_min, ra_max, dec_min, dec_max = box
    ra = rng.uniform(ra_min, ra_max, n)
    s0, s1 = math.sin(math.radians(dec_min)), math.sin(math.radians(dec_max))
    dec = np.degrees(np.arcsin(rng.uniform(s0, s1, n)))
    return ra, dec


def alfalfa_flux_limit(w50: np.ndarray) -> np.ndarray:
    """log10 of the ALFALFA Code-1 integrated flux limit (Jy km/s) for line width W50 (km/s),
    Haynes et al. (2011) Eq. 4."""
    lw = np.log10(w50)
    return np.where(lw < 2.5, 0.5 * lw - 1.207, lw - 2.457)


# ------------------------------------------------------------------------------------- volume
#: Galaxies of the volume made at a time (a constant, so that the draws do not depend on the
#: footprint's size): bounds the volume's working memory at ~100 MB whatever N.
VOLUME_CHUNK = 1 << 18


def generate_volume(
    area_deg2: float, rng: np.random.Generator, r_limit: float | None = None
) -> dict[str, np.ndarray]:
    """All galaxies with log M* >= LOG_MSTAR_MIN in the footprint box, clustered.

    With ``r_limit``, galaxies that could not be brighter than ``r_limit`` even with the
    bluest mass-to-light ratio of the model are dropped as they are made (they can never be
    tracers): the volume is drawn in chunks of :data:`VOLUME_CHUNK` galaxies (whole groups,
    then the field), so its memory does not grow with the footprint.

    Returns a dict of arrays (length N): ra, dec (deg), z_cos (cosmological), z (observed,
    with peculiar velocity), group_id (int64, -1 field), group_richness (int64, 0 field),
    log_mstar.
    """
    box = _footprint(area_deg2)
    omega = area_deg2 * (math.pi / 180) ** 2
    dc_min, dc_max = comoving_distance(np.array([Z_MIN, Z_MAX]))
    volume = omega / 3 * (dc_max**3 - dc_min**3)
    n_total = int(round(smf_number_density() * volume))
    n_group_target = int(GROUP_FRACTION * n_total)

    # Group richnesses from a truncated power law until the group share is reached.
    u = rng.random(max(16, n_group_target // GROUP_N_MIN + 16))
    a = 1.0 - GROUP_RICHNESS_SLOPE
    lo, hi = GROUP_N_MIN**a, (GROUP_N_MAX + 1) ** a
    draws = np.floor((lo + u * (hi - lo)) ** (1.0 / a)).astype(np.int64)
    n_groups = int(np.searchsorted(np.cumsum(draws), n_group_target)) if n_group_target else 0
    richness_arr = draws[:n_groups]
    n_members = int(richness_arr.sum())
    n_field = max(0, n_total - n_members)

    # Group centres, dispersions and radii (physical Mpc; members follow rho ~ r^-2, r = R u).
    g_ra, g_dec = _uniform_in_box(rng, n_groups, box)
    g_dc = np.cbrt(rng.uniform(dc_min**3, dc_max**3, n_groups))
    scale = (richness_arr / GROUP_N_MIN) ** GROUP_SCALING_EXPONENT
    g_sigma = np.clip(GROUP_SIGMA_V_MIN * scale, GROUP_SIGMA_V_MIN, GROUP_SIGMA_V_MAX)
    g_radius = np.clip(GROUP_RADIUS_MIN * scale, GROUP_RADIUS_MIN, GROUP_RADIUS_MAX)
    g_xyz = unit_vectors(g_ra, g_dec) * g_dc[:, None]

    ra_min, ra_max, dec_min, dec_max = box
    bluest_ml = ML_A + ML_B * min(GR_MIN, GR_KNOT)
    parts: list[dict[str, np.ndarray]] = []

    def keep(ra, dec, dc, vpec, gid, richness) -> None:
        z_cos = redshift_of_distance(dc)
        z_obs = (1 + z_cos) * (1 + vpec / C_KMS) - 1
        inside = (
            (ra >= ra_min) & (ra <= ra_max) & (dec >= dec_min) & (dec <= dec_max)
            & (z_cos > Z_MIN) & (z_cos < Z_MAX) & (z_obs > Z_MIN) & (z_obs < Z_MAX)
        )
        log_mstar = _sample_schechter(rng, len(ra))
        if r_limit is not None:
            d_l = np.maximum(np.interp(z_cos, _ZGRID, _DL_GRID), 1e-3)
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
        return {k: np.empty(0, np.int64 if k.startswith("group") else np.float64)
                for k in ("ra", "dec", "z_cos", "z", "group_id", "group_richness", "log_mstar")}
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def true_overdensity(
    ra: np.ndarray, dec: np.ndarray, z: np.ndarray, n_neighbor: int = DELTA5_N,
    dv_kms: float = DELTA5_DV_KMS, z_box: float = DELTA5_DZ_BOX,
) -> tuple[np.ndarray, np.ndarray]:
    """Projected overdensity with the paper's estimator (Wu 2020, Section 7.1).

    D_N is the projected physical distance (Mpc, angular diameter distance times the angle) to
    the N-th nearest galaxy counting the galaxy itself, among galaxies within ``|c dz| <=
    dv_kms``; Sigma_N = N / (pi D_N^2); 1 + delta = Sigma_N / median(Sigma_N) over the galaxies
    in a sliding redshift boxcar of width ``z_box``. It is the catalog's estimator,
    :func:`hicatalog.neighbours.projected_overdensity`, with every galaxy its own counterpart.

    The mock's *true* overdensity calls this with the cosmological redshifts (no peculiar
    velocities). Returns ``(one_plus_delta, d_n_mpc)``, float64 arrays of the input length;
    NaN where fewer than N galaxies lie in the velocity window.
    """
    n = len(ra)
    order = np.argsort(z, kind="stable")
    zs = z[order]
    xyz = unit_vectors(ra[order], dec[order])
    est = projected_overdensity(
        xyz, zs, np.arange(n, dtype=np.int64), xyz, zs,
        lambda zz: np.interp(zz, _ZGRID, _DC_GRID) / (1 + zz),
        n_neighbor=n_neighbor, velocity_window_kms=dv_kms, z_window=z_box, workers=1,
    )
    out = np.empty(n)
    out[order] = est.one_plus_delta
    d_out = np.empty(n)
    d_out[order] = est.d_n_mpc
    return out, d_out


# ---------------------------------------------------------------------------------- physics
def _galaxy_properties(v: dict[str, np.ndarray], rng: np.random.Generator) -> None:
    """Add the star-formation state, colours, structure and r magnitude to ``v`` in place."""
    n = len(v["ra"])
    x = v["log_mstar"] - 10.0
    eps_mass = 1.0 - np.exp(-(10 ** (v["log_mstar"] - Q_MASS_PIVOT)) ** Q_MASS_EXP)
    eps_env = np.where(
        v["group_richness"] > 0,
        Q_ENV_MAX * np.clip(np.log(np.maximum(v["group_richness"], 1) / GROUP_N_MIN)
                            / math.log(GROUP_N_MAX / GROUP_N_MIN), 0, 1),
        0.0,
    )
    v["quenched"] = rng.random(n) < 1.0 - (1.0 - eps_mass) * (1.0 - eps_env)
    s = np.where(v["quenched"], S_QUENCHED + S_QUENCHED_SCATTER * rng.standard_normal(n),
                 rng.standard_normal(n))
    v["sf_state"] = s
    # Colours saturate smoothly on the red sequence at GR_MAX (softplus of sharpness 15/mag).
    gr_raw = GR_0 + GR_MASS * x - GR_S * s + GR_NOISE * rng.standard_normal(n)
    gr = GR_MAX - np.logaddexp(0.0, 15.0 * (GR_MAX - gr_raw)) / 15.0
    v["gr_disc"] = np.clip(gr, GR_MIN, GR_MAX)
    v["bt"] = np.clip(BT_0 + BT_MASS * x - BT_S * s, 0.0, BT_MAX)
    v["arm_frac"] = ARM_MAX * ndtr(s)
    v["knot_frac"] = KNOT_MAX * ndtr(s - 0.3)
    v["knots_mean"] = KNOTS_MEAN * np.exp(KNOTS_S * np.clip(s, -3, 2.5))
    v["re_disc_kpc"] = (
        RE_10_5 * 10 ** (RE_MASS_SLOPE * (v["log_mstar"] - 10.5) + RE_S * s
                         + RE_SCATTER * rng.standard_normal(n))
    )
    v["cos_incl"] = rng.random(n)
    v["axis_ratio"] = np.sqrt(v["cos_incl"] ** 2 * (1 - DISC_Q0**2) + DISC_Q0**2)
    v["pa_deg"] = rng.uniform(0.0, 180.0, n)
    v["pitch_deg"] = PITCH_MIN_DEG + (PITCH_MAX_DEG - PITCH_MIN_DEG) * np.clip(
        1.0 - v["bt"] / 0.5 + 0.2 * rng.standard_normal(n), 0, 1
    )
    # Light-weighted g-r of the whole galaxy for the mass-to-light ratio.
    f_disc = 1 - v["bt"]
    f_blue = f_disc * (v["arm_frac"] + v["knot_frac"])
    f_disc_smooth = f_disc - f_blue
    g_flux = (
        v["bt"] * 10 ** (-0.4 * GR_BULGE) + f_disc_smooth * 10 ** (-0.4 * v["gr_disc"])
        + f_disc * v["arm_frac"] * 10 ** (-0.4 * GR_ARM)
        + f_disc * v["knot_frac"] * 10 ** (-0.4 * GR_KNOT)
    )
    v["g_r"] = -2.5 * np.log10(g_flux)
    log_ml = ML_A + ML_B * v["g_r"]
    abs_r = R_SUN_ABS - 2.5 * (v["log_mstar"] - log_ml)
    d_l = PAPER_COSMOLOGY.luminosity_distance(v["z_cos"]).value
    v["d_l_mpc"] = d_l
    v["r_mag"] = abs_r + 5 * np.log10(d_l * 1e5)
    v["d_a_mpc"] = PAPER_COSMOLOGY.angular_diameter_distance(v["z_cos"]).value


def _gas_and_detection(v: dict[str, np.ndarray], rng: np.random.Generator,
                       sigma_int: float) -> None:
    """Add the four parts of M, log M_HI, W50, H I flux and the detection flag to ``v``."""
    n = len(v["ra"])
    v["m_mass"] = M_AT_10 + M_SLOPE * (v["log_mstar"] - 10.0)
    v["m_visible"] = A_VISIBLE * v["sf_state"]
    x = np.log10(v["one_plus_delta5_true"])
    ramp = np.clip((x - ENV_ONSET) / ENV_WIDTH, 0.0, 1.0)
    v["m_env"] = -ENV_MAX_DEX * np.nan_to_num(ramp, nan=0.0)
    v["m_scatter"] = sigma_int * rng.standard_normal(n)
    v["m_true"] = v["m_mass"] + v["m_visible"] + v["m_env"] + v["m_scatter"]
    v["log_mhi"] = v["m_true"] + v["log_mstar"]
    v_rot = 10 ** (TF_A + TF_B * (v["log_mstar"] - TF_PIVOT))
    sin_i = np.sqrt(1 - v["cos_incl"] ** 2)
    v["w50"] = np.sqrt((2 * v_rot * sin_i) ** 2 + W50_TURB**2)
    # ALFALFA uses Hubble-flow distances; at these redshifts d_L and cz/H0 agree to a few %.
    v["log_s21"] = v["log_mhi"] - math.log10(HI_MASS_CONSTANT) - 2 * np.log10(v["d_l_mpc"])
    v["log_s21_lim"] = alfalfa_flux_limit(v["w50"])
    p_det = ndtr((v["log_s21"] - v["log_s21_lim"]) / DETECTION_WIDTH_DEX)
    v["p_detect"] = p_det
    v["detected"] = rng.random(n) < p_det


def population_counts(n: int, population: str) -> dict[str, int]:
    """How many imaged galaxies of each population ``n`` asks for."""
    if population != "all":
        return {p: (n if p == population else 0) for p in POPULATIONS}
    n_x = int(round(XGASS_SHARE * n)) if n >= 3 else 0
    n_det = (n - n_x + 1) // 2
    return {"alfalfa": n_det, "nondetections": n - n_x - n_det, "xgass": n_x}


def _select(rng, pool: np.ndarray, k: int, weights: np.ndarray | None = None) -> np.ndarray:
    if k == 0:
        return np.empty(0, dtype=np.int64)
    p = None if weights is None else weights / weights.sum()
    return np.sort(rng.choice(pool, size=k, replace=False, p=p))


def _imaged_pools(t: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    xg = np.zeros(len(t["z"]), bool)
    for (m0, m1), (z0, z1) in ((XGASS_LOW_LOG_MSTAR, XGASS_LOW_Z),
                               (XGASS_HIGH_LOG_MSTAR, XGASS_HIGH_Z)):
        xg |= (t["log_mstar"] >= m0) & (t["log_mstar"] < m1) & (t["z"] >= z0) & (t["z"] < z1)
    return {
        "xgass": np.flatnonzero(xg),
        "alfalfa": np.flatnonzero(t["detected"]),
        "nondetections": np.flatnonzero(~t["detected"] & (t["z"] < NONDET_Z_MAX)),
    }


def generate_population(
    n: int, seed: int = 0, sigma_int: float = 0.20, population: str = "all",
    survey_tag: str | None = None,
) -> Population:
    """Generate the mock survey: tracers (every galaxy above the optical limit) and the
    ``n`` imaged galaxies of ``population`` (``alfalfa``, ``nondetections``, ``xgass`` or
    ``all``), deterministic for ``seed``.

    The footprint grows until the pools of every requested population are large enough (the
    imaged share of a pool is at most 1/POOL_FACTOR, so that tracers stay a real survey).

    Raises
    ------
    ValueError: bad ``n``/``population``, or ``n`` larger than one mock sky holds (~200k).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1 imaged galaxies, got {n}")
    if population not in (*POPULATIONS, "all"):
        raise ValueError(f"population must be one of {(*POPULATIONS, 'all')}, got {population!r}")
    want = population_counts(n, population)
    # Imaged galaxies per deg^2 of each pool (measured on this model; only a first guess).
    per_deg2 = {"alfalfa": 9.0, "nondetections": 15.0, "xgass": 3.0}
    area = max(max(1.1 * POOL_FACTOR * want[p] / per_deg2[p] for p in POPULATIONS if want[p]),
               1.0)
    area = min(area, MAX_AREA_DEG2)
    for attempt in range(12):
        rng = np.random.default_rng([seed, 0xA11FA, attempt])
        vol = generate_volume(area, rng, r_limit=R_MAG_LIMIT)
        # Properties and the optical limit chunk by chunk: only tracers are ever held whole.
        parts = []
        for c0 in range(0, max(len(vol["ra"]), 1), VOLUME_CHUNK):
            chunk = {k: a[c0:c0 + VOLUME_CHUNK] for k, a in vol.items()}
            _galaxy_properties(chunk, rng)
            keep = chunk["r_mag"] <= R_MAG_LIMIT
            parts.append({k: a[keep] for k, a in chunk.items()})
        del vol, chunk
        t = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        del parts
        t["one_plus_delta5_true"], t["d5_true_mpc"] = true_overdensity(t["ra"], t["dec"], t["z_cos"])
        _gas_and_detection(t, rng, sigma_int)
        pools = _imaged_pools(t)
        short = [p for p in POPULATIONS if want[p] and len(pools[p]) < POOL_FACTOR * want[p]]
        if not short:
            break
        if area >= MAX_AREA_DEG2 * 0.999:
            raise ValueError(
                f"n={n} imaged galaxies do not fit one mock sky (the largest footprint, "
                f"{MAX_AREA_DEG2:.0f} deg2, holds {({p: len(pools[p]) for p in short})} "
                f"candidates, {POOL_FACTOR}x the request is needed); use several runs with "
                "different seeds"
            )
        grow = max(POOL_FACTOR * want[p] / max(len(pools[p]), 1) for p in short)
        log.debug("mock footprint %.1f deg2 too small for %s; growing x%.2f", area, short, grow)
        area = min(area * min(max(grow * 1.15, 1.3), 20.0), MAX_AREA_DEG2)
    else:  # pragma: no cover - the growth converges in a few steps
        raise ValueError(f"could not build a volume with {want} imaged galaxies")
    n_t = len(t["ra"])
    tag = f"s{seed}" if survey_tag is None else survey_tag
    t["object_id"] = np.array([f"mock-{tag}-{i:07d}" for i in range(n_t)], dtype=object)

    pools = _imaged_pools(t)
    chosen: dict[str, np.ndarray] = {}
    taken = np.zeros(n_t, bool)
    for p in ("xgass", "alfalfa", "nondetections"):
        pool = pools[p][~taken[pools[p]]]
        if want[p] > len(pool):
            raise ValueError(f"mock volume has only {len(pool)} {p} galaxies, need {want[p]}")
        weights = None
        if p == "xgass":  # flat in log M*: weight by the inverse of the pool's mass density
            hist, edges = np.histogram(t["log_mstar"][pool], bins=15)
            b = np.clip(np.digitize(t["log_mstar"][pool], edges) - 1, 0, 14)
            weights = 1.0 / np.maximum(hist[b], 1)
        chosen[p] = _select(rng, pool, want[p], weights)
        taken[chosen[p]] = True
    idx = np.concatenate([chosen[p] for p in POPULATIONS])
    labels = np.concatenate([np.full(len(chosen[p]), p, dtype=object) for p in POPULATIONS])
    perm = rng.permutation(len(idx))
    idx, labels = idx[perm], labels[perm]
    imaged = {k: a[idx] for k, a in t.items()}
    imaged["population"] = labels
    imaged["tracer_index"] = idx.astype(np.int64)
    # Per-galaxy render seed: the galaxy's index in the tracer catalog (stable for a seed).
    area_final = area
    log.info(
        "mock volume: %.0f deg2, %d tracers, %d detected, imaged %s",
        area_final, n_t, int(t["detected"].sum()), {p: len(chosen[p]) for p in POPULATIONS},
    )
    return Population(tracers=t, imaged=imaged, area_deg2=area_final, seed=seed)
