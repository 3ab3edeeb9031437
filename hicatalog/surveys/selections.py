"""The paper's sample selections (Wu 2020, Sections 2 and 5.2), each a named, counted step.

Every ``select_*`` function takes the canonical tables of :mod:`hicatalog.surveys.readers`,
appends one :class:`Step` per cut to a :class:`SelectionLog` (sample, step, rows left) and
returns a ``labels`` table (contract ``schemas/labels.json``): ``object_id, ra, dec, z,
log_mstar, log_mhi, m_true, detected, upper_limit, dataset, quality``. ``ra, dec`` are the
optical position (where the cutout is centred); ``m_true = log_mhi - log_mstar`` (dex);
``quality`` flags values outside the typical ranges (:mod:`hicatalog.surveys.quality`; kept).

Samples (``dataset``):

- ``a40A``/``a40B``: alpha.40 with OCcode = I, unique DR7 match (by PhotoObjID), valid M*;
  alpha.40B (a subset) further has valid SFR, metallicity and spectroscopic redshift. Rows of
  alpha.40B carry ``dataset = "a40B"``, so alpha.40A is ``dataset in ("a40A", "a40B")``.
- ``a100``: alpha.100 in the Spring sky matched to MPA-JHU within 5", no other H I source
  within 1.9', no optical neighbour within 55", alpha.40A and xGASS overlaps (5") removed.
- ``nibles``: NIBLES with M* >= 10^8 Msun, ALFALFA and xGASS overlaps (5") removed (the
  paper's visual inspection can be replayed with ``exclude_ids``).
- ``xgass``: the xGASS representative sample, upper limits kept with ``upper_limit = True``.
- ``nondetections``: MPA-JHU galaxies at z < 0.06 in the ALFALFA footprint, not alpha.100
  counterparts (5"), no H I source within an Arecibo beam, no optical neighbour within 55",
  drawn at random to the size of alpha.40A (balanced classes for pattern recognition).

Cross-match radii
-----------------
Every question "are these two tabulated positions the same galaxy?" (an alpha.100 optical
counterpart and an MPA-JHU spectrum; a galaxy of one sample and of another) uses
:data:`SAME_GALAXY_RADIUS_ARCSEC` = 5", chosen from the precision of the positions compared:

- SDSS positions (MPA-JHU, xGASS, the a.40A and a.100 label positions): < 0.1" rms per
  coordinate (Pier et al. 2003, AJ 125, 1559);
- ALFALFA optical counterparts (a.40 ``OCra, OCdec``, a.100 ``RAdeg_OC, DECdeg_OC``): the
  centre of the optical galaxy chosen on SDSS / DSS2 images, catalogued as
  ``hhmmss.s+ddmmss`` (ALFALFA catalog notes; Haynes et al. 2011, 2018): steps of 0.1 s
  (1.5" x cos dec) in RA and 1" in Dec, so up to 0.9" of rounding, plus the choice of centre
  on an extended galaxy (a few arcsec on large nearby discs);
- NIBLES positions: tabulated to ~1" (van Driel et al. 2016).

Two such positions of one galaxy differ by up to ~2" from rounding alone and by 2-4" when the
centres were chosen differently; on the real tables 465 NIBLES galaxies lie within 5" of an
alpha.100 optical position, and the paper's 1" overlap cut removed none of them (the same
galaxy then appeared twice, under two ids). Distinct galaxies are not merged
at 5": the alpha.100 and non-detection samples already require no other MPA-JHU galaxy
within 55" (:data:`OPTICAL_NEIGHBOUR_RADIUS_ARCSEC`). The paper states 1" for the alpha.100
match and the overlap removal; with these catalogs' precision that removes too few overlaps.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from hicatalog.schemas import conform_table, validate_table
from hicatalog.sky import wrap_ra
from hicatalog.surveys.crossmatch import has_neighbour, nearest_match
from hicatalog.surveys.quality import quality_flags

__all__ = [
    "SAME_GALAXY_RADIUS_ARCSEC",
    "HI_BLEND_RADIUS_ARCMIN",
    "OPTICAL_NEIGHBOUR_RADIUS_ARCSEC",
    "ARECIBO_BEAM_RADIUS_ARCMIN",
    "NIBLES_MIN_LOG_MSTAR",
    "NONDETECTION_MAX_Z",
    "SPRING_SKY",
    "ALFALFA_FOOTPRINT",
    "Step",
    "SelectionLog",
    "in_footprint",
    "select_a40",
    "select_a100",
    "select_xgass",
    "select_nibles",
    "select_nondetections",
    "combine_labels",
]

log = logging.getLogger("hicatalog.surveys.selections")

#: Two positions closer than this (arcsec) are the same galaxy: the a.100 optical counterpart
#: to MPA-JHU match, every overlap removal between samples, and the non-detections' "not an
#: a.100 counterpart". From the positions' precision: see "Cross-match radii" above.
SAME_GALAXY_RADIUS_ARCSEC = 5.0
#: No other H I source within this radius of an a.100 source (arcmin; ALFALFA blending).
HI_BLEND_RADIUS_ARCMIN = 1.9
#: No other MPA-JHU galaxy within this radius (arcsec; SDSS fibre collisions).
OPTICAL_NEIGHBOUR_RADIUS_ARCSEC = 55.0
#: Radius of the Arecibo (ALFA) beam, ~3.5' FWHM (arcmin): non-detections have no H I source
#: this close.
ARECIBO_BEAM_RADIUS_ARCMIN = 1.75
#: NIBLES galaxies below this stellar mass are removed (log10 Msun).
NIBLES_MIN_LOG_MSTAR = 8.0
#: Non-detections are drawn from galaxies below this redshift (ALFALFA's z <= 0.06).
NONDETECTION_MAX_Z = 0.06

#: Footprint boxes ``(ra_min, ra_max, dec_min, dec_max)`` in deg; ra_min > ra_max wraps 0h.
SPRING_SKY = ((112.5, 247.5, 0.0, 36.0),)  # 07h30m-16h30m
ALFALFA_FOOTPRINT = ((112.5, 247.5, 0.0, 36.0), (330.0, 45.0, 0.0, 36.0))  # + fall 22h-03h


@dataclass(frozen=True)
class Step:
    """One selection step: the sample, the step's name, the rows left after it."""

    sample: str
    step: str
    n_after: int
    description: str = ""


