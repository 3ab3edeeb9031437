"""The imaging surveys the method runs on, defined once: their names, bands, pixel scales and
the paper's cutout sizes.

Every place that names a survey (the configs, the ``survey`` column of the ``cutouts``
contract, the model card, the cutout services, the mock renderer) takes it from here, so a
survey added or a scale corrected is one edit.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SurveyImaging", "IMAGING", "SURVEYS"]


@dataclass(frozen=True)
class SurveyImaging:
    """One imaging survey as the paper uses it.

    ``name``: the ``survey`` value in tables and cards; ``bands``: the bands behind the JPEG's
    (R, G, B) channels, reddest first; ``pixel_scale``: arcsec/px; ``cutout_px``: the side of
    the paper's cutouts, px.
    """

    name: str
    bands: tuple[str, str, str]
    pixel_scale: float
    cutout_px: int


#: Wu (2020), Section 3: SDSS DR14 gri cutouts of 224 x 224 px at 0.396"/px; Legacy Survey
#: DR8 grz cutouts of 448 x 448 px at 0.262"/px.
IMAGING: dict[str, SurveyImaging] = {
    "sdss": SurveyImaging("sdss", ("i", "r", "g"), 0.396, 224),
    "legacy": SurveyImaging("legacy", ("z", "r", "g"), 0.262, 448),
}

#: The valid ``survey`` values, in a fixed order.
SURVEYS: tuple[str, ...] = tuple(IMAGING)

