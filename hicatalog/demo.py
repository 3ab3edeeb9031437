"""``hicatalog demo``: the whole path on the embedded mock survey, with no other arguments.

1. a training mock (``OUT/mock/train``) and a separate, larger survey mock with another seed
   (``OUT/mock/survey``: cutouts/, tracers.parquet, truth.parquet);
2. the regression and PR CNNs trained with the quick preset on the training mock
   (``OUT/models/regression``, ``OUT/models/pr``);
3. the H I catalog of the survey mock (``OUT/catalog``), its environment computed against the
   survey's own tracers;
4. the evaluation against the survey's truth (``OUT/report``), so every number reported is
   about galaxies the models never saw.

Each step is skipped when its output is already complete, so an interrupted demo continues
where it stopped.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from hicatalog.config import BuildCatalogConfig, DemoConfig, MockConfig, TrainConfig
from hicatalog.runtime import init_ray
from hicatalog.storage import write_atomic

log = logging.getLogger(__name__)

__all__ = ["run_demo", "main"]


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


def run_demo(cfg: DemoConfig) -> dict:
    """Run the demo; returns a summary dict (paths, timings, headline metrics)."""
    from hicatalog.catalog.build import build_catalog
    from hicatalog.evaluation.catalog import evaluate_catalog
    from hicatalog.mock.survey import generate_mock
    from hicatalog.training.trainer import train

    init_ray()
    out = Path(cfg.out)
    timings: dict[str, float] = {}
    t_start = time.perf_counter()

    with _step("mock (training sample)", timings):
        train_mock = generate_mock(
            MockConfig(out=str(out / "mock" / "train"), n=cfg.n_train, seed=cfg.seed)
        )
    with _step("mock (survey)", timings):
        survey = generate_mock(
            MockConfig(out=str(out / "mock" / "survey"), n=cfg.n_survey, seed=cfg.seed + 1)
        )

    models = {}
    for task in ("regression", "pr"):
        with _step(f"train {task}", timings):
            result = train(
                TrainConfig(
                    task=task,
                    data=[str(train_mock["cutouts"])],
                    out=str(out / "models" / task),
                    preset="quick",
                    workers=cfg.workers,
                    epochs=cfg.epochs,
                    seed=cfg.seed,
                )
            )
            models[task] = result

    with _step("build catalog", timings):
        manifest = build_catalog(
            BuildCatalogConfig(
                cutouts=str(survey["cutouts"]),
                regression=str(out / "models" / "regression"),
                pr=str(out / "models" / "pr"),
                tracers=str(survey["tracers"]),
                out=str(out / "catalog"),
            )
        )

    with _step("evaluate", timings):
        metrics = evaluate_catalog(str(out / "catalog"), str(survey["truth"]), str(out / "report"))

    summary = {
        "out": str(out),
        "training_mock": {k: str(v) for k, v in train_mock.items()},
        "survey_mock": {k: str(v) for k, v in survey.items()},
        "models": {k: str(out / "models" / k) for k in models},
        "catalog": str(out / "catalog"),
        "report": str(out / "report"),
        "rows_by_status": manifest["rows"]["status"],
        "timings_s": timings,
        "total_s": round(time.perf_counter() - t_start, 1),
        "metrics": metrics,
    }
    write_atomic(out / "demo_summary.json", (json.dumps(summary, indent=2, default=str) + "\n").encode())
    return summary


def main(cfg: DemoConfig) -> int:
    from hicatalog.catalog.build import query_command

    summary = run_demo(cfg)
    out = summary["out"]
    print()
    print(f"hicatalog demo finished in {summary['total_s']:.0f} s. Everything is under {out}/:")
    print(f"  mock surveys   {out}/mock/train, {out}/mock/survey")
    print(f"  models         {out}/models/regression, {out}/models/pr (model_card.json)")
    print(f"  catalog        {out}/catalog (_manifest.json: the current HATS version)")
    print(f"  report         {out}/report (index.html, metrics.json)")
    print()
    print("Try a query (polars, installed with hicatalog; DuckDB examples in the README):")
    print("  " + query_command(
        f"{out}/catalog",
        'cat.filter((pl.col("p_cnn") > 0.9) & pl.col("ra").is_between(150, 160))'
        '.select("object_id", "ra", "dec", "m_pred", "p_cnn", "one_plus_delta5")'
        '.sort("m_pred", descending=True).head(10)'))
    return 0