@dataclass
class SelectionLog:
    """The ordered steps of all selections (the counts of a Table 1-like summary)."""

    steps: list[Step] = field(default_factory=list)

    def add(self, sample: str, step: str, mask_or_n, description: str = "") -> None:
        n = int(np.sum(mask_or_n)) if isinstance(mask_or_n, np.ndarray) else int(mask_or_n)
        self.steps.append(Step(sample, step, n, description))
        log.info("%-14s %-48s %8d", sample, step, n)

    def to_table(self) -> pa.Table:
        """``sample, step, n_after, description`` rows in order."""
        return pa.Table.from_pylist([s.__dict__ for s in self.steps], schema=pa.schema([
            ("sample", pa.string()), ("step", pa.string()), ("n_after", pa.int64()),
            ("description", pa.string()),
        ]))

    def count(self, sample: str, step: str) -> int:
        """Rows left after ``step`` of ``sample`` (KeyError if it was not run)."""
        for s in self.steps:
            if s.sample == sample and s.step == step:
                return s.n_after
        raise KeyError(f"no step {step!r} for sample {sample!r}")


def _np(table: pa.Table) -> dict[str, np.ndarray]:
    return {c: table.column(c).to_numpy(zero_copy_only=False) for c in table.column_names}


def in_footprint(ra: np.ndarray, dec: np.ndarray, boxes=ALFALFA_FOOTPRINT) -> np.ndarray:
    """Whether each (ra, dec) in deg lies in one of the ``(ra_min, ra_max, dec_min, dec_max)``
    boxes (``ra_min > ra_max`` wraps through ra = 0)."""
    ra = wrap_ra(ra)
    dec = np.asarray(dec, float)
    inside = np.zeros(len(ra), dtype=bool)
    with np.errstate(invalid="ignore"):
        for ra0, ra1, d0, d1 in boxes:
            in_ra = (ra >= ra0) & (ra <= ra1) if ra0 <= ra1 else (ra >= ra0) | (ra <= ra1)
            inside |= in_ra & (dec >= d0) & (dec <= d1)
    return inside


