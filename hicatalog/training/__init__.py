"""Stage: training. Ray Train data-parallel training of the regression, PR and gas-class CNNs.

- :func:`hicatalog.training.trainer.train` (library) and :func:`hicatalog.training.trainer.main`
  (CLI), over the trainer's named steps (plan, data, card, loop config, members, calibration);
- :mod:`hicatalog.training.data`: row selection per task, splits, the Ray Data decode step;
- :mod:`hicatalog.training.loop`: the per-worker loop (:func:`~hicatalog.training.loop.fit`);
- :mod:`hicatalog.training.loop_config`: :class:`~hicatalog.training.loop_config.LoopConfig`,
  what the loop trains with, its defaults and checks;
- :mod:`hicatalog.training.presets`: the ``quick`` and ``paper`` presets;
- :mod:`hicatalog.training.calibration`: the calibration fitted on the validation split;
- :mod:`hicatalog.training.metrics`: the per-epoch validation metrics.

docs/development.md says which files to edit to add a training option.
"""
