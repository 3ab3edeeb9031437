"""Rendering mock cutouts: bulge + inclined disc + spiral arms + star-forming knots, PSF,
sky noise, foreground stars and background galaxies, Lupton asinh stretch, JPEG.

One galaxy is rendered at a time on a *stamp* only as large as it needs (``STAMP_RE`` disc
half-light radii, clipped to the frame), added into the frame together with point sources
(knots, stars) and background galaxies; one separable Gaussian PSF kernel (precomputed per
survey and image size) convolves the frame; Gaussian sky noise is added; astropy's
``make_lupton_rgb`` maps the three bands to 8-bit RGB and Pillow encodes the JPEG.

With the image effects (:class:`hicatalog.mock.effects.Effects`, the row's
:data:`~hicatalog.mock.columns.OBSERVING_COLUMNS` from :mod:`hicatalog.mock.observing`) the
same image also gets: the disc light attenuated and reddened by its inclination
(``inclination``), the companions where the tracers put them and tidal tails for a close pair
(``neighbours``), the Galactic extinction of its sky position (``extinction``), its field's
zero-point errors (``calibration``), its field's PSF, one kernel per band with FWHM ~
wavelength^-0.2 (``seeing``), and its field's sky noise (``sky_noise``). Without them the image is the clean mock's, byte for byte.

Fluxes are SDSS nanomaggies (``m = 22.5 - 2.5 log10 f``) per pixel. Every random draw of a
galaxy's image comes from ``np.random.default_rng([seed, galaxy_index])`` (a companion's and a
tidal tail's from streams of their own keyed by the seed and the galaxy), so an image depends
only on the seed and the galaxy, never on the worker or the batch that renders it.
"""

from __future__ import annotations

import io
import math
from functools import cache

import numpy as np
from astropy.visualization import make_lupton_rgb
from PIL import Image
from scipy.ndimage import correlate1d

from hicatalog.mock.effects import Effects
from hicatalog.mock.galaxies import disc_attenuation
from hicatalog.mock.instruments import SURVEYS, SurveySpec
from hicatalog.mock.parameters import (
    BULGE_RE_FRACTION,
    GR_ARM,
    GR_BULGE,
    GR_KNOT,
    RI_A,
    RI_B,
    RZ_A,
    RZ_B,
    SEEING_WAVELENGTH_EXPONENT,
    TIDAL_FLUX_FRACTION,
)

__all__ = [
    "SurveySpec",
    "SURVEYS",
    "default_image_size",
    "render_galaxy_flux",
    "to_rgb",
    "encode_jpeg",
    "render_cutout",
    "RENDER_COLUMNS",
    "OBSERVING_RENDER_COLUMNS",
]

#: JPEG quality of the encoded cutouts (SkyServer-like; Pillow's 4:2:0 chroma subsampling).
JPEG_QUALITY = 85
#: Stamp half-size in disc half-light radii (an exponential disc holds >99.9% of its light
#: within ~6 r_e of its centre along the major axis).
STAMP_RE = 6.0
#: Central softening of the Sersic n=4 bulge in px (keeps the cusp finite on the pixel grid;
#: each component is renormalised to its total flux on the stamp).
BULGE_SOFTENING_PX = 0.35
#: Variance (px^2 per axis) a point source gains from the pixel grid: split bilinearly over 4
#: pixels (or a compact profile sampled at pixel centres) at a uniform sub-pixel offset f it
#: is f(1 - f), 1/6 on average. The seeing effect's kernel leaves it room.
SUBPIXEL_VARIANCE_PX2 = 1.0 / 6.0
#: Sersic n=4 b_n constant (Ciotti & Bertin 1999).
B_N4 = 7.669
#: Foreground stars per arcmin^2 with 14 < r < 22 at high Galactic latitude (Bahcall &
#: Soneira 1980; SDSS star counts) and the slope of their counts, d log N / dm.
STAR_DENSITY_ARCMIN2, STAR_COUNT_SLOPE, STAR_MAG_RANGE = 0.5, 0.15, (14.0, 22.0)
#: Background galaxies per arcmin^2 with 18 < r < 22.5 and their count slope (Yasuda et al.
#: 2001: d log N / dm ~ 0.45 in r); half-light radii 0.3-1.2 arcsec.
BGAL_DENSITY_ARCMIN2, BGAL_COUNT_SLOPE, BGAL_MAG_RANGE = 2.0, 0.45, (18.0, 22.5)
BGAL_RE_ARCSEC = (0.3, 1.2)