def _labels(object_id, ra, dec, z, log_mstar, log_mhi, detected, upper_limit, dataset) -> pa.Table:
    n = len(object_id)
    log_mstar = np.asarray(log_mstar, float)
    log_mhi = np.asarray(log_mhi, float) if log_mhi is not None else np.full(n, np.nan)
    m_true = log_mhi - log_mstar

    def f32(a):
        a = np.asarray(a, float)
        return pa.array(a.astype(np.float32), mask=~np.isfinite(a))

    z = np.asarray(z, float)
    table = pa.table({
        "object_id": pa.array([str(o) for o in object_id], pa.string()),
        "ra": pa.array(np.asarray(ra, float)),
        "dec": pa.array(np.asarray(dec, float)),
        "z": pa.array(z, mask=~np.isfinite(z)),
        "log_mstar": f32(log_mstar),
        "log_mhi": f32(log_mhi),
        "m_true": f32(m_true),
        "detected": pa.array(np.broadcast_to(detected, n).astype(bool)),
        "upper_limit": pa.array(np.broadcast_to(upper_limit, n).astype(bool)),
        "dataset": pa.array(np.broadcast_to(np.asarray(dataset, dtype=object), n).tolist(),
                            pa.string()),
        "quality": pa.array(quality_flags(log_mhi=log_mhi, log_mstar=log_mstar, m_true=m_true),
                            pa.int32()),
    })
    return conform_table(table, "labels", "labels")


# ---------------------------------------------------------------------------------------------


def select_a40(a40: pa.Table, a40_sdss: pa.Table, mpa: pa.Table, slog: SelectionLog) -> pa.Table:
    """alpha.40A (and its subset alpha.40B) from alpha.40, its SDSS cross-match and MPA-JHU.

    Steps: ``OCcode = I``; has a DR7 PhotoObjID; duplicate DR7 matches dropped (a PhotoObjID
    claimed by several alpha.40 sources, or matching several MPA-JHU spectra, drops them all);
    in MPA-JHU; valid M* (-> alpha.40A); valid SFR, metallicity and spectroscopic redshift
    (-> alpha.40B). An empty alpha.40B next to a non-empty alpha.40A logs one warning naming
    the missing inputs (without the MPA-JHU SFR and O/H files no galaxy can be alpha.40B).
    """
    s = "a40"
    a = _np(a40)
    slog.add(s, "read a.40", len(a["agc"]))
    keep = a["oc_code"] == "I"
    slog.add(s, "OCcode = I", keep)

    x = _np(a40_sdss)
    key_of_agc = dict(zip(x["agc"].tolist(), x["photo_key"].tolist(), strict=True))
    key = np.array([key_of_agc.get(int(g), -1) for g in a["agc"]], dtype=np.int64)
    keep &= key >= 0
    slog.add(s, "has a DR7 PhotoObjID", keep)

    m = _np(mpa)
    mpa_keys, mpa_counts = np.unique(m["photo_key"], return_counts=True)
    kept_keys, kept_counts = np.unique(key[keep], return_counts=True)
    shared = set(kept_keys[kept_counts > 1].tolist())
    multi_spec = set(mpa_keys[mpa_counts > 1].tolist())
    dup = np.array([k in shared or k in multi_spec for k in key.tolist()])
    keep &= ~dup
    slog.add(s, "duplicate DR7 matches dropped", keep)

    row_of_key = {k: i for i, k in enumerate(m["photo_key"].tolist())}
    mrow = np.array([row_of_key.get(k, -1) if ok else -1
                     for k, ok in zip(key.tolist(), keep, strict=True)])
    keep &= mrow >= 0
    slog.add(s, "in MPA-JHU DR7", keep)
    safe = np.where(mrow >= 0, mrow, 0)
    log_mstar = np.where(mrow >= 0, m["log_mstar"][safe], np.nan)
    keep &= np.isfinite(log_mstar) & np.isfinite(a["log_mhi"])
    slog.add("a40A", "valid stellar mass -> a.40A", keep)

    z = m["z"][safe]
    b = keep & np.isfinite(m["log_sfr"][safe]) & np.isfinite(m["oh"][safe]) \
        & np.isfinite(z) & (z > 0) & m["z_ok"][safe]
    slog.add("a40B", "valid SFR, metallicity, spec-z -> a.40B", b)
    if keep.any() and not b.any():
        log.warning("a.40B is empty (a.40A has %d galaxies): %s", int(keep.sum()),
                    _a40b_missing(m))

    idx = np.flatnonzero(keep)
    return _labels(
        [f"AGC{g}" for g in a["agc"][idx]],
        m["ra"][mrow[idx]], m["dec"][mrow[idx]], z[idx], log_mstar[idx], a["log_mhi"][idx],
        True, False, np.where(b[idx], "a40B", "a40A"),
    )


