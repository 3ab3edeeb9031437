"""Stage: mock, the embedded synthetic survey with a known truth.

One job per module, in the order a mock is made:

- :mod:`~hicatalog.mock.parameters`: every number of the model, named, with its source;
- :mod:`~hicatalog.mock.effects`: the real difficulties a mock carries, each switchable;
- :mod:`~hicatalog.mock.distances`: the paper cosmology's distances, tabulated;
- :mod:`~hicatalog.mock.volume`: footprint, clustered volume, true overdensity;
- :mod:`~hicatalog.mock.galaxies`: stars, H I and detection of each galaxy;
- :mod:`~hicatalog.mock.labels`: what a survey measures: errors, outliers, cutout labels;
- :mod:`~hicatalog.mock.samples`: the imaged samples and :func:`generate_population`;
- :mod:`~hicatalog.mock.columns`: every column of the galaxy tables, with dtype and unit;
- :mod:`~hicatalog.mock.instruments`: the imagings (SDSS, Legacy, shifted ones);
- :mod:`~hicatalog.mock.observing`: seeing, sky, zero points, extinction, companions per cutout;
- :mod:`~hicatalog.mock.render`: the cutout images; :mod:`~hicatalog.mock.gallery`: a figure;
- :mod:`~hicatalog.mock.survey`: ``hicatalog mock``, the tables and shards on disk.

docs/mock.md describes the mock as a model of the real data.
"""
