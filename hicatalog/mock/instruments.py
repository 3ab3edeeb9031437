"""The imaging the mock renders with: bands, pixel scale, PSF, depth and JPEG stretch of SDSS,
the Legacy Survey, and the *shifted* imagings that put other images at a survey's geometry.

:data:`SURVEYS` holds the two surveys the method runs on (geometry from
:data:`hicatalog.imaging.IMAGING`); :func:`imaging_spec` gives the spec a mock renders with:
the survey's own, or with ``shifted`` another survey's bands, seeing, depth, extinction
coefficients and stretch at the survey's pixel scale and cutout side (``legacy`` at ``sdss``:
Legacy-like images resampled to SDSS's 0.396"/px), or ``degraded`` (the survey's own, with the
seeing DEGRADED_SEEING_FACTOR times worse and DEGRADED_DEPTH_MAG shallower). The cutouts of a
shifted imaging say the survey of their geometry (``survey = 'sdss'``): that is the point, the
pipeline cannot tell; the truth and ``_mock.json`` record :attr:`SurveySpec.label`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from hicatalog.errors import ConfigError
from hicatalog.imaging import IMAGING
from hicatalog.mock.parameters import (
    BAND_WAVELENGTH_NM,
    DEGRADED_DEPTH_MAG,
    DEGRADED_SEEING_FACTOR,
    EXTINCTION_DECAM,
    EXTINCTION_SDSS,
    LEGACY_SEEING_MEDIAN,
    LEGACY_ZP_SIGMA_MAG,
    SDSS_SEEING_MEDIAN,
    SDSS_ZP_SIGMA_MAG,
)

__all__ = ["SHIFTS", "SURVEYS", "SurveySpec", "imaging_spec", "noise_from_depth"]


@dataclass(frozen=True)
class SurveySpec:
    """Imaging survey: bands, pixel scale (arcsec/px), PSF FWHM (arcsec), sky noise per pixel
    in nanomaggies for each band, the default cutout side (px), the Lupton stretch and the
    weights that map the bands (reddest first) onto R, G, B.

    ``psf_fwhm`` is the one PSF of the clean mock; with the seeing effect each field draws its
    r-band FWHM around ``seeing_median`` (arcsec). ``depths``: 5-sigma point-source depths
    (AB mag, reddest first); ``extinction``: A_band / E(B-V) per band; ``zp_sigma``: the
    per-field zero-point error of each band (mag); ``label``: what the
    truth calls this imaging (``sdss``, ``legacy``, ``legacy@sdss``, ``degraded@sdss``...).
    """

    name: str
    bands: tuple[str, str, str]
    pixel_scale: float
    psf_fwhm: float
    noise_nmgy: tuple[float, float, float]
    default_size: int
    rgb_weights: tuple[float, float, float]
    stretch: float
    q: float
    seeing_median: float = SDSS_SEEING_MEDIAN
    depths: tuple[float, float, float] = (0.0, 0.0, 0.0)
    extinction: tuple[float, float, float] = (0.0, 0.0, 0.0)
    zp_sigma: float = 0.0
    label: str = ""

    def wavelengths_nm(self) -> tuple[float, float, float]:
        """Effective wavelengths of the bands (nm), R, G, B order."""
        return tuple(BAND_WAVELENGTH_NM[b] for b in self.bands)


def noise_from_depth(depth_mag: float, fwhm: float, pixel_scale: float) -> float:
    """Per-pixel noise (nmgy) of a 5-sigma point-source depth with a Gaussian PSF:
    sigma_pix = f_5 / (5 sqrt(N_eff)), N_eff = 4 pi sigma_psf^2 / pixel^2."""
    sig = fwhm / 2.3548 / pixel_scale
    return 10 ** (-0.4 * (depth_mag - 22.5)) / (5 * math.sqrt(4 * math.pi * sig**2))


def _spec(name: str, geometry: str, psf_fwhm: float, depths: tuple[float, float, float],
          rgb_weights: tuple[float, float, float], stretch: float, q: float,
          seeing_median: float, extinction: dict[str, float], zp_sigma: float,
          label: str) -> SurveySpec:
    """Survey ``name``'s bands and imaging at the pixel scale and cutout side of ``geometry``
    (:data:`hicatalog.imaging.IMAGING`)."""
    im, geo = IMAGING[name], IMAGING[geometry]
    noise = tuple(noise_from_depth(d, psf_fwhm, geo.pixel_scale) for d in depths)
    return SurveySpec(name, im.bands, geo.pixel_scale, psf_fwhm, noise, geo.cutout_px,
                      rgb_weights, stretch, q, seeing_median, depths,
                      tuple(extinction[b] for b in im.bands), zp_sigma, label)


#: SDSS DR14 gri: median PSF ~1.4", point-source depths i 21.3, r 22.2, g 22.2
#: (York et al. 2000; Stoughton et al. 2002). Band order (i, r, g) = (R, G, B).
#: Legacy Survey DR8 grz: PSF ~1.1", 5-sigma depths z 22.5, r 23.4, g 24.0
#: (Dey et al. 2019). Band order (z, r, g) = (R, G, B).
_SDSS = dict(psf_fwhm=1.4, depths=(21.3, 22.2, 22.2), rgb_weights=(0.80, 1.0, 1.45),
             stretch=0.9, q=8.0, seeing_median=SDSS_SEEING_MEDIAN, extinction=EXTINCTION_SDSS,
             zp_sigma=SDSS_ZP_SIGMA_MAG)
_LEGACY = dict(psf_fwhm=1.1, depths=(22.5, 23.4, 24.0), rgb_weights=(0.45, 1.0, 1.45),
               stretch=0.4, q=8.0, seeing_median=LEGACY_SEEING_MEDIAN,
               extinction=EXTINCTION_DECAM, zp_sigma=LEGACY_ZP_SIGMA_MAG)
_OWN = {"sdss": _SDSS, "legacy": _LEGACY}

SURVEYS: dict[str, SurveySpec] = {
    name: _spec(name, name, label=name, **kw) for name, kw in _OWN.items()
}

#: The values of ``MockConfig.shifted_imaging`` besides ``none``.
SHIFTS = ("sdss", "legacy", "degraded")


def imaging_spec(imaging: str, shifted: str = "none") -> SurveySpec:
    """The spec a mock of ``imaging`` geometry renders with (module docstring).

    Raises
    ------
    ConfigError: an unknown survey or shift, or a shift to the survey itself.
    """
    if imaging not in SURVEYS:
        raise ConfigError(f"imaging must be one of {sorted(SURVEYS)}, got {imaging!r}",
                          params=("imaging",))
    if shifted == "none":
        return SURVEYS[imaging]
    if shifted == "degraded":
        kw = dict(_OWN[imaging])
        kw["psf_fwhm"] *= DEGRADED_SEEING_FACTOR
        kw["seeing_median"] *= DEGRADED_SEEING_FACTOR
        kw["depths"] = tuple(d - DEGRADED_DEPTH_MAG for d in kw["depths"])
        return _spec(imaging, imaging, label=f"degraded@{imaging}", **kw)
    if shifted not in _OWN or shifted == imaging:
        raise ConfigError(f"shifted_imaging must be one of {[s for s in SHIFTS if s != imaging]} "
                          f"or 'none' for imaging={imaging!r} cutouts, got {shifted!r}",
                          params=("shifted_imaging", "imaging"))
    spec = _spec(shifted, imaging, label=f"{shifted}@{imaging}", **_OWN[shifted])
    return replace(spec, name=imaging)
