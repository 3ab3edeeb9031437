"""Stage: mock, the embedded synthetic survey with a known truth.

One job per module, in the order a mock is made:

- :mod:`~hicatalog.mock.parameters`: every number of the model, named, with its source;
- :mod:`~hicatalog.mock.distances`: the paper cosmology's distances, tabulated;
- :mod:`~hicatalog.mock.volume`: footprint, clustered volume, true overdensity;
- :mod:`~hicatalog.mock.galaxies`: stars, H I and detection of each galaxy;
- :mod:`~hicatalog.mock.samples`: the imaged samples and :func:`generate_population`;
- :mod:`~hicatalog.mock.columns`: every column of the galaxy tables, with dtype and unit;
- :mod:`~hicatalog.mock.render`: the cutout images; :mod:`~hicatalog.mock.gallery`: a figure;
- :mod:`~hicatalog.mock.survey`: ``hicatalog mock``, the tables and shards on disk.
"""
