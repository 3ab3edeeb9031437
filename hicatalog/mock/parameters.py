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
#: Redshift limit of the magnitude-limited survey (``population="survey"``): the paper's imaged
#: sample is the z < 0.06 SDSS main sample (Wu 2020, Section 5.2), the depth of ALFALFA's blind
#: search (cz < 18000 km/s). The volume's Z_MAX is the same, so every tracer is inside it.
SURVEY_Z_MAX = 0.06
#: Non-detections come from tracers inside the same ALFALFA volume.
NONDET_Z_MAX = SURVEY_Z_MAX
#: Detection probability at which a survey non-detection's upper limit is set: its flux limit is
#: the measured flux that the mock detects with this probability (the error-function
#: completeness above, DETECTION_WIDTH_DEX wide), so the limit bounds ~all undetected fluxes.
SURVEY_LIMIT_P_DETECT = 0.95
#: xGASS-like sample (Catinella et al. 2018): GASS-low, 9 < log M* < 10 at 0.01 < z < 0.02, and
#: GASS, 10 < log M* < 11.5 at 0.025 < z < 0.05; flat in log M*, selected regardless of H I.
XGASS_LOW_LOG_MSTAR, XGASS_LOW_Z = (9.0, 10.0), (0.01, 0.02)
XGASS_HIGH_LOG_MSTAR, XGASS_HIGH_Z = (10.0, 11.5), (0.025, 0.05)

# =============================================================================================
# The real difficulties (issue 24): what real labels and real images do that the model above
# does not. Each effect is switched by :class:`hicatalog.mock.effects.Effects`; every number
# below is the published value it is drawn from (docs/mock.md lists them with the references).
# =============================================================================================

# ------------------------------------------------------------------------------ label noise
#: ALFALFA signal-to-noise (Haynes et al. 2011, Eq. 2): S/N = (1000 S21 / W50) w_smo^1/2 /
#: sigma_rms, w_smo = W50 / (2 x 10 km/s) for W50 < SNR_W50_MAX, SNR_W50_MAX / 20 above;
#: sigma_rms the spectral rms (mJy at 10 km/s). With 2.2 mJy the Code-1 50% completeness limit
#: above (alfalfa_flux_limit) sits at S/N ~6.3, next to the catalog's Code-1 cut, S/N > 6.5.
ALFALFA_RMS_MJY, SNR_W50_MAX = 2.2, 400.0
#: Code-1 signal-to-noise threshold of ALFALFA (Haynes et al. 2011, 2018).
CODE1_SNR = 6.5
#: Error of a catalogued log M_HI (dex): sqrt(HI_ERR_FLOOR^2 + (HI_ERR_K / S/N)^2): small at
#: high S/N (flux-scale and distance floor), HI_ERR_AT_CODE1 = 0.20 dex at the Code-1 limit
#: (the ALFALFA catalogued errors near the limit; issue 24). HI_ERR_K follows from the two.
HI_ERR_FLOOR, HI_ERR_AT_CODE1 = 0.04, 0.20
HI_ERR_K = CODE1_SNR * math.sqrt(HI_ERR_AT_CODE1**2 - HI_ERR_FLOOR**2)
#: Stellar-mass error (dex) of the MPA-JHU SED fits (Kauffmann et al. 2003; Brinchmann et
#: al. 2004): ~0.1 dex, Gaussian in log M*.
MSTAR_ERR_DEX = 0.10

# ----------------------------------------------------------------------------- label outliers
#: Share of the ALFALFA-like detections whose label is wrong: a flux confused with a neighbour
#: inside the Arecibo beam or the H I of a neighbour given to the wrong optical counterpart
#: (1-3%: issue 24; Haynes et al. 2011: fewer than 2% of alpha.40 sources have no feasible
#: optical counterpart; Jones et al. 2015 on confusion in ALFALFA). The default.
OUTLIER_FRACTION = 0.02
#: Arecibo beam at 21 cm: FWHM ~3.5' (Giovanelli et al. 2005); the beam response to a
#: neighbour at separation r is exp(-4 ln2 (r / FWHM)^2). Neighbours within one FWHM count.
ARECIBO_BEAM_FWHM_ARCMIN = 3.5

# ----------------------------------------------------------------------- xGASS labels (limits)
#: xGASS observes until detection or a gas-fraction limit (Catinella et al. 2018, Section 2):
#: M_HI/M* >= 1.5% for log M* > 10.5 with a fixed log M_HI = 8.7 between 10 and 10.5
#: (GASS), and 2% for 9 < log M* < 10 (GASS-low). Below it the label is an upper limit.
XGASS_GF_LIMIT_HIGH, XGASS_LOG_MHI_LIMIT_MID, XGASS_GF_LIMIT_LOW = 0.015, 8.7, 0.02
#: xGASS detections are integrated to S/N >~ 5 (Catinella et al. 2018): their error is the
#: H I error model at this S/N or at their ALFALFA S/N if higher.
XGASS_MIN_SNR = 5.0

