"""``hicatalog mock``: generate the population, render the cutouts, write the tables.

Output (``out`` = DIR)::

    DIR/cutouts/part-NNNNN.parquet   cutouts contract + labels (m_true = the label as a survey
                                     measures it, detected, log_mstar = the catalogued M*,
                                     one_plus_delta5 = true 1+delta5, dataset; upper_limit
                                     with the measured_labels effect), rows_per_shard rows
    DIR/tracers.parquet              every galaxy above the optical limit (tracers contract)
    DIR/truth.parquet                every part of M per imaged galaxy, the true and measured
                                     values and what each effect did (truth contract)
    DIR/_mock.json                   the configuration, effects and counts of the run

On the clean mock (every effect off) the label columns are the true values and the truth has
no effect columns: the mock of before, byte for byte. Shard ``k`` always holds imaged rows
``[k * rows_per_shard, (k + 1) * rows_per_shard)`` and every image depends only on (seed,
galaxy), so the local path and the Ray Data path (one task per shard:
``ray.data.range(n_shards).map_batches(...)``, each task renders and writes its shard,
streaming) write byte-identical shards whatever the number of workers.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from hicatalog.cutouts.shards import write_shard
from hicatalog.mock.columns import TRUTH_EFFECT_COLUMNS, Galaxies
from hicatalog.mock.effects import EFFECTS, Effects
from hicatalog.mock.instruments import SurveySpec, imaging_spec
from hicatalog.mock.observing import observe
from hicatalog.mock.render import (
    OBSERVING_RENDER_COLUMNS,
    RENDER_COLUMNS,
    default_image_size,
    render_cutout,
)
from hicatalog.mock.samples import Population, generate_population
from hicatalog.runtime import init_ray
from hicatalog.schemas import conform_table, table_spec
from hicatalog.storage import filesystem_and_path, join, write_json_atomic, write_parquet_atomic

log = logging.getLogger("hicatalog.mock")

__all__ = [
    "LOCAL_MAX_ROWS",
    "MockPlan",
    "generate_mock",
    "mock_arguments",
    "show_result",
    "plan_mock",
    "imaged_table",
    "render_shard",
    "tracers_table",
    "truth_table",
]

#: Below this many cutouts (and with one worker) ``engine="auto"`` renders in-process.
LOCAL_MAX_ROWS = 4096
#: Columns of the imaged table carried to the renderers (besides the render parameters).
_LABEL_COLUMNS = ("object_id", "ra", "dec", "z", "m_label", "label_is_limit", "detected",
                  "log_mstar_obs", "one_plus_delta5_true", "population")
_SHARD_NAME = "part"


def tracers_table(pop: Population) -> pa.Table:
    """The tracers contract: object_id, ra, dec, z (observed) of every tracer."""
    t = pop.tracers
    table = pa.table({
        "object_id": pa.array(t["object_id"].tolist(), pa.string()),
        "ra": t["ra"], "dec": t["dec"], "z": t["z"],
    })
    return conform_table(table, "tracers", "mock tracers")


def truth_table(pop: Population, obs: Galaxies | None = None, spec: SurveySpec | None = None,
                effects: Effects | None = None) -> pa.Table:
    """The truth contract for the imaged galaxies (in cutout order): every contract column,
    cast to the contract's type (NaN written as null). ``obs``: the observing columns
    (:func:`hicatalog.mock.observing.observe`), ``spec``: the imaging; the effect columns
    (:data:`~hicatalog.mock.columns.TRUTH_EFFECT_COLUMNS`) are written when ``effects.any``,
    so the clean mock's truth is the one from before the effects."""
    im = pop.imaged
    src = dict(im)
    if obs is not None:
        src.update(obs)
    n = len(im["ra"])
    with_effects = effects is not None and effects.any
    if with_effects:
        partner = im["outlier_partner"]
        ids = pop.tracers["object_id"]
        src["outlier_partner_id"] = np.array([ids[k] if k >= 0 else None for k in partner],
                                             dtype=object)
        src["imaging"] = np.full(n, spec.label if spec is not None else "", dtype=object)
    cols = {}
    for f in table_spec("truth").schema:
        if f.name in TRUTH_EFFECT_COLUMNS and not with_effects:
            continue
        v = src[f.name]
        cols[f.name] = (pa.array(v.tolist(), pa.string()) if v.dtype == object
                        else pa.array(v.astype(f.type.to_pandas_dtype()), from_pandas=True))
    return conform_table(pa.table(cols), "truth", "mock truth")


