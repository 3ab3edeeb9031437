"""``hicatalog workflow``: the paper's design from the published catalog files, in one job.

Steps (each under ``OUT/``):

1. ``labels``: :func:`hicatalog.surveys.labels.build_labels` -> ``labels/labels.parquet``
   (every labelled sample), ``labels/tracers.parquet`` (NSA) and ``labels/targets.parquet``,
   the survey-wide target list: the NSA galaxies with 0 < z < ``max_z`` (or ``--targets``);
2. ``fetch-labelled``, ``fetch-targets``: :func:`hicatalog.cutouts.fetch.fetch_cutouts` ->
   ``cutouts/labelled``, ``cutouts/targets``;
3. ``train-regression``, ``train-pr``: :func:`hicatalog.training.trainer.train` on
   ``cutouts/labelled`` with the paper's samples by default (a.40A; PR negatives
   ``nondetections``) -> ``models/regression``, ``models/pr``;
4. ``catalog-labelled``, ``evaluate``: the catalog of every labelled galaxy
   (``catalogs/labelled``) and its evaluation against the labels, one table per test sample
   (``evaluation/``; :func:`hicatalog.evaluation.catalog.evaluate_catalog`);
5. ``catalog-targets``: the survey-wide catalog (``catalogs/targets``, environment against
   ``labels/tracers.parquet``);
6. the report: ``workflow_report.json`` and ``workflow_report.md`` (each step: ran or skipped,
   its outputs, its counts, and the row accounting).

Resuming and scheduled reruns reuse each stage's own mechanism: a fetch skips the ids already
stored and retries failed ones; a training is skipped when its model card has the id that
the same command would write (:func:`hicatalog.training.trainer.planned_model_id`: same
configuration, data and samples), and otherwise resumes its Ray Train run; a catalog is
skipped when its ``_manifest.json`` was built from the same cutout shards by the same
models, is extended with ``--since-manifest`` (only the new galaxies are predicted) when
shards were added, and a killed build resumes. The two steps without such a mechanism,
``labels`` and ``evaluate``, record their inputs (``OUT/_workflow/<step>.json``: file sizes
and modification times, the options) and are skipped when those did not change.

The workflow holds the options of the commands it runs (:class:`~hicatalog.config.WorkflowConfig`:
the tables ``fetch``, ``train``, ``regression``, ``pr``, ``build``) and passes each to its stage
as keyword arguments (:func:`step_arguments`, the one place that maps them), so an option added
to one of those options models reaches its stage with no edit here.

A step that fails for a reason the user can fix (a :class:`~hicatalog.errors.HicatalogError`)
ends the workflow with one line naming the step (exit status 1); rerunning continues from
there. Any other exception is a bug and keeps its traceback; the report says which step it
stopped.

``OUT`` (and every input) is a local path or a URL (``s3://bucket/run``): every file is read
and written through :mod:`hicatalog.storage`, the records and reports included.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hicatalog import storage
from hicatalog.config import LabelsConfig, WorkflowConfig
from hicatalog.errors import HicatalogError, InputError
from hicatalog.storage import absolute, join, write_atomic, write_json_atomic

log = logging.getLogger("hicatalog.workflow")

__all__ = ["WorkflowError", "step_arguments", "run_workflow", "main", "REPORT_JSON", "REPORT_MD"]

REPORT_JSON = "workflow_report.json"
REPORT_MD = "workflow_report.md"
STEP_DIR = "_workflow"
TASKS = ("regression", "pr")


class WorkflowError(HicatalogError):
    """A step failed for a reason the user can fix; the message names the step. ``params``
    are the parameters the step's error named, ``tables`` the options tables of the
    workflow's config they belong to (``("fetch",)``), so that the command line writes them
    as the workflow's flags (``--fetch.max-failed-fraction``)."""

    def __init__(self, message: str, *, params: tuple[str, ...] = (),
                 tables: tuple[str, ...] = ()):
        super().__init__(message, params=params)
        self.tables = tables


#: The options tables of each step's stage, in the order a parameter is looked up.
_STEP_TABLES = {"fetch": ("fetch",), "train-regression": ("train", "regression"),
                "train-pr": ("train", "pr"), "catalog": ("build",)}


