"""What a mock galaxy is: its stars (colours, structure, brightness), its H I and its detection.

:func:`add_stellar_properties` gives each galaxy of the volume a latent star-formation state
``s`` (quenched galaxies by mass and environment, Peng et al. 2010) and from it the colours,
bulge fraction, arm and knot light, disc size and orientation that the renderer draws, then its
r magnitude through a colour-dependent mass-to-light ratio (Bell et al. 2003).
:func:`add_gas_and_detection` adds the H I mass fraction as the sum of its four recorded parts
(:mod:`hicatalog.mock.parameters`), the line width, the 21 cm flux, its ALFALFA S/N and
measured value (:func:`hi_snr`, :func:`measured_flux`) and whether an ALFALFA-like survey
detects it (Haynes et al. 2011). Columns: :mod:`hicatalog.mock.columns`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr

from hicatalog.cosmology import PAPER_COSMOLOGY
from hicatalog.mock.columns import Galaxies
from hicatalog.mock.parameters import (
    A_VISIBLE,
    ALFALFA_RMS_MJY,
    ARM_MAX,
    BT_0,
    BT_MASS,
    BT_MAX,
    BT_S,
    DETECTION_WIDTH_DEX,
    DISC_Q0,
    ENV_MAX_DEX,
    ENV_ONSET,
    ENV_WIDTH,
    GR_0,
    GR_ARM,
    GR_BULGE,
    GR_KNOT,
    GR_MASS,
    GR_MAX,
    GR_MIN,
    GR_NOISE,
    GR_S,
    GR_SATURATION_SHARPNESS,
    GROUP_N_MAX,
    GROUP_N_MIN,
    HI_MASS_CONSTANT,
    INCL_EDGE_ON_MAG,
    KNOT_MAX,
    KNOTS_MEAN,
    KNOTS_S,
    M_AT_10,
    M_SLOPE,
    ML_A,
    ML_B,
    PITCH_MAX_DEG,
    PITCH_MIN_DEG,
    Q_ENV_MAX,
    Q_MASS_EXP,
    Q_MASS_PIVOT,
    R_SUN_ABS,
    RE_10_5,
    RE_MASS_SLOPE,
    RE_S,
    RE_SCATTER,
    S_QUENCHED,
    S_QUENCHED_SCATTER,
    SLIM_ABOVE,
    SLIM_BELOW,
    SLIM_LOG_W50_BREAK,
    SNR_W50_MAX,
    TF_A,
    TF_B,
    TF_PIVOT,
    W50_TURB,
)

__all__ = [
    "add_gas_and_detection", "add_stellar_properties", "alfalfa_flux_limit", "cos_inclination",
    "disc_attenuation",
    "hi_snr", "line_width", "measured_flux", "noise_flux",
]


def noise_flux(w50: np.ndarray) -> np.ndarray:
    """Integrated flux (Jy km/s) of a line at S/N = 1 (Haynes et al. 2011, Eq. 2)."""
    w_smo = np.minimum(w50, SNR_W50_MAX) / 20.0
    return w50 * ALFALFA_RMS_MJY / (1000.0 * np.sqrt(w_smo))


def hi_snr(log_s21: np.ndarray, w50: np.ndarray) -> np.ndarray:
    """ALFALFA S/N = (1000 S21 / W50) w_smo^1/2 / sigma_rms (Haynes et al. 2011, Eq. 2);
    ``log_s21`` log10 Jy km/s, ``w50`` km/s; float64 of their shape."""
    return 10.0**log_s21 / noise_flux(w50)


def measured_flux(log_s21: np.ndarray, w50: np.ndarray, z: np.ndarray) -> np.ndarray:
    """log10 of the measured flux: the true flux plus ``z`` (standard normal draws) noise
    units; ``-inf`` where the measured flux is not positive."""
    s = 10.0**log_s21 + noise_flux(w50) * z
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(s > 0, np.log10(np.maximum(s, 1e-300)), -np.inf)


def alfalfa_flux_limit(w50: np.ndarray) -> np.ndarray:
    """log10 of the ALFALFA Code-1 integrated flux limit (Jy km/s) for line width ``w50``
    (km/s), Haynes et al. (2011) Eq. 4; float64, the shape of ``w50``."""
    lw = np.log10(w50)
    (a0, b0), (a1, b1) = SLIM_BELOW, SLIM_ABOVE
    return np.where(lw < SLIM_LOG_W50_BREAK, a0 * lw + b0, a1 * lw + b1)


def line_width(log_mstar: np.ndarray, cos_incl: np.ndarray) -> np.ndarray:
    """H I line width W50 (km/s) of a disc of stellar mass ``log_mstar`` (log10 Msun) seen at
    inclination ``cos_incl`` (cosine, 1 face-on): twice the stellar-mass Tully-Fisher rotation
    speed ``10^(TF_A + TF_B (log M* - TF_PIVOT))`` (Reyes et al. 2011) times sin i, with the
    turbulent width W50_TURB added in quadrature; float64 of the broadcast shape."""
    v_rot = 10 ** (TF_A + TF_B * (log_mstar - TF_PIVOT))
    sin_i = np.sqrt(1 - cos_incl**2)
    return np.sqrt((2 * v_rot * sin_i) ** 2 + W50_TURB**2)


def add_stellar_properties(v: Galaxies, rng: np.random.Generator) -> None:
    """Add :data:`~hicatalog.mock.columns.PROPERTY_COLUMNS` to ``v`` in place: quenching, the
    star-formation state, colours, structure, distances and the r magnitude.

    ``v``: :data:`~hicatalog.mock.columns.VOLUME_COLUMNS` (length N). ``rng`` is drawn in a
    fixed order (quenching, s, colour, size, inclination, position angle, pitch).
    """
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
    # Colours saturate smoothly on the red sequence at GR_MAX (a softplus).
    gr_raw = GR_0 + GR_MASS * x - GR_S * s + GR_NOISE * rng.standard_normal(n)
    k = GR_SATURATION_SHARPNESS
    gr = GR_MAX - np.logaddexp(0.0, k * (GR_MAX - gr_raw)) / k
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
    v["a_r_incl"] = disc_attenuation(v["axis_ratio"], "r")
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


def cos_inclination(axis_ratio: np.ndarray) -> np.ndarray:
    """cos i of a disc of intrinsic thickness DISC_Q0 seen at projected axis ratio
    ``axis_ratio`` (Holmberg: cos^2 i = (q^2 - q0^2) / (1 - q0^2), 0 below q0): what an
    observer infers from the image; the inverse of the mock's ``axis_ratio``. Float64."""
    q = np.asarray(axis_ratio, dtype=np.float64)
    return np.sqrt(np.clip((q**2 - DISC_Q0**2) / (1 - DISC_Q0**2), 0.0, 1.0))


