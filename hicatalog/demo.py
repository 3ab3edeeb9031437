"""``hicatalog demo``: the whole path on the embedded mock survey, with no other arguments.

1. a training mock (``OUT/mock/train``), a survey mock (``OUT/mock/survey``: cutouts/,
   tracers.parquet, truth.parquet), each with its own seed, of ``population`` (default
   ``survey``: a magnitude-limited random draw, detections and non-detections with their
   ALFALFA upper limits at the survey's rate), and a calibration mock
   (``OUT/mock/calibration``, seed + 2): the same survey observed as deep as xGASS
   (``survey_deep``), so that its labels show the errors below ALFALFA's limits;
2. the regression and PR CNNs trained on the training mock with the ``train`` options (the
   quick preset by default): the regression a deep ensemble of ``regression.ensemble`` (2)
   networks with the Gaussian head and the censored likelihood (detections and upper limits),
   the PR network ``pr.ensemble`` (1) networks, each with its
   calibration fitted on the validation split (``OUT/models/regression``, ``OUT/models/pr``);
3. the calibration of both models on the calibration mock (``OUT/calibration``,
   :func:`hicatalog.catalog.calibrate.calibrate`): intervals within groups and p_detect;
4. the H I catalog of the survey mock (``OUT/catalog``) with the ``build`` options and that
   calibration, its environment computed against the survey's own tracers;
5. the evaluation against the survey's truth (``OUT/report``), so every number reported is
   about galaxies the models never saw.

The demo holds the options of the commands it runs (:class:`~hicatalog.config.DemoConfig`)
and passes each to its stage whole (:func:`stage_arguments`); the mocks' options are still the
demo's own (``n_train``, ``n_survey``, ``n_calibration``, ``seed``, ``population``).

``OUT`` is a local directory or a URL (``s3://bucket/demo``): every file goes through
:mod:`hicatalog.storage`, so on a bucket nothing is written to the local disk but caches (the
model cache ``HICATALOG_MODEL_CACHE``, matplotlib's font cache) and Ray's own files (its
temporary directory, the token a new local Ray writes to ``~/.ray/auth_token``).

Rerunning the same command continues an interrupted demo: the mocks are rendered again (the
same bytes), each training resumes its Ray Train run from the last checkpoint, and the catalog
build keeps the shards it had finished.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
import time
from typing import Any

from hicatalog.config import DemoConfig, InferenceFields
from hicatalog.runtime import init_ray
from hicatalog.storage import basename, is_url, join, write_json_atomic

log = logging.getLogger(__name__)

__all__ = ["run_demo", "stage_arguments", "closing_hints", "main", "SUMMARY_FILE"]

SUMMARY_FILE = "demo_summary.json"
#: Where each output goes, relative to ``OUT``.
_LAYOUT = {
    "train_mock": ("mock", "train"),
    "survey_mock": ("mock", "survey"),
    "calibration_mock": ("mock", "calibration"),
    "regression": ("models", "regression"),
    "pr": ("models", "pr"),
    "calibration": ("calibration",),
    "catalog": ("catalog",),
    "report": ("report",),
}


def _step(name: str, timings: dict[str, float]):
    class _Timer:
        def __enter__(self):
            self.t0 = time.perf_counter()
            print(f"[demo] {name} ...", flush=True)

        def __exit__(self, *exc):
            dt = time.perf_counter() - self.t0
            timings[name] = round(dt, 1)
            if exc[0] is None:
                print(f"[demo] {name}: done in {dt:.0f} s", flush=True)

    return _Timer()


def stage_arguments(cfg: DemoConfig, paths: dict[str, str], survey: dict[str, str],
                    train_mock: dict[str, str], calibration_mock: dict[str, str]
                    ) -> dict[str, dict[str, Any]]:
    """The keyword arguments the demo passes to each stage, by step: ``train-regression``,
    ``train-pr`` (:func:`~hicatalog.training.trainer.train`), ``calibrate``
    (:func:`~hicatalog.catalog.calibrate.calibrate`), ``catalog``
    (:func:`~hicatalog.catalog.build.make_catalog`), ``evaluate``
    (:func:`~hicatalog.evaluation.catalog.evaluate_catalog`). ``paths``: the outputs
    (:data:`_LAYOUT`); ``survey``, ``train_mock``, ``calibration_mock``: the mocks' files
    (``cutouts``, ``tracers``, ``truth``). Each options table of ``cfg`` is passed on whole
    (the calibration takes the build's inference options, so that it sees what the build
    will)."""
    args = {
        f"train-{task}": {"data": [train_mock["cutouts"]], "out": paths[task], "task": task,
                          **cfg.train.fields(), **network.fields()}
        for task, network in (("regression", cfg.regression), ("pr", cfg.pr))
    }
    build = cfg.build.fields()
    args["calibrate"] = {"cutouts": calibration_mock["cutouts"], "regression": paths["regression"],
                         "pr": paths["pr"], "tracers": calibration_mock["tracers"],
                         "out": paths["calibration"],
                         **{k: v for k, v in build.items() if k in InferenceFields.model_fields}}
    args["catalog"] = {"cutouts": survey["cutouts"], "regression": paths["regression"],
                       "pr": paths["pr"], "tracers": survey["tracers"], "out": paths["catalog"],
                       "calibration": paths["calibration"], **build}
    args["evaluate"] = {"catalog_dir": paths["catalog"], "truth_path": survey["truth"],
                        "out_dir": paths["report"]}
    return args


def run_demo(cfg: DemoConfig) -> dict:
    """Run the demo under ``cfg.out`` (a local directory or a URL such as ``s3://bucket/demo``);
    returns a summary dict (paths as given, timings in s, headline metrics), also written to
    ``OUT/demo_summary.json``."""
    from hicatalog.catalog.build import make_catalog
    from hicatalog.catalog.calibrate import calibrate
    from hicatalog.evaluation.catalog import evaluate_catalog
    from hicatalog.mock.survey import generate_mock
    from hicatalog.training.trainer import train

    init_ray()
    out = cfg.out.rstrip("/") or cfg.out
    paths = {name: join(out, *parts) for name, parts in _LAYOUT.items()}
    timings: dict[str, float] = {}
    t_start = time.perf_counter()

    with _step("mock (training sample)", timings):
        train_mock = generate_mock(paths["train_mock"], n=cfg.n_train, seed=cfg.seed,
                                   population=cfg.population)
    with _step("mock (survey)", timings):
        survey = generate_mock(paths["survey_mock"], n=cfg.n_survey, seed=cfg.seed + 1,
                               population=cfg.population)
    with _step("mock (calibration)", timings):
        calibration_mock = generate_mock(paths["calibration_mock"], n=cfg.n_calibration,
                                         seed=cfg.seed + 2, population="survey_deep")

    args = stage_arguments(cfg, paths, survey, train_mock, calibration_mock)
    for task in ("regression", "pr"):
        with _step(f"train {task}", timings):
            train(**args[f"train-{task}"])
    with _step("calibrate", timings):
        calibrate(**args["calibrate"])
    with _step("build catalog", timings):
        manifest = make_catalog(**args["catalog"])
    with _step("evaluate", timings):
        metrics = evaluate_catalog(**args["evaluate"])

    summary = {
        "out": out,
        "training_mock": train_mock,
        "survey_mock": survey,
        "calibration_mock": calibration_mock,
        "models": {task: paths[task] for task in ("regression", "pr")},
        "calibration": paths["calibration"],
        "catalog": paths["catalog"],
        "report": paths["report"],
        "rows_by_status": manifest.rows.status,
        "timings_s": timings,
        "total_s": round(time.perf_counter() - t_start, 1),
        "metrics": metrics,
    }
    write_json_atomic(join(out, SUMMARY_FILE), summary)
    return summary


def closing_hints(summary: dict) -> list[str]:
    """The lines printed after the demo: where each output is, a catalog query that runs as
    printed, and how to look at the report (opened from a disk; copied from a bucket first)."""
    from hicatalog.catalog.build import query_command

    out = summary["out"]
    models = summary["models"]
    lines = [
        f"hicatalog demo finished in {summary['total_s']:.0f} s. Everything is under {out}/:",
        f"  mock surveys   {join(out, *_LAYOUT['train_mock'])}, {join(out, *_LAYOUT['survey_mock'])}, "
        f"{join(out, *_LAYOUT['calibration_mock'])}",
        f"  models         {models['regression']}, {models['pr']} (model_card.json)",
        f"  calibration    {summary['calibration']} (calibration.json)",
        f"  catalog        {summary['catalog']} (_manifest.json: the current HATS version)",
        f"  report         {summary['report']} (index.html, metrics.json)",
        "",
    ]
    if is_url(out):
        local = basename(out) + "_report"
        copy = (f"import os, pyarrow.fs as fs; os.makedirs({json.dumps(local)}, exist_ok=True); "
                f"fs.copy_files({json.dumps(summary['report'])}, os.path.abspath({json.dumps(local)}))")
        lines += [
            "The outputs are objects in the bucket: the commands below read them with the same",
            "credentials and endpoint (AWS_* variables) as the demo. To look at the report, copy",
            f"it to ./{local} and open ./{local}/index.html:",
            f"  {shlex.quote(sys.executable)} -c {shlex.quote(copy)}",
            "",
        ]
    else:
        lines += [f"Open {join(summary['report'], 'index.html')} in a browser for the report.", ""]
    lines += [
        "Try a query (polars, installed with hicatalog; DuckDB: docs/guides/querying.md):",
        "  " + query_command(
            summary["catalog"],
            'cat.filter((pl.col("p_cnn") > 0.9) & pl.col("ra").is_between(150, 160))'
            '.select("object_id", "ra", "dec", "m_pred", "p_cnn", "one_plus_delta5")'
            '.sort("m_pred", descending=True).head(10)'),
    ]
    return lines


def main(cfg: DemoConfig) -> int:
    summary = run_demo(cfg)
    print()
    print("\n".join(closing_hints(summary)))
    return 0
