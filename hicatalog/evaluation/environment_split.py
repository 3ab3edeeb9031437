"""``hicatalog evaluate environment``: does the H I-morphology relation change with
environment? (paper Section 7, Table 4, Figure 10).

1. :func:`prepare_environment_shards`: copy the labelled cutout shards with a ``one_plus_delta5``
   (1+delta5) column: computed with :func:`hicatalog.catalog.environment.compute_environment`
   against a tracers table, else taken from the shards' own ``one_plus_delta5`` column, else joined from
   a truth table (``one_plus_delta5_true``). The JPEG bytes are copied untouched.
2. For each split (:func:`environment_splits`): train the regression CNN through
   ``hicatalog.training.trainer.train`` (Ray Train) with ``split_by="one_plus_delta5"`` and
   ``val_quantiles`` (or a random 20% for the baseline), ``repeats`` times with seeds
   ``seed, seed+1, ...``; predict the validation rows (the rows
   :func:`hicatalog.training.data.select_rows` puts there, 8-view TTA) and compute the
   normalized RMSE = RMSE / std(M_val) (:func:`~hicatalog.metrics.normalized_rmse`).
3. :func:`summarize_repeats`: mean and spread (std, ddof=0 over repeats) per split; Table 4
   from the validation windows [0, 0.2) and [0.8, 1.0) and the random split; Figure 10 from the
   sliding 20% windows.

Hyperparameters: with ``preset='paper'`` the Section 7 values (10 epochs, max lr 0.03, batch
32, weight decay 1e-4) unless given; with ``quick`` the quick preset's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hicatalog.cutouts.shards import list_shards, write_shard
from hicatalog.errors import InputError
from hicatalog.evaluation import figures
from hicatalog.evaluation.report import Report, Section, write_report
from hicatalog.evaluation.tables import TABLE4_HEADERS, table4_rows
from hicatalog.metrics import normalized_rmse, regression_metrics
from hicatalog.storage import join, read_parquet, write_json_atomic
from hicatalog.training.presets import HYPERPARAMETER_KEYS

__all__ = [
    "SECTION7_HYPERPARAMETERS",
    "environment_splits",
    "prepare_environment_shards",
    "summarize_repeats",
    "run_environment_experiment",
]

log = logging.getLogger("hicatalog.evaluation")

#: Section 7 footnote 9: the environment runs' training settings (paper preset).
SECTION7_HYPERPARAMETERS = {"epochs": 10, "max_lr": 0.03, "batch_size": 32, "weight_decay": 1e-4}

#: Table 4's validation ranges (delta5 quantiles); ``None`` is the random 20% baseline.
TABLE4_SPLITS: tuple[tuple[float, float] | None, ...] = ((0.0, 0.2), (0.8, 1.0), None)


def environment_splits(windows: bool = True, width: float = 0.2, step: float = 0.1) -> list[tuple[float, float] | None]:
    """Validation quantile ranges to run: Table 4's low, high and random splits, plus (with
    ``windows``) the sliding windows ``[c - width/2, c + width/2)`` for centres
    ``width/2, width/2 + step, ..., 1 - width/2`` (Figure 10). No range is repeated."""
    out: list[tuple[float, float] | None] = [(0.0, 0.2), (0.8, 1.0)]
    if windows:
        n = int(round((1.0 - width) / step)) + 1
        for i in range(n):
            lo = round(i * step, 10)
            q = (lo, round(lo + width, 10))
            if q not in out:
                out.append(q)
    out.append(None)
    return out


def _one_plus_delta5_from_truth(ids: list[str], truth: str) -> np.ndarray:
    from hicatalog.evaluation.data import load_truth

    t = load_truth(truth)
    if "one_plus_delta5_true" not in t.columns:
        raise InputError(f"{truth}: has no one_plus_delta5_true or delta5 column to take delta5 "
                         "from", params=("truth",))
    lookup = dict(zip(t.get_column("object_id").to_list(), t.get_column("one_plus_delta5_true").to_list(), strict=True))
    return np.array([lookup.get(i) if lookup.get(i) is not None else np.nan for i in ids], np.float64)


def prepare_environment_shards(
    data: str | list[str], out_dir: str, tracers: str | None = None, truth: str | None = None,
) -> dict[str, Any]:
    """Write ``out_dir`` = the cutout shards of ``data`` with a ``one_plus_delta5`` column (1+delta5).

    Source of delta5, in order: ``tracers`` (computed with the environment code), the shards'
    own non-null ``one_plus_delta5``, ``truth`` (its ``one_plus_delta5_true``/``one_plus_delta5``). Rows are never
    dropped; rows without a value get null (training skips them for the split).

    Returns ``{"out_dir", "source", "n_rows", "n_with_one_plus_delta5", "env_status"}``.
    """
    files = list_shards(data, contract="cutouts")
    tables = [read_parquet(f) for f in files]
    ids = [i for t in tables for i in t.column("object_id").to_pylist()]
    env_status: dict[str, int] = {}
    if tracers is not None:
        from hicatalog.catalog.environment import compute_environment, read_positions

        targets = pa.concat_tables([t.select(["object_id", "ra", "dec", "z"]) for t in tables])
        env = compute_environment(targets, read_positions(tracers, "tracers"))
        ok = pc.equal(env.column("env_status"), "ok")
        one_plus_delta5 = pc.if_else(ok, env.column("one_plus_delta5"), pa.scalar(None, pa.float32()))
        values = one_plus_delta5.to_numpy(zero_copy_only=False).astype(np.float64)
        for s in env.column("env_status").to_pylist():
            env_status[s] = env_status.get(s, 0) + 1
        source = f"computed against {tracers}"
    elif all("one_plus_delta5" in t.column_names for t in tables) and any(
        t.column("one_plus_delta5").null_count < t.num_rows for t in tables
    ):
        values = np.concatenate([
            pc.cast(t.column("one_plus_delta5"), pa.float64()).to_numpy(zero_copy_only=False) for t in tables
        ])
        source = "the shards' one_plus_delta5 column"
    elif truth is not None:
        values = _one_plus_delta5_from_truth(ids, truth)
        source = f"one_plus_delta5_true of {truth}"
    else:
        raise InputError(
            f"{data}: no delta5 for the environment analysis: give tracers (compute it), "
            "shards with a delta5 column, or truth with one_plus_delta5_true",
            params=("tracers", "truth")
        )
    start = 0
    for i, t in enumerate(tables):
        v = values[start : start + t.num_rows]
        start += t.num_rows
        col = pa.array(np.where(np.isfinite(v), v, np.nan).astype(np.float32), pa.float32(),
                       mask=~np.isfinite(v))
        t = t.drop_columns([c for c in ("one_plus_delta5",) if c in t.column_names]).append_column("one_plus_delta5", col)
        write_shard(t, out_dir, "env", i)
    n_ok = int(np.isfinite(values).sum())
    log.info("delta5 from %s: %d of %d rows have a value", source, n_ok, len(ids))
    return {"out_dir": out_dir, "source": source, "n_rows": len(ids), "n_with_one_plus_delta5": n_ok,
            "env_status": env_status or None}


def summarize_repeats(values: list[float]) -> tuple[float, float]:
    """(mean, standard deviation with ddof=0) of the finite values; NaN when none."""
    v = np.asarray([x for x in values if x is not None], float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std())


def _training_options(training: Mapping[str, Any]) -> dict[str, Any]:
    """``training`` (keyword arguments of :func:`hicatalog.training.trainer.train`) with the
    Section 7 values of the options it leaves unset when its preset is ``paper``."""
    options = dict(training)
    if options.get("preset") == "paper":
        for k, v in SECTION7_HYPERPARAMETERS.items():
            if options.get(k) is None:
                options[k] = v
    return options


def _label(q: tuple[float, float] | None) -> str:
    return "random" if q is None else f"val_{q[0]:g}-{q[1]:g}"


def _one_training(out: str, files: list[str], env_data: list[str], q: Any, seed: int,
                  options: dict[str, Any], images_cache: dict[int, Any]) -> dict[str, Any]:
    """Train on the rows outside validation range ``q`` (``None``: a random split) with
    ``seed`` and ``options`` (keyword arguments of :func:`~hicatalog.training.trainer.train`)
    into ``OUT/runs``, predict the validation rows; returns the run's metrics (RMSE,
    normalised RMSE, validation sigma, ...). ``images_cache``: decoded cutouts by image size,
    shared by runs."""
    from hicatalog.evaluation.data import load_cutouts
    from hicatalog.evaluation.predict import predict_cutouts
    from hicatalog.models import load_model
    from hicatalog.training.data import select_rows
    from hicatalog.training.trainer import train

    split_kw = {"split_by": "one_plus_delta5", "val_quantiles": q} if q is not None else {}
    sel = select_rows(files, "regression", seed=seed, **split_kw)
    run_dir = join(out, "runs", _label(q), f"seed{seed}")
    res = train(env_data, run_dir, task="regression", seed=seed, **split_kw, **options)
    model, card = load_model(run_dir)
    if card.image_size not in images_cache:
        images_cache[card.image_size] = load_cutouts(
            env_data, columns=("object_id", "m_true", "one_plus_delta5"), image_size=card.image_size)
    cut = images_cache[card.image_size]
    val_ids = set(pc.filter(sel.table.column("object_id"), sel.table.column("is_val")).to_pylist())
    used_ids = set(sel.table.column("object_id").to_pylist())
    oid = cut.columns["object_id"]
    v = np.fromiter((o in val_ids for o in oid), bool, count=oid.size)
    used = np.fromiter((o in used_ids for o in oid), bool, count=oid.size)
    d5_used = cut.columns["one_plus_delta5"][used & np.isfinite(cut.columns["one_plus_delta5"])]
    m_val = cut.columns["m_true"][v]
    pred = predict_cutouts(model, card, cut.images[v])
    reg = regression_metrics(m_val, pred)
    run = {
        "seed": seed, "n_train": sel.n_train, "n_val": int(v.sum()),
        "rmse": reg["rmse"], "nrmse": normalized_rmse(m_val, pred),
        "val_sigma": float(np.std(m_val)), "slope": reg["slope"], "offset": reg["offset"],
        "train_reported": {k: res["metrics"].get(k) for k in ("rmse", "rmse_over_std")},
        "split_values": sel.summary.get("split_values"),
        "log10_one_plus_delta5_center": (float(np.log10(np.quantile(d5_used, (q[0] + q[1]) / 2)))
                                         if q is not None and d5_used.size else None),
    }
    log.info("environment split %s seed %d: nRMSE %.4f (N val %d)", _label(q), seed,
             run["nrmse"], run["n_val"])
    return run


def _split_summary(q: Any, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One validation range's repeats: their mean and spread (Table 4's row)."""
    rm, rs = summarize_repeats([r["rmse"] for r in runs])
    nm, ns = summarize_repeats([r["nrmse"] for r in runs])
    return {
        "val_quantiles": list(q) if q is not None else None,
        "n_train": runs[0]["n_train"], "n_val": runs[0]["n_val"],
        "val_sigma": float(np.mean([r["val_sigma"] for r in runs])),
        "rmse_mean": rm, "rmse_std": rs, "nrmse_mean": nm, "nrmse_std": ns,
        "log10_one_plus_delta5_center": runs[0]["log10_one_plus_delta5_center"],
        "runs": runs,
    }