class _Run:
    """The workflow's paths and its report, filled step by step."""

    def __init__(self, cfg: WorkflowConfig):
        self.cfg = cfg
        # absolute: Ray workers (fetch tasks, training, inference) do not share the driver's
        # cwd; a URL (s3://...) stays a URL, and every path below is joined to it as a string
        out = absolute(cfg.out).rstrip("/")
        self.out = out
        self.labels_dir = join(out, "labels")
        self.labels = join(self.labels_dir, "labels.parquet")
        self.tracers = join(self.labels_dir, "tracers.parquet") if cfg.nsa else None
        self.targets = cfg.targets or join(self.labels_dir, "targets.parquet")
        self.cutouts = {w: join(out, "cutouts", w) for w in ("labelled", "targets")}
        self.models = {t: join(out, "models", t) for t in TASKS}
        self.catalogs = {w: join(out, "catalogs", w) for w in ("labelled", "targets")}
        self.evaluation = join(out, "evaluation")
        self.steps: dict[str, dict[str, Any]] = {}

    @functools.cached_property
    def args(self) -> dict[str, dict[str, Any]]:
        """What each step passes to its stage (:func:`step_arguments`)."""
        return _arguments(self)

    def step(self, name: str, fn, *args) -> Any:
        t0 = time.perf_counter()
        print(f"[workflow] {name} ...", flush=True)
        try:
            status, info = fn(*args)
        except Exception as exc:
            self.steps[name] = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                                "seconds": round(time.perf_counter() - t0, 1)}
            if not isinstance(exc, HicatalogError):
                raise  # a bug: its traceback is what finds it
            log.debug("step %s failed", name, exc_info=True)
            tables = _STEP_TABLES.get(name, _STEP_TABLES.get(name.split("-")[0], ()))
            raise WorkflowError(f"step {name!r} failed: {exc}", params=exc.params,
                                tables=tables) from exc
        info = {"status": status, "seconds": round(time.perf_counter() - t0, 1), **info}
        self.steps[name] = info
        print(f"[workflow] {name}: {status} ({info['seconds']:.0f} s)", flush=True)
        return info


# ---------------------------------------------------------------------------------------------
# the record of a step that has no resume mechanism of its own (labels, evaluate)


def _file_state(path: str | os.PathLike) -> list[Any]:
    """``[size, mtime]`` of a local file or URL (what tells that it changed)."""
    fs, p = storage.filesystem_and_path(path)
    info = fs.get_file_info(p)
    mtime = info.mtime.isoformat() if info.mtime is not None else None
    return [info.size, mtime]


def _record_path(run: _Run, step: str) -> str:
    return join(run.out, STEP_DIR, f"{step}.json")


def _unchanged(run: _Run, step: str, inputs: dict[str, Any], outputs: list[str]) -> bool:
    """Whether ``step`` recorded these ``inputs`` and its ``outputs`` (files) all exist."""
    rec = _record_path(run, step)
    if not storage.is_file(rec) or not all(storage.is_file(o) for o in outputs):
        return False
    as_written = json.loads(json.dumps(storage.json_safe(inputs), default=str))
    return storage.read_json(rec).get("inputs") == as_written


def _record(run: _Run, step: str, inputs: dict[str, Any]) -> None:
    write_json_atomic(_record_path(run, step), {"inputs": inputs})


# ---------------------------------------------------------------------------------------------
# what each step passes to its stage


def step_arguments(cfg: WorkflowConfig) -> dict[str, dict[str, Any]]:
    """The keyword arguments each step passes to its stage's library function, by step:
    ``labels`` (:func:`~hicatalog.surveys.labels.make_labels`), ``fetch-labelled``,
    ``fetch-targets`` (:func:`~hicatalog.cutouts.fetch.fetch_cutouts`), ``train-regression``,
    ``train-pr`` (:func:`~hicatalog.training.trainer.train`), ``catalog-labelled``,
    ``catalog-targets`` (:func:`~hicatalog.catalog.build.make_catalog`; the step adds
    ``since_manifest`` when it extends a catalog). The one place that maps the workflow's
    config to the stages: each options table is passed on whole."""
    return _arguments(_Run(cfg))


