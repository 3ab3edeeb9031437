"""Where the current catalog is: the one place that resolves a version through the manifest.

A catalog directory holds several published versions (:mod:`hicatalog.catalog.manifest`);
which one is current is what ``_manifest.json`` says, nothing else (not file times, not a
directory listing). :func:`open_catalog` reads the manifest once and returns the version's
files; since a version directory is complete before the manifest names it and never changes
afterwards, everything read through the returned :class:`CatalogVersion` is one complete
version, even while a new one is being published.

    >>> cat = open_catalog("runs/demo/catalog")            # the current version
    >>> cat.version, cat.rows, cat.path                    # doctest: +SKIP
    >>> duckdb.sql(f"SELECT count(*) FROM read_parquet({cat.files!r})")   # doctest: +SKIP
    >>> pl.scan_parquet(cat.files)                         # doctest: +SKIP
    >>> hats.read_hats(cat.path)                           # the HATS catalog   doctest: +SKIP
    >>> lsdb.open_catalog(cat.version_dir)                 # with its margin    doctest: +SKIP
    >>> open_catalog("runs/demo/catalog", version=1)       # time travel     doctest: +SKIP

``evaluate``, the tests, ``query_command`` and the README's examples all go through here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pyarrow as pa

from hicatalog import storage
from hicatalog.catalog.manifest import (
    INVALID_COORDINATES_FILE,
    Manifest,
    hats_path,
    partition_file,
)

__all__ = ["CatalogVersion", "open_catalog", "read_catalog"]


@dataclass(frozen=True)
class CatalogVersion:
    """One published version of a catalog.

    ``catalog``: the catalog directory (absolute, or a URL); ``version``: its number;
    ``version_dir``: the version's directory, a HATS collection (``lsdb.open_catalog``
    opens it with its margin cache); ``path``: its main HATS catalog (``hats.read_hats(path)``;
    the version directory itself for a version published before collections); ``rows``: all
    its rows (the HEALPix partitions plus ``invalid_coordinates.parquet``); ``files``: every
    data file of the version (absolute paths or URLs: the partitions in HEALPix order, then
    the rows without a valid position); ``pixels``: the HEALPix ``(order, pixel)`` of each
    partition file, in the order of ``files`` (the last file, the rows without a position,
    has none); ``manifest``: the manifest it was resolved from.
    """

    catalog: str
    version: int
    path: str
    rows: int
    files: list[str]
    manifest: Manifest = field(repr=False)
    pixels: list[tuple[int, int]] = field(default_factory=list, repr=False)
    version_dir: str = ""

    @property
    def glob(self) -> str:
        """``PATH/**/*.parquet``: the same files as a glob (DuckDB, polars, ``read_parquet``)."""
        return storage.join(self.path, "**", "*.parquet") if storage.is_url(self.path) else \
            os.path.join(self.path, "**", "*.parquet")


def open_catalog(catalog_dir: str | os.PathLike, version: int | None = None) -> CatalogVersion:
    """The current version of the catalog in ``catalog_dir`` (a local path or a URL), or the
    listed ``version`` (an int).

    Reads ``_manifest.json`` and the version's ``partition_info.csv`` (two small reads; no
    listing).

    Raises
    ------
    InputNotFoundError: no catalog manifest there. InputError: ``version`` is not listed
        (removed by ``keep_versions``, or never published), naming the versions there are.
    """
    manifest = Manifest.read(catalog_dir)
    entry = manifest.current() if version is None else manifest.entry(int(version))
    version_dir = manifest.resolve(entry.path)
    path = storage.join(version_dir, entry.catalog) if entry.catalog else version_dir
    pixels = _partition_pixels(path)
    files = [*(partition_file(path, k, p) for k, p in pixels),
             storage.join(path, INVALID_COORDINATES_FILE)]
    return CatalogVersion(catalog=manifest.catalog_dir, version=entry.version, path=path,
                          rows=entry.rows, files=files, manifest=manifest, pixels=pixels,
                          version_dir=version_dir)


def _partition_pixels(catalog_path: str) -> list[tuple[int, int]]:
    """The ``(order, pixel)`` of each partition the HATS catalog's ``partition_info.csv``
    lists (read by hats), in HEALPix order."""
    from hats.catalog import PartitionInfo
    from hats.io import paths

    info = PartitionInfo.read_from_csv(
        hats_path(storage.join(catalog_path, paths.PARTITION_INFO_FILENAME)))
    return [(p.order, p.pixel) for p in info.get_healpix_pixels()]


def read_catalog(catalog_dir: str | os.PathLike, columns: list[str] | None = None,
                 version: int | None = None) -> pa.Table:
    """All rows of the current (or the given) version as one Arrow table (``columns``: only
    these). For large catalogs, query ``open_catalog(...).files`` with DuckDB or polars
    instead."""
    cat = open_catalog(catalog_dir, version)
    tables = [storage.read_parquet(f, columns) for f in cat.files]
    return pa.concat_tables(tables, promote_options="permissive")