#: Streams of the companions' and tidal tails' draws: rng([seed, TAG, tracer index]).
COMPANION_STREAM, TIDAL_STREAM = 0xC0B, 0x71DA1

#: Columns of the imaged galaxies that the renderer reads (:mod:`hicatalog.mock.columns`).
RENDER_COLUMNS = (
    "tracer_index", "r_mag", "d_a_mpc", "re_disc_kpc", "bt", "axis_ratio", "cos_incl",
    "pa_deg", "pitch_deg", "gr_disc", "arm_frac", "knot_frac", "knots_mean",
)
#: Columns of :data:`hicatalog.mock.columns.OBSERVING_COLUMNS` the image effects read, plus the
#: ``companions`` list (:data:`hicatalog.mock.observing.COMPANION_FIELDS`).
OBSERVING_RENDER_COLUMNS = ("seeing_fwhm_arcsec", "sky_noise_factor", "zp_red_mag", "zp_r_mag",
                            "zp_g_mag", "ebv", "tidal")


def default_image_size(survey: str) -> int:
    """224 px for SDSS, 448 px for Legacy (the paper's cutouts)."""
    return SURVEYS[survey].default_size


@cache
def _psf_kernel(fwhm_px: float) -> np.ndarray:
    """Normalised 1-D Gaussian PSF kernel (separable), float32, +-4 sigma; cached (the clean
    mock's one PSF per survey)."""
    return _gaussian_kernel(fwhm_px)


def _gaussian_kernel(fwhm_px: float) -> np.ndarray:
    """Normalised 1-D Gaussian kernel of FWHM ``fwhm_px``, float32, +-4 sigma."""
    sig = fwhm_px / 2.3548
    half = max(1, int(math.ceil(4 * sig)))
    x = np.arange(-half, half + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sig) ** 2)
    return (k / k.sum()).astype(np.float32)


def _band_fluxes(f_r: np.ndarray | float, g_r: np.ndarray | float, survey: SurveySpec):
    """Fluxes (R, G, B order of ``survey.bands``) for r-band flux ``f_r`` and colour g-r."""
    g_r = np.asarray(g_r, dtype=np.float64)
    f_r = np.asarray(f_r, dtype=np.float64)
    f_g = f_r * 10 ** (-0.4 * g_r)
    if survey.bands[0] == "i":
        f_red = f_r * 10 ** (0.4 * (RI_A + RI_B * g_r))
    else:
        f_red = f_r * 10 ** (0.4 * (RZ_A + RZ_B * g_r))
    return np.stack([f_red, f_r, f_g])


def _splat_points(frame: np.ndarray, x: np.ndarray, y: np.ndarray, flux: np.ndarray) -> None:
    """Add point sources (bilinear split over 4 pixels) into ``frame`` (3, H, W) in place.

    ``x``, ``y``: pixel coordinates (float); ``flux``: (3, N) band fluxes."""
    h, w = frame.shape[1:]
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = x - x0, y - y0
    for dx, dy, wt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                       (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xi, yi = x0 + dx, y0 + dy
        ok = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
        if not ok.any():
            continue
        flat = yi[ok] * w + xi[ok]
        for b in range(3):
            np.add.at(frame[b].reshape(-1), flat, (flux[b, ok] * wt[ok]).astype(np.float32))


def _gaussian_blob(frame: np.ndarray, x: float, y: float, sig: float, q: float, pa: float,
                   flux: np.ndarray) -> None:
    """Add an elliptical Gaussian (sigma ``sig`` px along the major axis) into ``frame``."""
    h, w = frame.shape[1:]
    half = int(math.ceil(3.5 * sig)) + 1
    x0, x1 = max(0, int(x) - half), min(w, int(x) + half + 1)
    y0, y1 = max(0, int(y) - half), min(h, int(y) + half + 1)
    if x0 >= x1 or y0 >= y1:
        return
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] - x
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] - y
    c, s = math.cos(pa), math.sin(pa)
    u = dx * c + dy * s
    v = (-dx * s + dy * c) / q
    prof = np.exp(-0.5 * (u * u + v * v) / (sig * sig))
    tot = float(prof.sum())
    if tot <= 0:
        return
    prof /= tot
    frame[:, y0:y1, x0:x1] += flux[:, None, None].astype(np.float32) * prof[None]


