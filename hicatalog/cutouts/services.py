"""Cutout services: the URL of one galaxy's JPEG cutout, and the size it must have.

Two public services are known (the paper's Section 2 and its Legacy Survey tests):

- ``sdss``: SDSS DR14 SkyServer Image Cutout service, ``ImgCutout/getjpeg`` with query
  parameters ``ra``, ``dec`` (deg), ``scale`` (arcsec/px), ``width``, ``height`` (px) and
  ``opt`` (drawing options; empty: the plain gri composite). Paper: 224 x 224 px at the native
  0.396"/px.
- ``legacy``: the Legacy Survey sky viewer, ``cutout.jpg`` with ``ra``, ``dec`` (deg),
  ``layer`` (e.g. ``dr8``), ``pixscale`` (arcsec/px) and ``size`` (px). Paper: 448 x 448 px at
  0.262"/px from DR8 grz.

Base URLs are configurable so tests (and mirrors) can point anywhere. A base URL is the
service's whole endpoint, path included, without the query string, which :meth:`CutoutService.url`
appends: :data:`SDSS_DR14_URL` or e.g. ``http://127.0.0.1:8765/dr14/SkyServerWS/ImgCutout/getjpeg``
for ``sdss``, :data:`LEGACY_VIEWER_URL` or e.g. ``http://127.0.0.1:8765/viewer/cutout.jpg`` for
``legacy`` (``hicatalog fetch --help`` says the same; a test keeps the two in step).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from hicatalog.errors import ConfigError
from hicatalog.imaging import IMAGING

__all__ = [
    "SDSS_DR14_URL",
    "LEGACY_VIEWER_URL",
    "CutoutService",
    "sdss_service",
    "legacy_service",
    "make_service",
]

#: SkyServer DR14 Image Cutout service (JPEG).
SDSS_DR14_URL = "https://skyserver.sdss.org/dr14/SkyServerWS/ImgCutout/getjpeg"
#: Legacy Survey viewer JPEG cutouts.
LEGACY_VIEWER_URL = "https://www.legacysurvey.org/viewer/cutout.jpg"


@dataclass(frozen=True)
class CutoutService:
    """How to ask one service for a square JPEG cutout centred on (ra, dec).

    Attributes
    ----------
    survey: ``"sdss"`` or ``"legacy"`` (written to the ``survey`` column of the shards).
    base_url: endpoint without query string.
    size: side of the requested (and expected) image in px.
    pixscale: arcsec per px.
    layer: Legacy viewer layer (ignored for SDSS).
    """

    survey: str
    base_url: str
    size: int
    pixscale: float
    layer: str = "dr8"

    @property
    def host(self) -> str:
        """``host:port`` of the service: the key of its rate limit."""
        return urlsplit(self.base_url).netloc

    def url(self, ra: float, dec: float) -> str:
        """The cutout URL for one position (ra, dec in degrees, ICRS)."""
        if self.survey == "sdss":
            query = {
                "ra": f"{ra:.7f}", "dec": f"{dec:.7f}", "scale": f"{self.pixscale:g}",
                "width": self.size, "height": self.size, "opt": "",
            }
        else:
            query = {
                "ra": f"{ra:.7f}", "dec": f"{dec:.7f}", "layer": self.layer,
                "pixscale": f"{self.pixscale:g}", "size": self.size,
            }
        return f"{self.base_url}?{urlencode(query)}"


def sdss_service(
    base_url: str | None = None, size: int | None = None, pixscale: float | None = None
) -> CutoutService:
    """SDSS DR14 SkyServer ``getjpeg`` (defaults: 224 px at 0.396"/px, the paper's choice)."""
    d = IMAGING["sdss"]
    return CutoutService("sdss", base_url or SDSS_DR14_URL, size or d.cutout_px,
                         pixscale or d.pixel_scale)


def legacy_service(
    base_url: str | None = None,
    layer: str = "dr8",
    size: int | None = None,
    pixscale: float | None = None,
) -> CutoutService:
    """Legacy Survey viewer ``cutout.jpg`` (defaults: layer dr8, 448 px at 0.262"/px)."""
    d = IMAGING["legacy"]
    return CutoutService(
        "legacy", base_url or LEGACY_VIEWER_URL, size or d.cutout_px, pixscale or d.pixel_scale,
        layer,
    )


def make_service(
    survey: str,
    base_url: str | None = None,
    layer: str = "dr8",
    size: int | None = None,
    pixscale: float | None = None,
) -> CutoutService:
    """The service for ``survey`` (``"sdss"`` or ``"legacy"``).

    Raises
    ------
    ConfigError: unknown survey, or a base URL that is not http(s), has no path (only a host)
        or carries a query string or fragment.
    """
    if base_url is not None:
        parts = urlsplit(base_url)
        example = {"sdss": SDSS_DR14_URL, "legacy": LEGACY_VIEWER_URL}.get(survey, SDSS_DR14_URL)
        if parts.scheme not in ("http", "https"):
            raise ConfigError(f"base_url must be an http:// or https:// URL, got {base_url!r}",
                              params=("base_url",))
        if parts.path in ("", "/") or parts.query or parts.fragment:
            raise ConfigError(
                f"base_url must be the service's whole endpoint, path included and without a "
                f"query string (hicatalog adds ?ra=...), e.g. {example} for {survey}; got "
                f"{base_url!r}", params=("base_url",))
    if survey == "sdss":
        return sdss_service(base_url, size, pixscale)
    if survey == "legacy":
        return legacy_service(base_url, layer, size, pixscale)
    raise ConfigError(f"unknown survey {survey!r}; expected 'sdss' or 'legacy'",
                      params=("survey",))