def _arguments(run: _Run) -> dict[str, dict[str, Any]]:
    cfg = run.cfg
    args: dict[str, dict[str, Any]] = {
        "labels": {"out": run.labels_dir, **{k: getattr(cfg, k) for k in LabelsConfig.model_fields
                                              if k != "out"}},
    }
    for which, targets in (("labelled", run.labels), ("targets", run.targets)):
        args[f"fetch-{which}"] = {"targets": targets, "out": run.cutouts[which],
                                  **cfg.fetch.fields()}
    for task, network in (("regression", cfg.regression), ("pr", cfg.pr)):
        args[f"train-{task}"] = {"data": [run.cutouts["labelled"]], "out": run.models[task],
                                 "task": task, **cfg.train.fields(), **network.fields()}
    for which, tracers in (("labelled", None), ("targets", run.tracers)):
        args[f"catalog-{which}"] = {"cutouts": run.cutouts[which],
                                    "regression": run.models["regression"],
                                    "pr": run.models["pr"], "out": run.catalogs[which],
                                    "tracers": tracers, **cfg.build.fields()}
    return args


# ---------------------------------------------------------------------------------------------
# steps


def _labels_step(run: _Run) -> tuple[str, dict[str, Any]]:
    from hicatalog.surveys.labels import make_labels

    cfg = run.cfg
    params = run.args["labels"]
    values = {k: v for k, v in params.items() if k != "out"}
    files = {k: v for k, v in values.items() if k in _INPUT_FILES and v is not None}
    inputs = {"options": values, "files": {k: _file_state(v) for k, v in files.items()},
              "max_z": cfg.max_z, "targets": cfg.targets}
    outputs = [run.labels] + ([run.targets] if cfg.targets is None else [])
    status = "skipped"
    if not _unchanged(run, "labels", inputs, outputs):
        make_labels(**params)
        if cfg.targets is None:
            _write_targets(run)
        _record(run, "labels", inputs)
        status = "ran"
    labels = storage.read_parquet(run.labels, columns=["dataset", "upper_limit"])
    targets = (storage.read_parquet(run.targets, columns=["object_id"])
               if cfg.targets is None else None)
    info = {
        "outputs": {"labels": run.labels, "tracers": run.tracers, "targets": run.targets},
        "rows_per_sample": dict(Counter(labels.column("dataset").to_pylist())),
        "upper_limits": int(pc.sum(labels.column("upper_limit")).as_py() or 0),
        "labels_rows": labels.num_rows,
    }
    if targets is not None:
        info["targets_rows"] = targets.num_rows
    return status, info


#: The LabelsConfig fields that are input files.
_INPUT_FILES = ("a40", "a40_sdss", "mpa_info", "mpa_mass", "mpa_sfr", "mpa_oh", "a100", "xgass",
                "nibles", "nsa")


def _write_targets(run: _Run) -> None:
    """The survey-wide target list: the NSA tracers with 0 < z < max_z."""
    from hicatalog.storage import write_parquet_atomic

    tracers = storage.read_parquet(run.tracers)
    z = tracers.column("z").to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        keep = (z > 0) & (z < run.cfg.max_z)
    write_parquet_atomic(tracers.filter(pa.array(keep)), run.targets)


def _fetch_step(run: _Run, which: str) -> tuple[str, dict[str, Any]]:
    from hicatalog.cutouts.fetch import existing_object_ids, fetch_cutouts

    params = run.args[f"fetch-{which}"]
    counts = fetch_cutouts(**params)
    if counts.failure:
        raise InputError(counts.failure, params=("max_failed_fraction",))
    stored = len(existing_object_ids(params["out"]))
    status = "ran" if counts.get("ok", 0) or sum(counts.values()) != counts.get(
        "already_present", 0) else "nothing new"
    return status, {"outputs": {"cutouts": params["out"]},
                    "target_rows": sum(counts.values()), "status_counts": dict(counts),
                    "stored": stored}