def _add_field(frame: np.ndarray, survey: SurveySpec, rng: np.random.Generator) -> None:
    """Foreground stars (point sources) and faint background galaxies over the frame."""
    h, w = frame.shape[1:]
    area = h * w * (survey.pixel_scale / 60.0) ** 2  # arcmin^2

    def mags(n, lo_hi, slope):
        lo, hi = lo_hi
        a, b = 10 ** (slope * lo), 10 ** (slope * hi)
        return np.log10(a + rng.random(n) * (b - a)) / slope

    n_star = rng.poisson(STAR_DENSITY_ARCMIN2 * area)
    if n_star:
        m = mags(n_star, STAR_MAG_RANGE, STAR_COUNT_SLOPE)
        gr = rng.uniform(0.3, 1.4, n_star)
        flux = _band_fluxes(10 ** (-0.4 * (m - 22.5)), gr, survey)
        _splat_points(frame, rng.uniform(0, w - 1, n_star), rng.uniform(0, h - 1, n_star), flux)
    n_bg = rng.poisson(BGAL_DENSITY_ARCMIN2 * area)
    for _ in range(n_bg):
        m = mags(1, BGAL_MAG_RANGE, BGAL_COUNT_SLOPE)[0]
        flux = _band_fluxes(10 ** (-0.4 * (m - 22.5)), rng.uniform(0.5, 1.3), survey)
        re_px = rng.uniform(*BGAL_RE_ARCSEC) / survey.pixel_scale
        _gaussian_blob(frame, rng.uniform(0, w), rng.uniform(0, h), re_px / 1.1774,
                       rng.uniform(0.3, 1.0), rng.uniform(0, math.pi), flux)


def _stamp_box(xc: float, yc: float, half: int, h_fr: int, w_fr: int,
               clip: bool) -> tuple[int, int, int, int]:
    """``(x0, x1, y0, y1)`` px of a stamp of half-side ``half`` around (``xc``, ``yc``):
    clipped to the (``h_fr``, ``w_fr``) frame, or (``clip`` false) the whole stamp bounded to
    three frames around it."""
    if clip:
        return (max(0, int(xc) - half), min(w_fr, int(xc) + half + 2),
                max(0, int(yc) - half), min(h_fr, int(yc) + half + 2))
    ix, iy = math.floor(xc), math.floor(yc)
    return (max(-w_fr, ix - half), min(2 * w_fr, ix + half + 2),
            max(-h_fr, iy - half), min(2 * h_fr, iy + half + 2))


def _add_stamp(frame: np.ndarray, stamp: np.ndarray, x0: int, y0: int) -> None:
    """Add the part of ``stamp`` (3, h, w) whose corner is at (``x0``, ``y0``) px that falls
    inside ``frame`` (3, H, W), in place."""
    h, w = stamp.shape[1:]
    fx0, fx1 = max(x0, 0), min(x0 + w, frame.shape[2])
    fy0, fy1 = max(y0, 0), min(y0 + h, frame.shape[1])
    if fx0 < fx1 and fy0 < fy1:
        frame[:, fy0:fy1, fx0:fx1] += stamp[:, fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]