def disc_attenuation(axis_ratio: np.ndarray, band: str) -> np.ndarray:
    """Attenuation (mag) of a disc's light in ``band`` at projected axis ratio ``axis_ratio``
    (Masters et al. 2010): ``INCL_EDGE_ON_MAG[band] log10(1/q) / log10(1/DISC_Q0)``, 0 face-on,
    the edge-on value at q = DISC_Q0; float64 of the shape of ``axis_ratio``."""
    x = np.log10(1.0 / np.clip(axis_ratio, DISC_Q0, 1.0)) / math.log10(1.0 / DISC_Q0)
    return INCL_EDGE_ON_MAG[band] * x


def add_gas_and_detection(v: Galaxies, rng: np.random.Generator, sigma_int: float,
                          flux_noise: np.ndarray | None = None) -> None:
    """Add :data:`~hicatalog.mock.columns.GAS_COLUMNS` to ``v`` in place: the four parts of M,
    log M_HI, W50, the H I flux, its limit, its S/N and measured value, and the detection.

    ``v``: the volume, property and overdensity columns (length N); ``sigma_int``: the
    standard deviation (dex) of ``m_scatter``. ``rng``: one normal draw (scatter), one uniform
    (detection). ``flux_noise``: standard normal draws (N,) of the radiometer noise
    (:func:`hicatalog.mock.labels.measured_flux`), from another stream; with it the detection
    is decided on the measured flux (a real survey's, Eddington-biased), without it on the
    true flux and ``log_s21_obs`` is ``log_s21``.
    """
    n = len(v["ra"])
    v["m_mass"] = M_AT_10 + M_SLOPE * (v["log_mstar"] - 10.0)
    v["m_visible"] = A_VISIBLE * v["sf_state"]
    x = np.log10(v["one_plus_delta5_true"])
    ramp = np.clip((x - ENV_ONSET) / ENV_WIDTH, 0.0, 1.0)
    v["m_env"] = -ENV_MAX_DEX * np.nan_to_num(ramp, nan=0.0)
    v["m_scatter"] = sigma_int * rng.standard_normal(n)
    v["m_true"] = v["m_mass"] + v["m_visible"] + v["m_env"] + v["m_scatter"]
    v["log_mhi"] = v["m_true"] + v["log_mstar"]
    v["w50"] = line_width(v["log_mstar"], v["cos_incl"])
    # ALFALFA uses Hubble-flow distances; at these redshifts d_L and cz/H0 agree to a few %.
    v["log_s21"] = v["log_mhi"] - math.log10(HI_MASS_CONSTANT) - 2 * np.log10(v["d_l_mpc"])
    v["log_s21_lim"] = alfalfa_flux_limit(v["w50"])
    v["snr_hi"] = hi_snr(v["log_s21"], v["w50"])
    v["log_s21_obs"] = (v["log_s21"].copy() if flux_noise is None
                        else measured_flux(v["log_s21"], v["w50"], flux_noise))
    p_det = ndtr((v["log_s21_obs"] - v["log_s21_lim"]) / DETECTION_WIDTH_DEX)
    v["p_detect"] = p_det
    v["detected"] = rng.random(n) < p_det
