"""``hicatalog evaluate [catalog|environment|gradcam|baselines|robustness]``.

One entry point, :func:`main`, dispatching on ``cfg.analysis``:

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

from hicatalog import storage
from hicatalog.config import EvaluateConfig
from hicatalog.errors import ConfigError
from hicatalog.evaluation.catalog import evaluate_catalog
from hicatalog.evaluation.tables import fmt

__all__ = ["main", "evaluate_catalog"]

log = logging.getLogger("hicatalog.evaluation")

_NEEDS = {
    "catalog": ("catalog", "truth"),
    "environment": ("data",),
    "gradcam": ("data",),
    "baselines": ("data",),
    "robustness": ("data", "model"),
}


def _require(cfg: EvaluateConfig) -> None:
    missing = [f for f in _NEEDS[cfg.analysis] if getattr(cfg, f) in (None, [])]
    if missing:
        raise ConfigError(f"the {cfg.analysis!r} analysis needs {', '.join(missing)}",
                          params=missing)


def main(cfg: EvaluateConfig) -> int:
    """Run the analysis named by ``cfg.analysis``; returns 0 (what the user can fix raises a
    :class:`~hicatalog.errors.HicatalogError`)."""
    _require(cfg)
    if cfg.analysis == "catalog":
        res = evaluate_catalog(cfg.catalog, cfg.truth, cfg.out)
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
    elif cfg.analysis == "environment":
        from hicatalog.evaluation.environment_split import run_environment_experiment

        res = run_environment_experiment(cfg)
    elif cfg.analysis == "gradcam":
        from hicatalog.evaluation.gradcam import run_gradcam

        res = run_gradcam(cfg)
    elif cfg.analysis == "baselines":
        from hicatalog.evaluation.baselines import run_baselines

        res = run_baselines(cfg)
    else:
        from hicatalog.evaluation.robustness import run_robustness

        res = run_robustness(cfg)
    print(f"report: {storage.join(cfg.out, 'index.html')}")
    log.debug("result keys: %s", sorted(res))
    return 0