def _train_step(run: _Run, task: str) -> tuple[str, dict[str, Any]]:
    from hicatalog.models.artifact import load_card
    from hicatalog.training.trainer import planned_model_id, train

    params = run.args[f"train-{task}"]
    want = planned_model_id(**params)  # also refuses a degenerate set before Ray starts
    status = "skipped"
    card = None
    if all(storage.is_file(join(run.models[task], f)) for f in ("model_card.json", "weights.pt")):
        card = load_card(run.models[task])
    if card is None or card.model_id != want:
        train(**params)
        card = load_card(run.models[task])
        status = "ran"
    metrics = {k: card.metrics.get(k) for k in ("rmse", "rmse_over_std", "accuracy", "auc",
                                                 "n_train", "n_val") if k in card.metrics}
    return status, {"outputs": {"model": run.models[task]}, "model_id": card.model_id,
                    "train_samples": card.train_samples, "negatives": card.negatives,
                    "sample_counts": card.sample_counts, "metrics": metrics}


def _catalog_step(run: _Run, which: str) -> tuple[str, dict[str, Any]]:
    from hicatalog.catalog.build import make_catalog
    from hicatalog.catalog.manifest import Manifest
    from hicatalog.cutouts.shards import fingerprint_shards, list_shards
    from hicatalog.errors import OutputError
    from hicatalog.models.artifact import load_card

    params = dict(run.args[f"catalog-{which}"])
    out = params["out"]
    status = "ran"
    old = Manifest.find(out)
    if old is not None:
        shas = [load_card(run.models[t]).weights_sha256 for t in TASKS]
        if [old.models[t].weights_sha256 for t in TASKS] != shas:
            raise OutputError(
                f"{out} holds a catalog predicted by models {old.model_id}, but the models "
                f"in {join(run.out, 'models')} have changed since; move that catalog away (or "
                "use another out directory) to build one with the new models", params=("out",))
        input_fp = fingerprint_shards(list_shards(params["cutouts"], contract="cutouts"))
        if old.input.fingerprint == input_fp:
            manifest, status = old, "skipped"
        else:  # shards were added: predict only the galaxies the catalog lacks
            params["since_manifest"] = old.path
    if status == "ran":
        manifest = make_catalog(**params)
    return status, {
        "outputs": {"catalog": out, "manifest": manifest.path},
        "version": manifest.version,
        "versions": [{"version": v.version, "rows": v.rows} for v in manifest.versions],
        # every version holds the whole catalog; this build staged rows.total of them
        "rows_total": manifest.current().rows,
        "rows_this_version": manifest.rows.total,
        "status_counts_this_version": manifest.rows.status,
        "input_rows": manifest.input.rows,
    }


def _evaluate_step(run: _Run) -> tuple[str, dict[str, Any]]:
    from hicatalog.catalog.manifest import Manifest
    from hicatalog.evaluation.catalog import evaluate_catalog, group_labels
    from hicatalog.storage import read_json

    manifest = Manifest.read(run.catalogs["labelled"])
    inputs = {"catalog": manifest.fingerprint, "labels": _file_state(run.labels)}
    metrics_path = join(run.evaluation, "metrics.json")
    table2 = join(run.evaluation, "table2.md")
    status = "skipped"
    if _unchanged(run, "evaluate", inputs, [metrics_path, table2]):
        res = read_json(metrics_path)
    else:
        res = evaluate_catalog(run.catalogs["labelled"], run.labels, run.evaluation)
        _record(run, "evaluate", inputs)
        status = "ran"
    per_sample = {
        res["labels"][d]: {"n": res["regression"][d]["none"]["n"],
                           "rmse": res["regression"][d]["none"]["rmse"]}
        for d in res["datasets"]
    }
    limit_labels = group_labels(res, limits=True)
    limits = {limit_labels[d]: {"n": v["none"]["n"], "frac_consistent": v["none"]["frac_consistent"]}
              for d, v in res["limits"].items()}
    return status, {"outputs": {"report": join(run.evaluation, "index.html"),
                                "table2": table2, "metrics": metrics_path},
                    "samples": {**per_sample, **limits}, "pr": res.get("pr", {}).get("none")}


# ---------------------------------------------------------------------------------------------
# the whole run