def _add_galaxy(frame: np.ndarray, params: dict, survey: SurveySpec, xc: float, yc: float,
                rng: np.random.Generator, att: np.ndarray | None = None,
                clip_stamp: bool = True) -> None:
    """Add one galaxy (disc, arms, bulge, knots) centred at (``xc``, ``yc``) px into ``frame``
    (3, H, W) in place; ``rng``: the spiral phase, then the knots.

    ``att``: per-band factors (3,) dimming the disc light (disc, arms, knots; not the bulge),
    or None. ``clip_stamp``: the stamp is clipped to the frame before each component is
    normalised to its flux (the central galaxy, as the clean mock always did); else the whole
    stamp is normalised and the part inside the frame is added (a companion near the edge
    keeps only its light that falls inside).
    """
    h_fr, w_fr = frame.shape[1:]
    kpc_per_px = params["d_a_mpc"] * 1e3 * math.radians(survey.pixel_scale / 3600.0)
    re_px = max(params["re_disc_kpc"] / kpc_per_px, 0.3)
    h_px = re_px / 1.678
    reb_px = max(BULGE_RE_FRACTION * re_px, 0.3)
    q = float(params["axis_ratio"])
    qb = math.sqrt(params["cos_incl"] ** 2 * (1 - 0.65**2) + 0.65**2)
    pa = math.radians(params["pa_deg"])
    cpa, spa = math.cos(pa), math.sin(pa)

    x0, x1, y0, y1 = _stamp_box(xc, yc, int(math.ceil(STAMP_RE * re_px)) + 2, h_fr, w_fr,
                                clip_stamp)
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(xc)
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(yc)
    u = dx * cpa + dy * spa
    w_sky = -dx * spa + dy * cpa
    v = w_sky / q
    r = np.sqrt(u * u + v * v)
    rh = r / np.float32(h_px)
    disc = np.exp(-rh)
    tan_p = math.tan(math.radians(params["pitch_deg"]))
    phi0 = rng.uniform(0, 2 * math.pi)
    phase = 2.0 * (np.arctan2(v, u) - np.log(rh + np.float32(0.05)) / np.float32(tan_p)) + phi0
    arm = disc * (1.0 - np.exp(-rh * rh)) * ((1.0 + np.cos(phase)) * 0.5) ** 3
    rb = np.sqrt(u * u + (w_sky / qb) ** 2 + BULGE_SOFTENING_PX**2) / np.float32(reb_px)
    bulge = np.exp(-B_N4 * (np.sqrt(np.sqrt(rb)) - 1.0))

    f_r = 10 ** (-0.4 * (params["r_mag"] - 22.5))
    bt = float(params["bt"])
    f_disc = (1 - bt) * f_r
    f_arm = params["arm_frac"] * f_disc
    f_knot = params["knot_frac"] * f_disc
    comps = np.stack([disc, arm, bulge]).reshape(3, -1)
    comps /= np.maximum(comps.sum(axis=1, keepdims=True), 1e-30)
    fluxes = np.stack([
        _band_fluxes(f_disc - f_arm - f_knot, params["gr_disc"], survey),
        _band_fluxes(f_arm, GR_ARM, survey),
        _band_fluxes(bt * f_r, GR_BULGE, survey),
    ], axis=1).astype(np.float32)  # (band, component)
    if att is not None:
        fluxes[:, :2] *= att.astype(np.float32)[:, None]
    _add_stamp(frame, (fluxes @ comps).reshape(3, y1 - y0, x1 - x0), x0, y0)

    knot_flux = _band_fluxes(f_knot, GR_KNOT, survey) if f_knot > 0 else None
    if knot_flux is not None and att is not None:
        knot_flux = knot_flux * att
    n_knots = min(int(rng.poisson(params["knots_mean"])), 80)
    if n_knots and f_knot > 0:
        rk = rng.gamma(2.0, h_px, n_knots)
        th = (np.log(rk / h_px + 0.05) / tan_p - phi0 / 2 + math.pi * rng.integers(0, 2, n_knots)
              + 0.35 * rng.standard_normal(n_knots))
        ku, kv = rk * np.cos(th), rk * np.sin(th) * q
        kx = xc + ku * cpa - kv * spa
        ky = yc + ku * spa + kv * cpa
        kf = rng.lognormal(0.0, 0.6, n_knots)
        kf *= f_knot / kf.sum()
        flux = _band_fluxes(kf, GR_KNOT, survey)
        _splat_points(frame, kx, ky, flux if att is None else flux * att[:, None])
    elif f_knot > 0:  # no resolved knots: the star-forming light stays in the arms
        spread = (knot_flux.astype(np.float32)[:, None] * comps[1:2]).reshape(3, y1 - y0, x1 - x0)
        _add_stamp(frame, spread, x0, y0)


