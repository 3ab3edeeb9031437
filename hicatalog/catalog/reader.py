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
    >>> hats.read_hats(cat.path)                           # the HATS view   doctest: +SKIP
    >>> open_catalog("runs/demo/catalog", version=1)       # time travel     doctest: +SKIP

``evaluate``, the tests, ``query_command`` and the README's examples all go through here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from hicatalog import storage
from hicatalog.catalog.manifest import (
    INVALID_COORDINATES_FILE,
    partition_file,
    read_manifest,
    version_path,
)

__all__ = ["CatalogVersion", "open_catalog", "read_catalog"]


@dataclass(frozen=True)
class CatalogVersion:
    """One published version of a catalog.

    ``catalog``: the catalog directory (absolute, or a URL); ``version``: its number;
    ``path``: the version's directory, a HATS catalog (``hats.read_hats(path)``); ``rows``: all
    its rows (the HEALPix partitions plus ``invalid_coordinates.parquet``); ``files``: every
    data file of the version (absolute paths or URLs: the partitions in HEALPix order, then
    the rows without a valid position); ``manifest``: the manifest it was resolved from.
    """

    catalog: str
    version: int
    path: str
    rows: int
    files: list[str]
    manifest: dict[str, Any] = field(repr=False)

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
    ValueError: no catalog manifest there, or ``version`` is not listed (removed by
        ``--keep-versions``, or never published), naming the versions there are.
    """
    manifest = read_manifest(catalog_dir)
    catalog = storage.parent(manifest["_path"])
    wanted = manifest["version"] if version is None else int(version)
    entry = next((v for v in manifest["versions"] if v["version"] == wanted), None)
    if entry is None:
        listed = ", ".join(str(v["version"]) for v in manifest["versions"]) or "none"
        raise ValueError(f"{catalog}: version {wanted} is not in {manifest['_path']} "
                         f"(versions: {listed})")
    path = version_path(manifest, entry["path"])
    files = [*_partition_files(path), storage.join(path, INVALID_COORDINATES_FILE)]
    return CatalogVersion(catalog=catalog, version=wanted, path=path, rows=int(entry["rows"]),
                          files=files, manifest=manifest)


def _partition_files(version_dir: str) -> list[str]:
    """The partition files ``partition_info.csv`` lists, in HEALPix (breadth-first) order."""
    from hats.io import paths

    text = storage.read_bytes(storage.join(version_dir, paths.PARTITION_INFO_FILENAME)).decode()
    lines = [ln.split(",") for ln in text.strip().splitlines()]
    if not lines:
        return []
    header = [h.strip() for h in lines[0]]
    k, p = header.index(paths.PARTITION_ORDER), header.index(paths.PARTITION_PIXEL)
    return [partition_file(version_dir, int(row[k]), int(row[p])) for row in lines[1:]]


def read_catalog(catalog_dir: str | os.PathLike, columns: list[str] | None = None,
                 version: int | None = None) -> pa.Table:
    """All rows of the current (or the given) version as one Arrow table (``columns``: only
    these). For large catalogs, query ``open_catalog(...).files`` with DuckDB or polars
    instead."""
    cat = open_catalog(catalog_dir, version)
    tables = []
    for f in cat.files:
        fs, p = storage.filesystem_and_path(f)
        with fs.open_input_file(p) as fh:
            tables.append(pq.read_table(fh, columns=columns))
    return pa.concat_tables(tables, promote_options="permissive")
