"""The mock survey's physical parameters: every number of the model, named, with its source.

One home for the numbers that :mod:`hicatalog.mock.volume` (where galaxies are),
:mod:`hicatalog.mock.galaxies` (what they look like, their H I, their detection),
:mod:`hicatalog.mock.samples` (which ones are imaged) and :mod:`hicatalog.mock.render` (the
colours of the image's components) use. The H I mass fraction of every galaxy is the sum of
four recorded parts::

    M = log10(M_HI / M*) = m_mass + m_visible + m_env + m_scatter

* ``m_mass``: the xGASS scaling relation with stellar mass (Catinella et al. 2018);
* ``m_visible``: ``A_VISIBLE * s`` where ``s`` is a latent star-formation state that sets the
  colour, the blue arm and knot light, the bulge fraction and the disc size in the image;
* ``m_env``: ram-pressure/tidal stripping above ``log(1+delta5) = ENV_ONSET`` (Wu 2020,
  Section 7.2), ``<= 0``, with *no* effect on the stellar image;
* ``m_scatter``: Gaussian, ``sigma_int`` (default 0.20 dex), not in the image.

Units: masses in log10 Msun, distances in Mpc (physical for sizes, comoving for positions),
velocities in km/s, colours and magnitudes in SDSS AB mag, H I flux in Jy km/s. The cosmology
is :data:`hicatalog.cosmology.PAPER_COSMOLOGY`; the overdensity estimator's parameters (5th
neighbour, +-1000 km/s, boxcar 0.02) are :mod:`hicatalog.neighbours`'.
"""

from __future__ import annotations

import math

# ---------------------------------------------------------------------------- volume / footprint
#: Redshift range of the volume (DESIGN: 0.002 < z < 0.06; ALFALFA reaches cz ~ 18000 km/s).
Z_MIN, Z_MAX = 0.002, 0.06
#: Lower Dec edge and centre RA of the footprint box (deg): the ALFALFA spring sky
#: (Haynes et al. 2011, 0 < Dec < 36, 7.5h < RA < 16.5h).
DEC_MIN_DEG, RA_CENTRE_DEG = 2.0, 180.0
#: Largest Dec height and RA width of the box (deg); wider footprints grow in RA up to
#: RA_WIDTH_MAX_DEG, so one mock sky holds up to ~17,000 deg^2, i.e. ~200k imaged galaxies.
DEC_HEIGHT_MAX_DEG, RA_WIDTH_MAX_DEG = 60.0, 359.0

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
#: Sharpness (per mag) of the softplus that saturates g-r at GR_MAX.
GR_SATURATION_SHARPNESS = 15.0
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
#: 1.207 for log W50 < 2.5, log W50 - 2.457 above, as (slope, intercept) below and above the
#: break; used as the 50% point of an error-function completeness of width DETECTION_WIDTH_DEX.
SLIM_LOG_W50_BREAK, SLIM_BELOW, SLIM_ABOVE = 2.5, (0.5, -1.207), (1.0, -2.457)
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
