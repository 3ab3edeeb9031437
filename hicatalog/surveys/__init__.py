"""Stage: surveys: the published catalogs in, the paper's selections, the ``labels`` table out.

- :mod:`hicatalog.surveys.readers`: ALFALFA a.40 / a.100, MPA-JHU DR7, xGASS, NIBLES, NSA.
- :mod:`hicatalog.surveys.quality`: which published values are missing (sentinels -> null) and
  which are extreme (kept, flagged in ``quality``).
- :mod:`hicatalog.surveys.crossmatch`: sky matching through astropy ``SkyCoord``.
- :mod:`hicatalog.surveys.selections`: each selection of Sections 2 and 5.2, step by step.
- :mod:`hicatalog.surveys.labels`: :func:`~hicatalog.surveys.labels.build_labels` (all of it,
  writing ``labels.parquet``, ``selection_steps.csv``, ``table1.csv``, ``tracers.parquet``).
"""