# -------------------------------------------------------------------------- seeing and depth
#: Per-field r-band seeing (PSF FWHM, arcsec): lognormal around the median with SEEING_SIGMA_LN,
#: clipped to SEEING_RANGE. SDSS: median ~1.3-1.4", about 0.8-2" (Abazajian et al. 2009;
#: Ross et al. 2011); Legacy Survey DR8: median ~1.2-1.3" (Dey et al. 2019). One value per
#: field (FIELD_DEG on a side, about an SDSS field), so neighbours share their seeing.
SDSS_SEEING_MEDIAN, LEGACY_SEEING_MEDIAN, SEEING_SIGMA_LN = 1.35, 1.2, 0.20
SEEING_RANGE = (0.8, 2.6)
FIELD_DEG = 0.25
#: The PSF FWHM in another band scales as wavelength^-0.2 (Kolmogorov turbulence; Fried
#: 1966). Effective wavelengths (nm): SDSS (Fukugita et al. 1996), DECam (Dey et al. 2019).
SEEING_WAVELENGTH_EXPONENT = -0.2
BAND_WAVELENGTH_NM = {"g": 468.6, "r": 616.5, "i": 748.1, "z": 893.1}
#: Sky brightness scatter from field to field (mag/arcsec^2, moon, airmass, zodiacal light):
#: the per-pixel noise scales as 10^(-0.2 d_mu) with d_mu ~ N(0, SKY_SIGMA_MAG), clipped at
#: +-3 sigma (SDSS fields: ~0.3 mag rms in r; Abazajian et al. 2009).
SKY_SIGMA_MAG = 0.25

# ----------------------------------------------------------------------- photometric calibration
#: Zero-point error per field and band (mag, Gaussian): SDSS ~1% in g, r, i after the
#: ubercalibration (Padmanabhan et al. 2008); Legacy-like imaging 2% (assumed: Wu 2020,
#: Section 9, reports inconsistent zero-points between the DR8 bands). It shifts colours.
SDSS_ZP_SIGMA_MAG, LEGACY_ZP_SIGMA_MAG = 0.01, 0.02

# ------------------------------------------------------------------------ Galactic extinction
#: E(B-V) over the footprint: EBV_CSC_B csc|b| (a plane-parallel dust layer, the mean trend of
#: Schlegel et al. 1998 at high latitude) times a lognormal cirrus field of EBV_CIRRUS_SIGMA_LN
#: (a sum of EBV_MODES random plane waves on the sphere, scales EBV_SCALE_DEG).
EBV_CSC_B, EBV_CIRRUS_SIGMA_LN, EBV_MODES, EBV_SCALE_DEG = 0.018, 0.4, 24, (2.0, 15.0)
#: A_band / E(B-V) for R_V = 3.1 (Schlafly & Finkbeiner 2011, Table 6): SDSS and DECam.
EXTINCTION_SDSS = {"g": 3.303, "r": 2.285, "i": 1.698, "z": 1.263}
EXTINCTION_DECAM = {"g": 3.237, "r": 2.176, "z": 1.217}

# ---------------------------------------------------------------------------------- inclination
#: Disc attenuation from face-on to edge-on (mag; Masters et al. 2010, Galaxy Zoo spirals:
#: 0.7, 0.6, 0.5, 0.4 in u, g, r, i; 0.3 estimated in z), applied to the disc light as
#: A_band = INCL_EDGE_ON_MAG[band] log10(a/b) / log10(1/DISC_Q0) (their A = gamma log(a/b)).
INCL_EDGE_ON_MAG = {"g": 0.6, "r": 0.5, "i": 0.4, "z": 0.3}

# --------------------------------------------------------------------- neighbours in the image
#: Close pairs show tidal features: projected separation < TIDAL_RP_KPC (physical) and
#: |dv| < TIDAL_DV_KMS (close-pair definitions of Patton et al. 2013, Ellison et al. 2008);
#: the tails hold TIDAL_FLUX_FRACTION of the galaxy's r light (a few %: Ji et al. 2014).
TIDAL_RP_KPC, TIDAL_DV_KMS, TIDAL_FLUX_FRACTION = 50.0, 500.0, 0.05
#: A companion is a blend when it lies within BLEND_RE_SUM times the sum of the two disc
#: half-light radii (their light overlaps inside the 25 mag/arcsec^2 isophote).
BLEND_RE_SUM = 2.0

# ------------------------------------------------------------------------- shifted imaging
#: The "degraded" imaging: the survey's own bands and stretch with the seeing times
#: DEGRADED_SEEING_FACTOR and the depth DEGRADED_DEPTH_MAG shallower.
DEGRADED_SEEING_FACTOR, DEGRADED_DEPTH_MAG = 1.5, 1.0