def _add_tidal_tails(frame: np.ndarray, params: dict, survey: SurveySpec, xc: float, yc: float,
                     rng: np.random.Generator) -> None:
    """Two tidal tails, opposite each other and curving the same way, from 1.2 to 4.7 disc
    half-light radii: TIDAL_FLUX_FRACTION of the galaxy's r light in 2 x 10 Gaussian knots
    widening outwards, in the colour of its disc."""
    kpc_per_px = params["d_a_mpc"] * 1e3 * math.radians(survey.pixel_scale / 3600.0)
    re_px = max(params["re_disc_kpc"] / kpc_per_px, 0.3)
    f_tail = TIDAL_FLUX_FRACTION * 10 ** (-0.4 * (params["r_mag"] - 22.5))
    theta0 = rng.uniform(0, 2 * math.pi)
    curl = rng.choice([-1.0, 1.0]) * rng.uniform(0.6, 1.4)
    t = np.linspace(0.0, 1.0, 10)
    weight = (1.0 - 0.6 * t) / (2 * (1.0 - 0.6 * t).sum())
    for side in (0.0, math.pi):
        radius = re_px * (1.2 + 3.5 * t)
        angle = theta0 + side + curl * t
        for k in range(t.size):
            flux = _band_fluxes(f_tail * weight[k], params["gr_disc"], survey)
            _gaussian_blob(frame, xc + radius[k] * math.cos(angle[k]),
                           yc + radius[k] * math.sin(angle[k]), re_px * (0.25 + 0.35 * t[k]),
                           1.0, 0.0, flux)


def _disc_factors(axis_ratio: float, survey: SurveySpec) -> np.ndarray:
    """Per-band flux factors (3,) of a disc's inclination attenuation (Masters et al. 2010)."""
    a = np.array([float(disc_attenuation(np.asarray(axis_ratio), b)) for b in survey.bands])
    return 10 ** (-0.4 * a)


def _psf_fwhm_px(seeing_r: float, survey: SurveySpec) -> list[float]:
    """The FWHM (px) of the PSF kernel in each band of ``survey`` for a recorded r-band seeing
    ``seeing_r`` (arcsec): FWHM ~ wavelength^SEEING_WAVELENGTH_EXPONENT (Kolmogorov
    turbulence), less the spread of placing a point on the pixel grid (SUBPIXEL_VARIANCE_PX2
    per axis, in quadrature), so that point sources measure the recorded seeing on average."""
    lam = survey.wavelengths_nm()
    spread = 8 * math.log(2) * SUBPIXEL_VARIANCE_PX2  # FWHM^2 of that variance
    out = []
    for x in lam:
        fwhm = seeing_r * (x / lam[1]) ** SEEING_WAVELENGTH_EXPONENT / survey.pixel_scale
        out.append(math.sqrt(max(fwhm**2 - spread, 0.25 * fwhm**2)))
    return out