def _accounting(run: _Run) -> dict[str, Any]:
    """Every input row accounted for: labels -> fetch statuses -> catalog rows."""
    s = run.steps
    out = {}
    for which, n_in in (("labelled", s["labels"]["labels_rows"]),
                        ("targets", s["labels"].get("targets_rows", s["fetch-targets"]["target_rows"]))):
        fetch, cat = s[f"fetch-{which}"], s.get(f"catalog-{which}")
        out[which] = {
            "input_rows": n_in,
            "fetch_status_rows": fetch["target_rows"],
            "cutouts_stored": fetch["stored"],
            "not_stored": fetch["target_rows"] - fetch["stored"],
            "catalog_rows": cat["rows_total"] if cat else None,
        }
    return out


def _write_report(run: _Run, t0: float, error: str | None) -> dict[str, Any]:
    report = {"out": run.out, "ok": error is None, "error": error,
              "seconds": round(time.perf_counter() - t0, 1), "steps": run.steps}
    if error is None:
        report["accounting"] = _accounting(run)
    write_json_atomic(join(run.out, REPORT_JSON), report)
    lines = [f"# hicatalog workflow: {run.out}", "",
             "| step | status | s | outputs | counts |", "|---|---|---|---|---|"]
    for name, info in run.steps.items():
        outputs = ", ".join(f"`{v}`" for v in (info.get("outputs") or {}).values() if v)
        counts = {k: v for k, v in info.items()
                  if k in ("rows_per_sample", "status_counts", "stored", "sample_counts",
                           "rows_this_version", "rows_total", "samples", "error")}
        lines.append(f"| {name} | {info['status']} | {info['seconds']:.0f} | {outputs} | "
                     f"{json.dumps(counts, default=str)} |")
    if error is None:
        lines += ["", "Row accounting (input rows -> fetch -> catalog):", "",
                  "| list | input rows | fetch status rows | cutouts stored | not stored | catalog rows |",
                  "|---|---|---|---|---|---|"]
        for which, a in report["accounting"].items():
            lines.append(f"| {which} | {a['input_rows']} | {a['fetch_status_rows']} | "
                         f"{a['cutouts_stored']} | {a['not_stored']} | {a['catalog_rows']} |")
    else:
        lines += ["", f"**Failed**: {error}"]
    write_atomic(join(run.out, REPORT_MD), ("\n".join(lines) + "\n").encode())
    return report


def run_workflow(cfg: WorkflowConfig) -> dict[str, Any]:
    """Run (or resume, or extend) the workflow in ``cfg.out``; returns the report (also
    written to ``OUT/workflow_report.json`` and ``.md``).

    Raises
    ------
    WorkflowError: a step failed for a reason the user can fix (the report, written anyway,
        says which and why). Any other exception of a step (a bug) propagates as it is,
        after the report is written.
    """
    run = _Run(cfg)
    t0 = time.perf_counter()
    try:
        run.step("labels", _labels_step, run)
        for which in ("labelled", "targets"):
            run.step(f"fetch-{which}", _fetch_step, run, which)
        for task in TASKS:
            run.step(f"train-{task}", _train_step, run, task)
        run.step("catalog-labelled", _catalog_step, run, "labelled")
        run.step("evaluate", _evaluate_step, run)
        run.step("catalog-targets", _catalog_step, run, "targets")
    except Exception as exc:
        _write_report(run, t0, str(exc) if isinstance(exc, WorkflowError)
                      else f"{type(exc).__name__}: {exc}")
        raise
    return _write_report(run, t0, None)


def main(cfg: WorkflowConfig) -> int:
    """CLI entry (``hicatalog workflow``): run it; print each step, where the report is and
    the row accounting. A failed step raises :class:`WorkflowError` (the command prints it as
    one line naming the step and exits 1)."""
    report = run_workflow(cfg)
    print(f"hicatalog workflow finished in {report['seconds']:.0f} s: "
          f"{join(cfg.out, REPORT_MD)}")
    for which, a in report["accounting"].items():
        print(f"  {which}: {a['input_rows']} rows -> {a['cutouts_stored']} cutouts -> "
              f"{a['catalog_rows']} catalog rows")
    return 0