def imaged_table(pop: Population, obs: Galaxies | None = None,
                 companions: pa.Array | None = None) -> pa.Table:
    """The imaged galaxies' labels and render parameters, one row per cutout, in order; with
    ``obs`` also the observing columns the renderer reads and the ``companions`` list."""
    im = pop.imaged
    cols = {c: im[c] for c in RENDER_COLUMNS}
    for c in _LABEL_COLUMNS:
        v = im[c]
        cols[c] = pa.array(v.tolist(), pa.string()) if v.dtype == object else v
    if obs is not None:
        for c in OBSERVING_RENDER_COLUMNS:
            cols[c] = obs[c]
        cols["companions"] = companions
    return pa.table(cols)


def _shard_bounds(n_rows: int, rows_per_shard: int) -> list[tuple[int, int]]:
    return [(s, min(n_rows, s + rows_per_shard)) for s in range(0, n_rows, rows_per_shard)]


def render_shard(rows: pa.Table, survey: str, size: int, seed: int,
                 spec: SurveySpec | None = None, effects: Effects | None = None) -> pa.Table:
    """Render the cutouts of ``rows`` (a slice of :func:`imaged_table`) into a cutouts table.

    ``survey``: the ``survey`` column (the geometry); ``spec``: the imaging to render with
    (default: that survey's own); ``effects``: the realism (default: the clean mock).
    Returns the cutouts contract with labels: object_id, ra, dec, z, survey, image (JPEG),
    m_true (the label as measured, float32, null where none), detected (bool), log_mstar
    (catalogued, float32), one_plus_delta5 (the true 1+delta5, float32), dataset ('alfalfa' |
    'nondetections' | 'xgass' | 'survey') and, with the measured_labels effect, upper_limit.
    """
    effects = Effects.none() if effects is None else effects
    spec = imaging_spec(survey) if spec is None else spec
    names = RENDER_COLUMNS + (OBSERVING_RENDER_COLUMNS if effects.image else ())
    params = {c: rows.column(c).to_numpy() for c in names}
    comps = rows.column("companions").to_pylist() if effects.neighbours else None
    images = []
    for i in range(rows.num_rows):
        p = {c: params[c][i] for c in names}
        if comps is not None:
            p["companions"] = comps[i]
        images.append(render_cutout(p, spec, size, seed, effects))
    table = pa.table({
        "object_id": rows.column("object_id"),
        "ra": rows.column("ra"), "dec": rows.column("dec"), "z": rows.column("z"),
        "survey": pa.array([survey] * rows.num_rows, pa.string()),
        "image": pa.array(images, pa.binary()),
        "m_true": pa.array(rows.column("m_label").to_numpy().astype(np.float32), from_pandas=True),
        "detected": rows.column("detected"),
        "log_mstar": rows.column("log_mstar_obs").cast(pa.float32()),
        "one_plus_delta5": pa.array(rows.column("one_plus_delta5_true").to_numpy().astype(np.float32),
                           from_pandas=True),
        "dataset": rows.column("population"),
    })
    if effects.measured_labels:
        table = table.append_column("upper_limit", rows.column("label_is_limit"))
    return table


def _render_and_write(table: pa.Table, shard: int, bounds: tuple[int, int], out_dir: str,
                      survey: str, size: int, seed: int, spec: SurveySpec | None = None,
                      effects: Effects | None = None) -> tuple[int, str, int]:
    start, stop = bounds
    cut = render_shard(table.slice(start, stop - start), survey, size, seed, spec, effects)
    path = write_shard(cut, out_dir, _SHARD_NAME, shard, contract="cutouts")
    return shard, path, cut.num_rows


class _ShardWriter:
    """Ray Data UDF: for each shard index in the batch, render and write that shard."""

    def __call__(self, batch: dict[str, np.ndarray], table_ref, bounds, out_dir, survey,
                 size, seed, spec, effects) -> dict[str, np.ndarray]:
        import ray

        table = ray.get(table_ref) if isinstance(table_ref, ray.ObjectRef) else table_ref
        shards, paths, rows = [], [], []
        for k in batch["id"].tolist():
            s, p, n = _render_and_write(table, int(k), bounds[int(k)], out_dir, survey, size,
                                        seed, spec, effects)
            shards.append(s)
            paths.append(p)
            rows.append(n)
        return {"shard": np.array(shards), "path": np.array(paths), "rows": np.array(rows)}