def _a40b_missing(m: dict[str, np.ndarray]) -> str:
    """Why no a.40A galaxy qualifies for a.40B, naming the inputs that are entirely missing."""
    missing = [what for col, what in (
        ("log_sfr", "mpa_sfr (MPA-JHU gal_totsfr_dr7_v5_2.fits)"),
        ("oh", "mpa_oh (MPA-JHU gal_fiboh_dr7_v5_2.fits)"),
    ) if not np.isfinite(m[col]).any()]
    if missing:
        return "missing input " + " and ".join(missing)
    return "no a.40A galaxy has a valid SFR, 12+log O/H and spectroscopic redshift"


def select_xgass(xgass: pa.Table, slog: SelectionLog) -> pa.Table:
    """The xGASS representative sample; valid M*; upper limits on M_HI kept and flagged."""
    x = _np(xgass)
    slog.add("xgass", "read xGASS representative sample", len(x["ra"]))
    keep = np.isfinite(x["log_mstar"]) & np.isfinite(x["log_mhi"]) \
        & np.isfinite(x["ra"]) & np.isfinite(x["dec"])
    slog.add("xgass", "valid M* and M_HI (or its upper limit)", keep)
    slog.add("xgass", "of which upper limits", keep & x["upper_limit"])
    i = np.flatnonzero(keep)
    return _labels(
        [f"GASS{g}" for g in x["xgass_id"][i]], x["ra"][i], x["dec"][i], x["z"][i],
        x["log_mstar"][i], x["log_mhi"][i], ~x["upper_limit"][i], x["upper_limit"][i], "xgass",
    )


