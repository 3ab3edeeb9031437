"""``hicatalog evaluate [catalog|environment|gradcam|baselines|robustness]``.

One entry point, :func:`evaluate`, dispatching on ``analysis``:

- ``catalog`` (default): :func:`evaluate_catalog` (Table 2, PR accuracy/AUC, Figures 2-5).
- ``environment``: :func:`hicatalog.evaluation.environment_split.run_environment_experiment`
  (Table 4, Figure 10).
- ``gradcam``: :func:`hicatalog.evaluation.gradcam.run_gradcam` (Figure 11).
- ``baselines``: :func:`hicatalog.evaluation.baselines.run_baselines` (Appendix A, Figure 12).
- ``robustness``: :func:`hicatalog.evaluation.robustness.run_robustness` (Appendix B, Figure 13).

Each writes ``OUT/metrics.json`` (or the analysis' JSON), its tables and PNGs, and
``OUT/index.html``; ``OUT`` and every input may be a local path or a URL (``s3://...``),
every file going through :mod:`hicatalog.storage`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from hicatalog import storage
from hicatalog.errors import ConfigError
from hicatalog.evaluation.catalog import evaluate_catalog
from hicatalog.evaluation.tables import fmt

__all__ = ["evaluate", "show_result", "evaluate_catalog"]

log = logging.getLogger("hicatalog.evaluation")

#: The parameters each analysis needs.
_NEEDS = {
    "catalog": ("catalog", "truth"),
    "environment": ("data",),
    "gradcam": ("data",),
    "baselines": ("data",),
    "robustness": ("data", "model"),
}


def evaluate(out: str, *, analysis: str = "catalog", catalog: str | None = None,
             truth: str | None = None, data: Sequence[str] | None = None, repeats: int = 5,
             workers: int = 1, preset: str = "quick", seed: int = 0, model: str | None = None,
             tracers: str | None = None, arch: str | None = None, width: float | None = None,
             image_size: int | None = None, epochs: int | None = None,
             batch_size: int | None = None, max_lr: float | None = None,
             weight_decay: float | None = None, windows: bool = True, trials: int = 100,
             n_galaxies: int = 3, n_images: int = 8, max_rows: int | None = None,
             gpu: bool = False) -> dict[str, Any]:
    """Run the ``analysis`` into the report directory ``out``; returns its result (the JSON
    it writes). The keyword parameters are the options of ``hicatalog evaluate``; each
    analysis reads those it needs (:data:`_NEEDS` must be given), and the trainings of
    ``environment``, ``gradcam`` and ``baselines`` pass ``preset``, ``workers``, ``gpu`` and
    the hyperparameters (``arch`` ... ``weight_decay``) to
    :func:`hicatalog.training.trainer.train`.

    Raises
    ------
    ConfigError: a parameter the analysis needs is not given.
    """
    given = {"catalog": catalog, "truth": truth, "data": data, "model": model}
    missing = [p for p in _NEEDS[analysis] if given[p] in (None, [])]
    if missing:
        raise ConfigError(f"the {analysis!r} analysis needs {', '.join(missing)}", params=missing)
    training = dict(preset=preset, workers=workers, gpu=gpu, arch=arch, width=width,
                    image_size=image_size, epochs=epochs, batch_size=batch_size, max_lr=max_lr,
                    weight_decay=weight_decay)
    if analysis == "catalog":
        return evaluate_catalog(catalog, truth, out)
    if analysis == "environment":
        from hicatalog.evaluation.environment_split import run_environment_experiment

        return run_environment_experiment(data, out, tracers=tracers, truth=truth,
                                          repeats=repeats, seed=seed, windows=windows,
                                          training=training)
    if analysis == "gradcam":
        from hicatalog.evaluation.gradcam import run_gradcam

        return run_gradcam(data, out, seed=seed, n_images=n_images, training=training)
    if analysis == "baselines":
        from hicatalog.evaluation.baselines import run_baselines

        return run_baselines(data, out, model=model, seed=seed, max_rows=max_rows,
                             training=training)
    from hicatalog.evaluation.robustness import run_robustness

    return run_robustness(data, model, out, seed=seed, trials=trials, n_galaxies=n_galaxies)


def _print_catalog_metrics(res: dict[str, Any]) -> None:
    """The catalog analysis' headline numbers, one line per sample."""
    x, lim, labels = res["regression"], res["limits"], res["labels"]
    for d in res["datasets"]:
        none, p9 = x[d]["none"], x[d]["p_cnn>0.9"]
        print(f"{labels[d]:>20s}: N={none['n']:6d} RMSE={fmt(none['rmse'], 3)}  "
              f"(p_cnn>0.9: N={p9['n']:6d} RMSE={fmt(p9['rmse'], 3)})")
    for d in lim:
        none = lim[d]["none"]
        print(f"{d + ' upper limits':>20s}: N={none['n']:6d} M_pred <= limit for "
              f"{fmt(none['frac_consistent'], 3)}")
    unc = res.get("uncertainty")
    for d in res["datasets"] if unc else ():
        u = unc["by_group"][d]["none"]
        print(f"{labels[d]:>20s}: m_pred_err coverage 68%={fmt(u['coverage_68'], 3)} "
              f"95%={fmt(u['coverage_95'], 3)} z std={fmt(u['z_std'], 2)} "
              f"median err={fmt(u['median_err'], 3)} dex")
    if res["pr"] is not None:
        pr = res["pr"].get("training_classes") or res["pr"]["all"]
        print(f"{'p_cnn':>20s}: accuracy={fmt(pr['accuracy'], 3)} AUC={fmt(pr['roc_auc'], 3)} "
              f"ECE={fmt(pr['ece'], 3)}")


def show_result(res: dict[str, Any], params: dict[str, Any]) -> None:
    """What ``hicatalog evaluate`` prints after :func:`evaluate` (``params``: its arguments):
    the catalog analysis' numbers, then where the report is."""
    if params["analysis"] == "catalog":
        _print_catalog_metrics(res)
    print(f"report: {storage.join(params['out'], 'index.html')}")
    log.debug("result keys: %s", sorted(res))