def _run_ray(table: pa.Table, bounds, out_dir, survey, size, seed, workers, spec,
             effects) -> list[str]:
    import ray

    init_ray()
    table_ref = ray.put(table)
    ds = ray.data.range(len(bounds), override_num_blocks=len(bounds))
    ds = ds.map_batches(
        _ShardWriter(), batch_size=1, num_cpus=1,
        compute=None if workers is None
        else ray.data.TaskPoolStrategy(size=max(1, min(workers, len(bounds)))),
        fn_kwargs={"table_ref": table_ref, "bounds": bounds, "out_dir": out_dir,
                   "survey": survey, "size": size, "seed": seed, "spec": spec,
                   "effects": effects},
    )
    results = sorted(ds.take_all(), key=lambda r: int(r["shard"]))
    if [int(r["shard"]) for r in results] != list(range(len(bounds))):
        raise RuntimeError(f"Ray Data rendered shards {[r['shard'] for r in results]}, "
                           f"expected 0..{len(bounds) - 1}")
    return [str(r["path"]) for r in results]


def _remove_stale_shards(out_dir: str, n_shards: int) -> None:
    """Delete ``part-NNNNN.parquet`` left by an earlier, larger run in the same directory."""
    fs, base = filesystem_and_path(out_dir)
    info = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
    pat = re.compile(rf"^{_SHARD_NAME}-(\d+)\.parquet$")
    for f in info:
        m = pat.match(f.base_name)
        if m and int(m.group(1)) >= n_shards:
            log.info("removing stale shard %s from an earlier run", f.path)
            fs.delete_file(f.path)


@dataclass
class MockPlan:
    """Everything a mock renders from, before any file is written: the population, how each
    imaged galaxy is observed, the imaging and effects, and the table the renderers read
    (:func:`imaged_table`) with its shard bounds. ``args``: the keyword arguments of
    :func:`generate_mock` (:func:`mock_arguments`); ``size``: cutout side (px)."""

    args: SimpleNamespace
    size: int
    effects: Effects
    spec: SurveySpec
    pop: Population
    obs: Galaxies
    table: pa.Table
    bounds: list[tuple[int, int]]

    def render_shard(self, k: int, out_dir: str) -> tuple[int, str, int]:
        """Render and write shard ``k`` into ``out_dir``: ``(k, path, rows)``."""
        return _render_and_write(self.table, k, self.bounds[k], out_dir, self.args.imaging,
                                 self.size, self.args.seed, self.spec, self.effects)


def mock_arguments(**params: Any) -> SimpleNamespace:
    """The keyword parameters ``params`` of :func:`generate_mock`, its defaults filled in, as
    one value (a ``TypeError`` names a parameter it does not take)."""
    bound = inspect.signature(generate_mock).bind(**params)
    bound.apply_defaults()
    return SimpleNamespace(**bound.arguments)


def plan_mock(**params: Any) -> MockPlan:
    """The population, observing conditions and render table of the mock that
    :func:`generate_mock` with the keyword parameters ``params`` writes (nothing is written).

    Raises
    ------
    ConfigError: an unknown imaging, shift or effect.
    """
    args = mock_arguments(**params)
    size = args.image_size or default_image_size(args.imaging)
    effects = Effects.chosen(args.realism, **{k: getattr(args, k) for k in EFFECTS})
    spec = imaging_spec(args.imaging, args.shifted_imaging)
    pop = generate_population(args.n, args.seed, args.sigma_int, args.population,
                              effects=effects, outlier_fraction=args.outlier_fraction)
    obs, companions = observe(pop.imaged, pop.tracers, spec, size, args.seed, effects)
    table = imaged_table(pop, obs, companions)
    return MockPlan(args, size, effects, spec, pop, obs, table,
                    _shard_bounds(table.num_rows, args.rows_per_shard))


