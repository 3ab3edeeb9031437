"""Stage: evaluation. The paper's tables and figures from any build with a truth table.

Modules (nothing is imported or read at package import time):

- :mod:`~hicatalog.metrics`: RMSE, slope, sigma, offset, normalized RMSE,
  accuracy, ROC AUC (from ranks; no scikit-learn needed).
- :mod:`~hicatalog.evaluation.data`: reading catalogs (versions, hive partitions), truth or
  labels tables, cutouts.
- :mod:`~hicatalog.evaluation.catalog`: :func:`evaluate_catalog` (Table 2, Figures 2-5).
- :mod:`~hicatalog.evaluation.environment_split`: Section 7 (Table 4, Figure 10).
- :mod:`~hicatalog.evaluation.gradcam`: Grad-CAM of the shallow classifier (Figure 11).
- :mod:`~hicatalog.evaluation.baselines`: Appendix A (needs scikit-learn, the ``ml`` extra).
- :mod:`~hicatalog.evaluation.robustness`: Appendix B point-source injections.
- :mod:`~hicatalog.evaluation.tables`, :mod:`~hicatalog.evaluation.figures`,
  :mod:`~hicatalog.evaluation.report`: Markdown/HTML tables, PNG figures, ``index.html``.
- :mod:`~hicatalog.evaluation.analyses`: ``hicatalog evaluate [ANALYSIS]``.
"""
