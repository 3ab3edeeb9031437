"""The imaged samples of a mock survey: which galaxies become cutouts, and the whole generator.

:func:`generate_population` builds the volume (:mod:`hicatalog.mock.volume`), gives its
galaxies stars, H I and a detection (:mod:`hicatalog.mock.galaxies`), keeps the ones brighter
than the optical limit as *tracers* (the NSA-like neighbour catalog), gives them what a survey
would catalogue (:mod:`hicatalog.mock.labels`) and draws the *imaged* samples from them:
ALFALFA-like detections, as many non-detections (the PR classes), and an xGASS-like sample
(Catinella et al. 2018) for out-of-distribution tests (the paper's balanced samples), or the
magnitude-limited ``survey``: tracers at z < SURVEY_Z_MAX drawn uniformly, detections and
non-detections at the survey's own rate. No images are made here (see
:mod:`hicatalog.mock.observing` and :mod:`hicatalog.mock.render`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from hicatalog.errors import ConfigError
from hicatalog.mock.columns import Galaxies
from hicatalog.mock.effects import Effects
from hicatalog.mock.galaxies import add_gas_and_detection, add_stellar_properties
from hicatalog.mock.labels import add_cutout_labels, add_measurements
from hicatalog.mock.parameters import (
    NONDET_Z_MAX,
    OUTLIER_FRACTION,
    R_MAG_LIMIT,
    SURVEY_Z_MAX,
    XGASS_HIGH_LOG_MSTAR,
    XGASS_HIGH_Z,
    XGASS_LOW_LOG_MSTAR,
    XGASS_LOW_Z,
    XGASS_SHARE,
)
from hicatalog.mock.volume import MAX_AREA_DEG2, VOLUME_CHUNK, generate_volume, true_overdensity

log = logging.getLogger("hicatalog.mock.samples")

__all__ = [
    "POOL_FACTOR", "POPULATIONS", "Population", "generate_population", "population_counts",
    "selection_r_mag",
]

#: The imaged populations: the values of the ``population`` column. The first three are the
#: paper's balanced samples (``"all"`` mixes them); ``survey`` is the magnitude-limited survey.
POPULATIONS = ("alfalfa", "nondetections", "xgass", "survey", "survey_deep")
#: Each imaged population takes at most 1/POOL_FACTOR of the galaxies that qualify for it, so
#: the imaged samples stay random subsets of a real survey; the footprint grows until they do.
POOL_FACTOR = 1.5


@dataclass
class Population:
    """A generated mock survey.

    ``tracers``: every galaxy above the optical limit, :data:`~hicatalog.mock.columns.
    TRACER_COLUMNS` (1-D arrays of length ``n_tracers``, row i has object id
    ``mock-<tag>-<i:07d>``). ``imaged``: the ``n`` imaged galaxies in cutout order,
    :data:`~hicatalog.mock.columns.IMAGED_COLUMNS` (the tracer columns plus ``population`` and
    ``tracer_index``; the render parameters are :data:`hicatalog.mock.render.RENDER_COLUMNS`).
    ``area_deg2``: footprint area (deg^2); ``seed``: the seed it was made with.
    """

    tracers: Galaxies
    imaged: Galaxies
    area_deg2: float
    seed: int


def population_counts(n: int, population: str) -> dict[str, int]:
    """How many imaged galaxies of each of :data:`POPULATIONS` a request for ``n`` of
    ``population`` means: all ``n`` of one, or for ``"all"`` a share XGASS_SHARE of xGASS-like
    galaxies and the rest split evenly between detections and non-detections (detections get
    the odd one), no ``survey`` galaxies."""
    if population != "all":
        return {p: (n if p == population else 0) for p in POPULATIONS}
    n_x = int(round(XGASS_SHARE * n)) if n >= 3 else 0
    n_det = (n - n_x + 1) // 2
    return {"alfalfa": n_det, "nondetections": n - n_x - n_det, "xgass": n_x, "survey": 0,
            "survey_deep": 0}


def _select(rng, pool: np.ndarray, k: int, weights: np.ndarray | None = None) -> np.ndarray:
    """``k`` distinct entries of ``pool`` (int64 indices), sorted, with probabilities
    proportional to ``weights`` (uniform if None)."""
    if k == 0:
        return np.empty(0, dtype=np.int64)
    p = None if weights is None else weights / weights.sum()
    return np.sort(rng.choice(pool, size=k, replace=False, p=p))


def _imaged_pools(t: Galaxies) -> dict[str, np.ndarray]:
    """For each of :data:`POPULATIONS`, the int64 indices of the tracers ``t`` that qualify."""
    xg = np.zeros(len(t["z"]), bool)
    for (m0, m1), (z0, z1) in ((XGASS_LOW_LOG_MSTAR, XGASS_LOW_Z),
                               (XGASS_HIGH_LOG_MSTAR, XGASS_HIGH_Z)):
        xg |= (t["log_mstar"] >= m0) & (t["log_mstar"] < m1) & (t["z"] >= z0) & (t["z"] < z1)
    return {
        "xgass": np.flatnonzero(xg),
        "alfalfa": np.flatnonzero(t["detected"]),
        "nondetections": np.flatnonzero(~t["detected"] & (t["z"] < NONDET_Z_MAX)),
        # the magnitude-limited survey: every tracer (r within the optical limit) inside z_max
        "survey": np.flatnonzero(t["z"] < SURVEY_Z_MAX),
        # the same survey observed as deep as xGASS (labels: mock.labels.add_cutout_labels)
        "survey_deep": np.flatnonzero(t["z"] < SURVEY_Z_MAX),
    }


def selection_r_mag(v: Galaxies, effects: Effects) -> np.ndarray:
    """The r magnitude the optical limit is applied to: ``r_mag``, dimmed by the disc's
    inclination attenuation (``a_r_incl`` on the disc's share ``1 - bt`` of the light) when
    ``effects.inclination`` (the SDSS main sample selects on observed, Galactic-extinction
    corrected magnitudes, so edge-on discs drop out first)."""
    if not effects.inclination:
        return v["r_mag"]
    return v["r_mag"] - 2.5 * np.log10(v["bt"] + (1 - v["bt"]) * 10 ** (-0.4 * v["a_r_incl"]))


def _tracers(area: float, rng: np.random.Generator, rng_real: np.random.Generator,
             sigma_int: float, effects: Effects, outlier_fraction: float) -> Galaxies:
    """The tracers of a volume of ``area`` deg2: stellar properties and the optical limit
    chunk by chunk (only tracers are ever held whole), the true overdensity, H I, detection
    and measurements. ``rng`` draws the clean model, ``rng_real`` the effects."""
    vol = generate_volume(area, rng, r_limit=R_MAG_LIMIT)
    parts = []
    for c0 in range(0, max(len(vol["ra"]), 1), VOLUME_CHUNK):
        chunk = {k: a[c0:c0 + VOLUME_CHUNK] for k, a in vol.items()}
        add_stellar_properties(chunk, rng)
        keep = selection_r_mag(chunk, effects) <= R_MAG_LIMIT
        parts.append({k: a[keep] for k, a in chunk.items()})
    del vol, chunk
    t = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    del parts
    t["one_plus_delta5_true"], t["d5_true_mpc"] = true_overdensity(t["ra"], t["dec"], t["z_cos"])
    flux_noise = rng_real.standard_normal(len(t["ra"]))
    add_gas_and_detection(t, rng, sigma_int, flux_noise if effects.label_noise else None)
    add_measurements(t, rng_real, effects, outlier_fraction)
    return t


def _draw_imaged(t: Galaxies, want: dict[str, int], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The tracer indices imaged in each population, drawn without replacement from its pool
    (xGASS-like first, flat in log M*; the others uniformly)."""
    pools = _imaged_pools(t)
    chosen: dict[str, np.ndarray] = {}
    taken = np.zeros(len(t["ra"]), bool)
    for p in ("xgass", "alfalfa", "nondetections", "survey", "survey_deep"):
        pool = pools[p][~taken[pools[p]]]
        if want[p] > len(pool):
            raise RuntimeError(f"mock volume has only {len(pool)} {p} galaxies, need {want[p]}")
        weights = None
        if p == "xgass":  # flat in log M*: weight by the inverse of the pool's mass density
            hist, edges = np.histogram(t["log_mstar"][pool], bins=15)
            b = np.clip(np.digitize(t["log_mstar"][pool], edges) - 1, 0, 14)
            weights = 1.0 / np.maximum(hist[b], 1)
        chosen[p] = _select(rng, pool, want[p], weights)
        taken[chosen[p]] = True
    return chosen


def _first_area(want: dict[str, int]) -> float:
    """A first guess of the footprint (deg2) whose pools hold POOL_FACTOR x ``want`` of each
    population, from the imaged galaxies per deg2 of each pool measured on this model (the
    survey pool, every tracer: 21.5-22.1 per deg2 realistic, 25-26 clean; the smaller is used)."""
    per_deg2 = {"alfalfa": 9.0, "nondetections": 15.0, "xgass": 3.0, "survey": 22.0,
                "survey_deep": 22.0}
    area = max(max(1.1 * POOL_FACTOR * want[p] / per_deg2[p] for p in POPULATIONS if want[p]),
               1.0)
    return min(area, MAX_AREA_DEG2)


def generate_population(
    n: int, seed: int = 0, sigma_int: float = 0.20, population: str = "all",
    survey_tag: str | None = None, effects: Effects | None = None,
    outlier_fraction: float = OUTLIER_FRACTION,
) -> Population:
    """Generate the mock survey: tracers (every galaxy above the optical limit) and the
    ``n`` imaged galaxies of ``population`` (``alfalfa``, ``nondetections``, ``xgass``,
    ``all``, see :func:`population_counts`, or ``survey``), deterministic for ``seed``.

    The volume (:func:`~hicatalog.mock.volume.generate_volume`) gets its stellar properties
    and the optical limit R_MAG_LIMIT chunk by chunk (only tracers are held whole), then the
    tracers get their true overdensity (on their cosmological redshifts), their H I and their
    detection, and the imaged galaxies are drawn from the pools of each population without
    replacement (xGASS-like ones flat in log M*). ``survey`` draws uniformly from every tracer
    at z < SURVEY_Z_MAX, not balanced: its detections and non-detections come at the survey's
    own rate, and its non-detections carry ALFALFA upper limits
    (:func:`~hicatalog.mock.labels.add_cutout_labels`). ``sigma_int``: standard deviation of the
    irreducible part of M (dex); ``survey_tag``: the middle of the object ids (default
    ``s<seed>``); ``effects``: the real difficulties of the labels and of the selection
    (:class:`~hicatalog.mock.effects.Effects`, default all on; :meth:`Effects.none` is the
    clean mock): the measured flux decides the detection, the measurements and outliers
    (:func:`hicatalog.mock.labels.add_measurements`, ``outlier_fraction`` of the detections)
    and the cutout labels (:func:`~hicatalog.mock.labels.add_cutout_labels`) come from a
    random stream of their own, so the clean draws are the same whatever is switched on.
    Returns a :class:`Population` (columns: :mod:`hicatalog.mock.columns`).

    The footprint grows until the pools of every requested population are large enough (the
    imaged share of a pool is at most 1/POOL_FACTOR, so that tracers stay a real survey).

    Raises
    ------
    ConfigError: bad ``n``/``population``, or ``n`` larger than one mock sky holds (~200k).
    """
    if n < 1:
        raise ConfigError(f"n must be >= 1 imaged galaxies, got {n}", params=("n",))
    if population not in (*POPULATIONS, "all"):
        raise ConfigError(f"population must be one of {(*POPULATIONS, 'all')}, got {population!r}",
                          params=("population",))
    want = population_counts(n, population)
    area = _first_area(want)
    effects = Effects() if effects is None else effects
    for attempt in range(12):
        rng = np.random.default_rng([seed, 0xA11FA, attempt])
        t = _tracers(area, rng, np.random.default_rng([seed, 0x4EA15, attempt]), sigma_int,
                     effects, outlier_fraction)
        pools = _imaged_pools(t)
        short = [p for p in POPULATIONS if want[p] and len(pools[p]) < POOL_FACTOR * want[p]]
        if not short:
            break
        if area >= MAX_AREA_DEG2 * 0.999:
            raise ConfigError(
                f"n={n} imaged galaxies do not fit one mock sky (the largest footprint, "
                f"{MAX_AREA_DEG2:.0f} deg2, holds {({p: len(pools[p]) for p in short})} "
                f"candidates, {POOL_FACTOR}x the request is needed); use several runs with "
                "different seeds", params=("n",)
            )
        grow = max(POOL_FACTOR * want[p] / max(len(pools[p]), 1) for p in short)
        log.debug("mock footprint %.1f deg2 too small for %s; growing x%.2f", area, short, grow)
        area = min(area * min(max(grow * 1.15, 1.3), 20.0), MAX_AREA_DEG2)
    else:  # pragma: no cover - the growth converges in a few steps
        raise RuntimeError(f"could not build a volume with {want} imaged galaxies")
    n_t = len(t["ra"])
    tag = f"s{seed}" if survey_tag is None else survey_tag
    t["object_id"] = np.array([f"mock-{tag}-{i:07d}" for i in range(n_t)], dtype=object)

    chosen = _draw_imaged(t, want, rng)
    idx = np.concatenate([chosen[p] for p in POPULATIONS])
    labels = np.concatenate([np.full(len(chosen[p]), p, dtype=object) for p in POPULATIONS])
    perm = rng.permutation(len(idx))
    idx, labels = idx[perm], labels[perm]
    imaged = {k: a[idx] for k, a in t.items()}
    imaged["population"] = labels
    # Per-galaxy render seed: the galaxy's index in the tracer catalog (stable for a seed).
    imaged["tracer_index"] = idx.astype(np.int64)
    add_cutout_labels(imaged, effects)
    log.info(
        "mock volume: %.0f deg2, %d tracers, %d detected, imaged %s",
        area, n_t, int(t["detected"].sum()), {p: len(chosen[p]) for p in POPULATIONS},
    )
    return Population(tracers=t, imaged=imaged, area_deg2=area, seed=seed)