def render_galaxy_flux(params: dict, survey: SurveySpec, size: int,
                       rng: np.random.Generator, effects: Effects | None = None,
                       seed: int = 0) -> np.ndarray:
    """The noiseless-then-noisy flux image of one galaxy and its field.

    ``params``: one row of the render columns (:data:`RENDER_COLUMNS`, scalars); with image
    ``effects`` also :data:`OBSERVING_RENDER_COLUMNS` and ``companions`` (a list of dicts of
    :data:`hicatalog.mock.observing.COMPANION_FIELDS`); ``seed``: the mock's seed (the
    companions' and tails' streams). Returns float32 ``(3, size, size)`` in nanomaggies per
    pixel, bands in R, G, B order of ``survey.bands`` (PSF-convolved, sky noise added,
    sky-subtracted).
    """
    fx = effects if effects is not None else Effects.none()
    frame = np.zeros((3, size, size), dtype=np.float32)
    xc = (size - 1) / 2 + rng.uniform(-0.5, 0.5)
    yc = (size - 1) / 2 + rng.uniform(-0.5, 0.5)
    att = _disc_factors(params["axis_ratio"], survey) if fx.inclination else None
    _add_galaxy(frame, params, survey, xc, yc, rng, att)
    if fx.neighbours:
        for c in params.get("companions") or ():
            c_rng = np.random.default_rng([seed, COMPANION_STREAM, int(c["tracer_index"])])
            _add_galaxy(frame, c, survey, xc + c["dx_px"], yc + c["dy_px"], c_rng,
                        _disc_factors(c["axis_ratio"], survey) if fx.inclination else None,
                        clip_stamp=False)
        if params.get("tidal"):
            t_rng = np.random.default_rng([seed, TIDAL_STREAM, int(params["tracer_index"])])
            _add_tidal_tails(frame, params, survey, xc, yc, t_rng)

    _add_field(frame, survey, rng)
    if fx.extinction:
        ext = 10 ** (-0.4 * np.asarray(survey.extinction) * float(params["ebv"]))
        frame *= ext.astype(np.float32)[:, None, None]
    if fx.calibration:
        zp = np.array([params["zp_red_mag"], params["zp_r_mag"], params["zp_g_mag"]], float)
        frame *= (10 ** (-0.4 * zp)).astype(np.float32)[:, None, None]
    if fx.seeing:
        for b, fwhm_px in enumerate(_psf_fwhm_px(float(params["seeing_fwhm_arcsec"]), survey)):
            kernel = _gaussian_kernel(fwhm_px)
            frame[b] = correlate1d(correlate1d(frame[b], kernel, axis=0, mode="constant"),
                                   kernel, axis=1, mode="constant")
    else:
        kernel = _psf_kernel(round(survey.psf_fwhm / survey.pixel_scale, 4))
        frame = correlate1d(frame, kernel, axis=1, mode="constant")
        frame = correlate1d(frame, kernel, axis=2, mode="constant")
    noise = rng.standard_normal((3, size, size), dtype=np.float32)
    sigma = np.asarray(survey.noise_nmgy, dtype=np.float32)
    if fx.sky_noise:
        sigma = sigma * np.float32(params["sky_noise_factor"])
    frame += noise * sigma[:, None, None]
    return frame


def to_rgb(frame: np.ndarray, survey: SurveySpec) -> np.ndarray:
    """Lupton et al. (2004) asinh stretch (astropy ``make_lupton_rgb``) of a (3, H, W) flux
    image to ``uint8`` (H, W, 3)."""
    wr, wg, wb = survey.rgb_weights
    with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 on empty pixels maps to 0
        return make_lupton_rgb(frame[0] * wr, frame[1] * wg, frame[2] * wb,
                           minimum=0.0, stretch=survey.stretch, Q=survey.q)


def encode_jpeg(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """JPEG bytes of an ``uint8`` (H, W, 3) image (Pillow, baseline, 4:2:0)."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality, subsampling=2)
    return buf.getvalue()


def render_cutout(params: dict, survey: str | SurveySpec, size: int, seed: int,
                  effects: Effects | None = None) -> bytes:
    """JPEG bytes of one mock cutout; deterministic for (``seed``, ``params['tracer_index']``).

    ``params``: a row of the population's render columns (and, with image ``effects``, its
    observing columns and companions: :func:`render_galaxy_flux`); ``size``: cutout side (px)
    at the survey's pixel scale (a smaller size is a smaller field of view); ``effects``:
    None or :meth:`Effects.none` for the clean image.
    """
    spec = SURVEYS[survey] if isinstance(survey, str) else survey
    rng = np.random.default_rng([seed, int(params["tracer_index"])])
    flux = render_galaxy_flux(params, spec, size, rng, effects, seed)
    return encode_jpeg(to_rgb(flux, spec))