def select_a100(
    a100: pa.Table,
    mpa: pa.Table,
    a40a: pa.Table,
    xgass: pa.Table,
    slog: SelectionLog,
    footprint=SPRING_SKY,
) -> pa.Table:
    """alpha.100 test sample (paper Section 2.2).

    ``a40a`` and ``xgass`` are *labels* tables (the selected alpha.40A and xGASS samples);
    overlaps with them are removed by position (:data:`SAME_GALAXY_RADIUS_ARCSEC`) and, for
    alpha.40A, by AGC number.
    """
    s = "a100"
    a, m = _np(a100), _np(mpa)
    slog.add(s, "read a.100", len(a["agc"]))
    keep = in_footprint(a["ra_hi"], a["dec_hi"], footprint)
    slog.add(s, "in the ALFALFA Spring sky", keep)

    j, _ = nearest_match(a["ra_oc"], a["dec_oc"], m["ra"], m["dec"], SAME_GALAXY_RADIUS_ARCSEC)
    keep &= j >= 0
    slog.add(s, f'MPA-JHU galaxy within {SAME_GALAXY_RADIUS_ARCSEC:g}"', keep)

    blended = has_neighbour(a["ra_hi"], a["dec_hi"], a["ra_hi"], a["dec_hi"],
                            HI_BLEND_RADIUS_ARCMIN * 60.0, exclude_same_index=True)
    keep &= ~blended
    slog.add(s, f"no other H I source within {HI_BLEND_RADIUS_ARCMIN:g}'", keep)

    jj = np.where(j >= 0, j, 0)
    crowded = np.zeros(len(keep), dtype=bool)
    crowded[keep] = has_neighbour(m["ra"][jj[keep]], m["dec"][jj[keep]], m["ra"], m["dec"],
                                  OPTICAL_NEIGHBOUR_RADIUS_ARCSEC, exclude=jj[keep])
    keep &= ~crowded
    slog.add(s, f'no optical neighbour within {OPTICAL_NEIGHBOUR_RADIUS_ARCSEC:g}"', keep)

    ra, dec = np.where(j >= 0, m["ra"][jj], np.nan), np.where(j >= 0, m["dec"][jj], np.nan)
    la, lx = _np(a40a), _np(xgass)
    in_a40 = has_neighbour(ra, dec, la["ra"], la["dec"], SAME_GALAXY_RADIUS_ARCSEC)
    in_a40 |= np.isin(np.array([f"AGC{g}" for g in a["agc"]]), la["object_id"])
    in_xgass = has_neighbour(ra, dec, lx["ra"], lx["dec"], SAME_GALAXY_RADIUS_ARCSEC)
    keep &= ~in_a40 & ~in_xgass
    slog.add(s, f'a.40A and xGASS overlaps ({SAME_GALAXY_RADIUS_ARCSEC:g}") removed', keep)

    log_mstar = np.where(j >= 0, m["log_mstar"][jj], np.nan)
    keep &= np.isfinite(log_mstar) & np.isfinite(a["log_mhi"])
    slog.add(s, "valid stellar mass", keep)
    i = np.flatnonzero(keep)
    return _labels([f"AGC{g}" for g in a["agc"][i]], ra[i], dec[i], m["z"][jj[i]],
                   log_mstar[i], a["log_mhi"][i], True, False, "a100")


def select_nibles(
    nibles: pa.Table,
    alfalfa: list[pa.Table],
    xgass: pa.Table,
    slog: SelectionLog,
    exclude_ids: list[str] | None = None,
) -> pa.Table:
    """NIBLES test sample (paper Section 2.3): M* >= 10^8 Msun, optional visual rejections
    (``exclude_ids``, NIBLES ids), overlaps with the ALFALFA label tables and xGASS
    (:data:`SAME_GALAXY_RADIUS_ARCSEC`) removed."""
    s = "nibles"
    n = _np(nibles)
    slog.add(s, "read NIBLES", len(n["ra"]))
    with np.errstate(invalid="ignore"):
        keep = np.isfinite(n["log_mstar"]) & (n["log_mstar"] >= NIBLES_MIN_LOG_MSTAR) \
            & np.isfinite(n["log_mhi"])
    slog.add(s, f"valid M* >= 10^{NIBLES_MIN_LOG_MSTAR:g} Msun", keep)
    if exclude_ids:
        keep &= ~np.isin(n["nibles_id"].astype(str), np.asarray(exclude_ids, dtype=str))
        slog.add(s, "visual inspection rejections removed", keep)
    overlap = has_neighbour(n["ra"], n["dec"], _np(xgass)["ra"], _np(xgass)["dec"],
                            SAME_GALAXY_RADIUS_ARCSEC)
    for t in alfalfa:
        c = _np(t)
        overlap |= has_neighbour(n["ra"], n["dec"], c["ra"], c["dec"], SAME_GALAXY_RADIUS_ARCSEC)
    keep &= ~overlap
    slog.add(s, f'ALFALFA and xGASS overlaps ({SAME_GALAXY_RADIUS_ARCSEC:g}") removed', keep)
    i = np.flatnonzero(keep)
    return _labels([f"NIBLES{k}" for k in n["nibles_id"][i]], n["ra"][i], n["dec"][i],
                   n["z"][i], n["log_mstar"][i], n["log_mhi"][i], True, False, "nibles")