def run_environment_experiment(data: Sequence[str], out: str, *, tracers: str | None = None,
                               truth: str | None = None, repeats: int = 5, seed: int = 0,
                               windows: bool = True,
                               training: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run Section 7 on the labelled shards ``data``: delta5 from ``tracers``, the shards or
    ``truth`` (:func:`prepare_environment_shards`); ``repeats`` trainings per split with
    seeds ``seed, seed+1, ...`` and ``training`` (keyword arguments of
    :func:`hicatalog.training.trainer.train`; with preset ``paper``, the Section 7 values
    of those it leaves unset); the sliding windows too with ``windows``.

    Writes ``OUT/environment.json`` (``splits``: per validation range the per-repeat and
    summarised ``rmse``, ``nrmse``, ``val_sigma``, ``n_train``, ``n_val``), ``OUT/table4.md``,
    ``OUT/environment_windows.png`` (Figure 10, with ``windows``) and ``OUT/index.html``. The
    trained models stay under ``OUT/runs/<split>/seed<k>``.
    """
    prep = prepare_environment_shards(list(data), join(out, "cutouts_one_plus_delta5"),
                                      tracers=tracers, truth=truth)
    env_data = [prep["out_dir"]]
    files = list_shards(env_data, contract="cutouts")
    options = _training_options(training or {})
    images_cache: dict[int, Any] = {}
    splits_out = [
        _split_summary(q, [_one_training(out, files, env_data, q, seed + rep, options, images_cache)
                           for rep in range(repeats)])
        for q in environment_splits(windows)
    ]
    by_q = {tuple(s["val_quantiles"]) if s["val_quantiles"] else None: s for s in splits_out}
    table4 = [by_q[q] for q in TABLE4_SPLITS]
    low, high = by_q[(0.0, 0.2)], by_q[(0.8, 1.0)]
    result = {
        "inputs": {"data": list(data), "tracers": tracers, "truth": truth,
                   "repeats": repeats, "preset": options.get("preset", "quick"),
                   "hyperparameters": {k: options.get(k) for k in HYPERPARAMETER_KEYS}},
        "one_plus_delta5": prep,
        "splits": splits_out,
        "table4": table4,
        "dense_validation_worse": bool(high["nrmse_mean"] > low["nrmse_mean"]),
    }
    sec = Section("Table 4: training and validation split by delta5 (quantiles)").add_table(
        TABLE4_HEADERS, table4_rows(table4))
    sec.add_text("Normalized RMSE = validation RMSE / std of the validation M_true; mean ± std "
                 f"over {repeats} trainings (seeds {seed}..{seed + repeats - 1}).")
    windows = [s for s in splits_out if s["val_quantiles"] is not None]
    if windows:
        rnd = by_q[None]
        fig = figures.plot_environment_windows(
            [(s["val_quantiles"][0] + s["val_quantiles"][1]) / 2 for s in windows],
            [s["nrmse_mean"] for s in windows], [s["nrmse_std"] for s in windows],
            join(out, "environment_windows.png"),
            random=(rnd["nrmse_mean"], rnd["nrmse_std"]),
            log10_one_plus_delta5_at_center=[s["log10_one_plus_delta5_center"] for s in windows],
        )
        sec.figures.append(fig)
    write_json_atomic(join(out, "environment.json"), result)
    write_report(Report("hicatalog evaluation: environment (Section 7)", [sec],
                        inputs=result["inputs"]), out, markdown="table4.md")
    return result