def generate_mock(
    out: str,
    *,
    n: int = 5000,
    seed: int = 0,
    imaging: str = "sdss",
    image_size: int | None = None,
    population: str = "all",
    sigma_int: float = 0.20,
    gallery: str | None = None,
    rows_per_shard: int = 2048,
    workers: int | None = None,
    engine: str = "auto",
    realism: str = "realistic",
    label_noise: bool | None = None,
    label_outliers: bool | None = None,
    measured_labels: bool | None = None,
    seeing: bool | None = None,
    sky_noise: bool | None = None,
    calibration: bool | None = None,
    extinction: bool | None = None,
    inclination: bool | None = None,
    neighbours: bool | None = None,
    outlier_fraction: float = 0.02,
    shifted_imaging: str = "none",
) -> dict[str, str]:
    """Generate the mock survey into the directory (or URL) ``out``.

    The keyword parameters are the options of ``hicatalog mock`` (its ``--help`` says what
    each does): ``n`` imaged galaxies of ``population`` from ``seed``, rendered with
    ``imaging`` (``shifted_imaging``: another survey's imaging at its pixel scale) into
    ``image_size`` px cutouts, ``rows_per_shard`` per shard, here or as a Ray Data job
    (``engine``, ``workers``). ``realism`` sets every effect (docs/mock.md), each of
    ``label_noise`` ... ``neighbours`` overrides it when not None. ``gallery``: also draw a
    Figure-9-like PNG there.

    Returns paths ``{"cutouts": DIR/cutouts, "tracers": DIR/tracers.parquet,
    "truth": DIR/truth.parquet}``. The same arguments give byte-identical files.
    """
    params = dict(locals())  # the first statement: exactly the keyword parameters
    t0 = time.perf_counter()
    plan = plan_mock(**params)
    pop, obs, spec, effects, size = plan.pop, plan.obs, plan.spec, plan.effects, plan.size
    out = out.rstrip("/") or "."
    paths = {
        "cutouts": join(out, "cutouts"),
        "tracers": join(out, "tracers.parquet"),
        "truth": join(out, "truth.parquet"),
    }
    write_parquet_atomic(tracers_table(pop), paths["tracers"])
    write_parquet_atomic(truth_table(pop, obs, spec, effects), paths["truth"])
    t_pop = time.perf_counter() - t0

    table, bounds = plan.table, plan.bounds
    use_ray = engine == "ray" or (
        engine == "auto" and (table.num_rows > LOCAL_MAX_ROWS or (workers or 1) > 1)
    )
    t1 = time.perf_counter()
    if use_ray:
        _run_ray(table, bounds, paths["cutouts"], imaging, size, seed, workers, spec, effects)
    else:
        for k in range(len(bounds)):
            plan.render_shard(k, paths["cutouts"])
    _remove_stale_shards(paths["cutouts"], len(bounds))
    t_render = time.perf_counter() - t1
    manifest = _manifest(plan, params, use_ray)
    write_json_atomic(join(out, "_mock.json"), manifest, sort_keys=True)
    log.info(
        "mock: %d cutouts (%s) in %d shards, %d tracers; population %.1fs, render %.1fs "
        "(%.0f cutouts/s, %s)", table.num_rows, manifest["populations"], len(bounds),
        manifest["n_tracers"], t_pop, t_render, table.num_rows / max(t_render, 1e-9),
        manifest["engine"],
    )
    if gallery:
        from hicatalog.mock.gallery import draw_gallery

        draw_gallery(paths["cutouts"], gallery)
        log.info("gallery written to %s", gallery)
    return paths


def _manifest(plan: MockPlan, params: dict[str, Any], use_ray: bool) -> dict[str, Any]:
    """The ``_mock.json`` record of a mock: its arguments, effects and counts."""
    pop, obs, table = plan.pop, plan.obs, plan.table
    names, n_per = np.unique(pop.imaged["population"], return_counts=True)
    manifest = {
        "config": params,
        "image_size": plan.size,
        "engine": "ray" if use_ray else "local",
        "area_deg2": pop.area_deg2,
        "n_tracers": int(len(pop.tracers["ra"])),
        "n_imaged": int(table.num_rows),
        "n_shards": len(plan.bounds),
        "populations": {str(k): int(v) for k, v in zip(names, n_per, strict=True)},
        "detected_fraction_tracers": float(np.mean(pop.tracers["detected"])),
        "effects": plan.effects.as_dict(),
        "imaging_spec": plan.spec.label,
    }
    im = pop.imaged
    survey = np.isin(im["population"], ("survey", "survey_deep"))
    if survey.any():
        kinds, k_n = np.unique(im["outlier_kind"][survey & im["detected"]], return_counts=True)
        manifest["survey_counts"] = {
            "detections": int(im["detected"][survey].sum()),
            "upper_limits": int(im["label_is_limit"][survey].sum()),
            "labels_null": int(np.isnan(im["m_label"][survey]).sum()),
            "detection_outliers": {str(k): int(c) for k, c in zip(kinds, k_n, strict=True)},
        }
    if plan.effects.any:
        det = im["population"] == "alfalfa"
        kinds, k_n = np.unique(im["outlier_kind"][det], return_counts=True)
        manifest["effect_counts"] = {
            "alfalfa_outliers": {str(k): int(c) for k, c in zip(kinds, k_n, strict=True)},
            "labels_null": int(np.isnan(im["m_label"]).sum()),
            "upper_limits": int(im["label_is_limit"].sum()),
            "with_companions": int((obs["n_companions"] > 0).sum()),
            "blends": int(obs["blend"].sum()), "tidal": int(obs["tidal"].sum()),
        }
    return manifest


def show_result(paths: dict[str, str], params: dict[str, Any]) -> None:
    """What ``hicatalog mock`` prints after :func:`generate_mock`: the paths it wrote, as JSON."""
    print(json.dumps(paths))