def select_nondetections(
    mpa: pa.Table,
    a100: pa.Table,
    n_draw: int,
    slog: SelectionLog,
    seed: int = 0,
    footprint=ALFALFA_FOOTPRINT,
) -> pa.Table:
    """ALFALFA non-detections for pattern recognition (paper Section 5.2).

    MPA-JHU galaxies with 0 < z < 0.06 inside ``footprint``, not an alpha.100 counterpart
    (:data:`SAME_GALAXY_RADIUS_ARCSEC` from an optical position), no alpha.100 H I position
    within an Arecibo beam radius, no
    optical neighbour within 55" (the alpha.100 cut), then ``n_draw`` of them at random
    (``seed``; all of them if fewer) to balance alpha.40A.
    """
    s = "nondetections"
    m, a = _np(mpa), _np(a100)
    slog.add(s, "read MPA-JHU DR7", len(m["ra"]))
    with np.errstate(invalid="ignore"):
        keep = np.isfinite(m["z"]) & (m["z"] > 0) & (m["z"] < NONDETECTION_MAX_Z) & m["z_ok"]
    slog.add(s, f"0 < z < {NONDETECTION_MAX_Z:g}", keep)
    keep &= in_footprint(m["ra"], m["dec"], footprint)
    slog.add(s, "inside the ALFALFA footprint", keep)
    keep &= ~has_neighbour(m["ra"], m["dec"], a["ra_oc"], a["dec_oc"], SAME_GALAXY_RADIUS_ARCSEC)
    slog.add(s, f'not an a.100 counterpart ({SAME_GALAXY_RADIUS_ARCSEC:g}")', keep)
    keep &= ~has_neighbour(m["ra"], m["dec"], a["ra_hi"], a["dec_hi"],
                           ARECIBO_BEAM_RADIUS_ARCMIN * 60.0)
    slog.add(s, f"no H I source within the Arecibo beam ({ARECIBO_BEAM_RADIUS_ARCMIN:g}')", keep)
    idx = np.flatnonzero(keep)
    crowded = has_neighbour(m["ra"][idx], m["dec"][idx], m["ra"], m["dec"],
                            OPTICAL_NEIGHBOUR_RADIUS_ARCSEC, exclude=idx)
    keep[idx[crowded]] = False
    slog.add(s, f'no optical neighbour within {OPTICAL_NEIGHBOUR_RADIUS_ARCSEC:g}"', keep)
    idx = np.flatnonzero(keep)
    if len(idx) < n_draw:
        log.warning("only %d non-detections available, %d asked for", len(idx), n_draw)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(idx, size=min(n_draw, len(idx)), replace=False))
    slog.add(s, f"random draw to balance a.40A (n={n_draw})", len(idx))
    return _labels([f"SDSS{o}" for o in m["specobjid"][idx]], m["ra"][idx], m["dec"][idx],
                   m["z"][idx], m["log_mstar"][idx], None, False, False, "nondetections")


def combine_labels(parts: list[pa.Table], source: str = "labels",
                   allow_empty: bool = False) -> pa.Table:
    """Concatenate selected samples into one validated ``labels`` table (unique object_id)."""
    table = pa.concat_tables(parts) if parts else _labels([], [], [], [], [], [], True, False, "")
    validate_table(table, "labels", source, allow_empty=allow_empty)
    return table
