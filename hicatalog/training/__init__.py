"""Stage: training. Ray Train data-parallel training of the regression, PR and gas-class CNNs.

- :func:`hicatalog.training.trainer.train` (library) and :func:`hicatalog.training.trainer.main` (CLI);
- :mod:`hicatalog.training.data`: row selection per task, splits, the Ray Data decode step;
- :mod:`hicatalog.training.loop`: the per-worker loop (:func:`~hicatalog.training.loop.fit`);
- :mod:`hicatalog.training.presets`: the ``quick`` and ``paper`` presets;
- :mod:`hicatalog.training.metrics`: the per-epoch validation metrics.
"""
