"""A published version as a HATS collection: the main catalog, its margin cache, its index.

LSDB cross-matches partition by partition; a galaxy near the edge of a partition has its
counterparts in the neighbouring partition, which LSDB finds only in a *margin cache*: for
each partition, the rows of the other partitions near its boundary. A version directory is
therefore a HATS collection (``collection.properties``, read by
:class:`hats.catalog.catalog_collection.CatalogCollection`), so that
``lsdb.open_catalog(version_dir)`` loads the main catalog and its margin by itself::

    version=V/collection.properties     hats_primary_table_url=hi_catalog,
                                        all_margins=default_margin=hi_catalog_10arcs
    version=V/hi_catalog/               the main catalog (written by the publish's shuffle)
    version=V/hi_catalog_10arcs/        the margin catalog (catalog_type margin,
                                        hats_margin_threshold 10 arcsec)
    version=V/hi_catalog_object_id/     the index on object_id (catalog_type index):
                                        dataset/part-BBBBB.parquet, (object_id, Norder, Dir,
                                        Npix) sorted by object_id, one range of ids a file

The margin is conservative, as hats-import's: for partition P (order k, pixel p) it holds
every row of the other partitions that lies in a HEALPix pixel of order ``m`` bordering P
(:func:`hats.pixel_math.get_margin`), ``m`` the largest order whose pixels are at least the
threshold wide (:func:`hats.pixel_math.healpix_shim.margin2order`). It holds every row within
the threshold of P and some beyond it (up to about twice the threshold); LSDB filters them by
distance itself, so the extra rows cost time, never a wrong pair.

The margin also has partitions where the main catalog has none: the empty pixels (of the
deepest partition order) next to the partitions, each holding the rows near its border. LSDB
visits a pixel only if the right catalog's main or margin tree has it, so without them a
galaxy of the other catalog in an empty pixel would lose its counterpart just across the
edge (an inner cross-match found one pair fewer than brute force on the tests' catalogs).

:func:`write_margin` is one task per partition: each reads, from the partitions that
touch P's bordering pixels, only the row groups whose ``_healpix_29`` statistics meet those
pixels (the row groups along the edge), keeps those pixels' rows and writes
``hi_catalog_10arcs/dataset/Norder=k/Dir=d/Npix=p.parquet``. A task holds P's margin rows
(read from one neighbour at a time); the driver holds the partition list and counts, and
the pixels next to the partitions at their deepest order (at most 12 * 4**8).

:func:`write_index` is a two-step shuffle, as the publish's: one task per group of
partitions writes their ``(object_id, Norder, Dir, Npix)`` sorted by id to a scratch file and
returns a sample of the ids; the driver cuts the sample into ranges of about
``INDEX_FILE_ROWS`` ids; one task per range reads that range from every scratch file (the
sorted row groups' statistics skip the rest) and writes one index file. A lookup by id
(``lsdb``'s ``id_search``, hats' ``IndexCatalog.loc_partitions``) reads the matching row
group through ``dataset/_metadata`` and then opens only the partition that holds the id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hicatalog import __version__, storage
from hicatalog.catalog.manifest import HEALPIX_COLUMN, MAIN_CATALOG, hats_path, partition_file
from hicatalog.errors import ConfigError
from hicatalog.runtime import TaskRunner

__all__ = ["MARGIN_ARCSEC", "INDEX_NAME", "WrittenMargin", "margin_name", "margin_order",
           "write_margin", "write_index", "write_collection_properties"]

#: Default width of the margin cache, arcsec (``margin_arcsec``).
MARGIN_ARCSEC = 10.0
#: The index catalog's directory (and HATS name) in a version, and the column it indexes.
INDEX_NAME, INDEX_COLUMN = f"{MAIN_CATALOG}_object_id", "object_id"
#: About how many ids one index file holds.
INDEX_FILE_ROWS = 1_000_000
#: One id in this many is sampled to cut the index into ranges.
INDEX_SAMPLE_EVERY = 100


def margin_name(margin_arcsec: float) -> str:
    """The margin catalog's directory (and HATS name) in a version: ``hi_catalog_10arcs``."""
    return f"{MAIN_CATALOG}_{margin_arcsec:g}arcs"


def margin_order(margin_arcsec: float, partition_order: int) -> int:
    """The HEALPix order whose pixels bordering a partition make its margin: the largest
    order whose pixels are at least ``margin_arcsec`` wide (hats' estimate).

    Raises
    ------
    ConfigError: ``margin_arcsec`` is not a number > 0, or so wide that this order is not above
        ``partition_order`` (the deepest partition's order), where a border pixel would be
        as large as a partition.
    """
    from hats.pixel_math.healpix_shim import margin2order

    if not margin_arcsec > 0:
        raise ConfigError(f"margin_arcsec={margin_arcsec}: expected a width > 0 arcsec (0 in "
                          "the publish: no margin cache)",
                          params=("margin_arcsec",))
    order = int(margin2order(margin_arcsec / 60.0))
    if order <= partition_order:
        raise ConfigError(
            f"margin_arcsec={margin_arcsec} is wider than the border pixels of the order-"
            f"{partition_order} partitions allow (margin order {order}); use a smaller margin",
            params=("margin_arcsec",))
    return order


def _ranges(pixels: np.ndarray, order: int) -> np.ndarray:
    """``[[lo, hi), ...]`` int64 ``(n, 2)``: the ``_healpix_29`` range of each pixel of
    ``order``."""
    shift = 2 * (29 - order)
    pixels = np.asarray(pixels, dtype=np.int64)
    return np.stack([pixels << shift, (pixels + 1) << shift], axis=1)


def _empty_neighbours(partitions: np.ndarray) -> np.ndarray:
    """The pixels, at the deepest order of ``partitions`` (``(order, pixel)`` int64 ``(n, 2)``),
    that no partition covers and that touch one (edge or corner), sorted."""
    import cdshealpix

    deep = int(partitions[:, 0].max())
    shifts = 2 * (deep - partitions[:, 0])
    covered = np.concatenate([np.arange(p << s, (p + 1) << s, dtype=np.int64)
                              for p, s in zip(partitions[:, 1], shifts, strict=True)])
    near = cdshealpix.nested.neighbours(covered.astype(np.uint64), deep).astype(np.int64)
    near = np.unique(near[near >= 0])
    return near[~np.isin(near, covered)]


def _row_groups_touching(pf: pq.ParquetFile, bounds: np.ndarray) -> list[int]:
    """The row groups of the open partition file ``pf`` whose ``_healpix_29`` min/max
    statistics meet one of the sorted, disjoint ranges ``bounds`` (``[[lo, hi), ...]``)."""
    col = pf.schema_arrow.get_field_index(HEALPIX_COLUMN)
    out = []
    for i in range(pf.metadata.num_row_groups):
        st = pf.metadata.row_group(i).column(col).statistics
        # the first range that ends after the group's min must start at or before its max
        j = np.searchsorted(bounds[:, 1], st.min, side="right")
        if j < len(bounds) and bounds[j, 0] <= st.max:
            out.append(i)
    return out


def _margin_task(target: tuple[int, int], own: int, partitions: np.ndarray, order: int,
                 catalog: str, margin: str, row_group_rows: int) -> int:
    """Write the margin of pixel ``target`` ``(order, pixel)`` into the margin catalog
    ``margin``: the rows of the partitions of ``catalog`` (``partitions``, ``(order, pixel)``
    int64 ``(n, 2)`` sorted by pixel start; ``own``: the index of ``target`` among them, -1
    for an empty pixel) in the order-``order`` pixels bordering it. Returns the rows written
    (no file when 0)."""
    from hats.pixel_math import get_margin

    k, p = target
    border = np.asarray(get_margin(k, p, order - k), dtype=np.int64)
    shifts = 2 * (29 - partitions[:, 0])
    span = np.stack([partitions[:, 1] << shifts, (partitions[:, 1] + 1) << shifts], axis=1)
    lo = _ranges(border, order)[:, 0]
    owner = np.searchsorted(span[:, 0], lo, side="right") - 1
    inside = (owner >= 0) & (lo < span[np.maximum(owner, 0), 1]) & (owner != own)
    shift = 2 * (29 - order)
    tables = []
    for q in np.unique(owner[inside]):
        mine = np.sort(border[inside & (owner == q)])
        with storage.open_parquet(partition_file(catalog, int(partitions[q, 0]),
                                                 int(partitions[q, 1]))) as pf:
            t = pf.read_row_groups(_row_groups_touching(pf, _ranges(mine, order)))
        keep = np.isin(t.column(HEALPIX_COLUMN).to_numpy() >> shift, mine)
        tables.append(t.filter(pa.array(keep)))
    rows = sum(t.num_rows for t in tables)
    if rows:
        table = pa.concat_tables(tables, promote_options="permissive")
        table = table.sort_by([(HEALPIX_COLUMN, "ascending")])
        storage.write_parquet_atomic(table, partition_file(margin, k, p),
                                     row_group_size=row_group_rows, write_statistics=True)
    return rows


@dataclass(frozen=True)
class WrittenMargin:
    """The margin catalog written: its directory ``name`` in the version, ``rows`` in all and
    its ``pixels`` ``[(order, pixel)]`` (main catalog partitions and empty pixels next to
    them that have margin rows)."""

    name: str
    rows: int
    pixels: list[tuple[int, int]]


def write_margin(tasks: TaskRunner, version_dir: str, pixels: list[tuple[int, int, int]],
                 margin_arcsec: float, row_group_rows: int) -> WrittenMargin | None:
    """Write the margin catalog of the main catalog ``version_dir/hi_catalog`` (partitions
    ``pixels`` ``[(order, pixel, rows)]``, sorted by pixel start) into
    ``version_dir/hi_catalog_<margin_arcsec>arcs`` (``tasks``), one task per partition and per empty
    pixel next to one (:func:`_empty_neighbours`), then its
    HATS metadata (``_metadata``, ``partition_info.csv``, ``properties``: catalog_type
    margin, ``hats_margin_threshold`` = ``margin_arcsec`` in arcsec). ``None`` when no
    partition has a neighbour's row in its margin (nothing written).

    Raises
    ------
    ConfigError: ``margin_arcsec`` too wide for the partitions (:func:`margin_order`).
    """
    name = margin_name(margin_arcsec)
    catalog = storage.join(version_dir, MAIN_CATALOG)
    margin = storage.join(version_dir, name)
    partitions = np.array([(k, p) for k, p, _ in pixels], dtype=np.int64).reshape(-1, 2)
    order = margin_order(margin_arcsec, int(partitions[:, 0].max(initial=0)))
    targets = [((int(k), int(p)), i) for i, (k, p) in enumerate(partitions)]
    deep = int(partitions[:, 0].max(initial=0))
    targets += [((deep, int(p)), -1) for p in _empty_neighbours(partitions)]
    ref = tasks.share(partitions)
    counts = tasks.map(_margin_task, [(t, own, ref, order, catalog, margin, row_group_rows)
                                      for t, own in targets])
    written = [t for (t, _), n in zip(targets, counts, strict=True) if n]
    if not written:
        return None
    _write_margin_metadata(margin, name, written, sum(counts), margin_arcsec)
    return WrittenMargin(name=name, rows=int(sum(counts)), pixels=written)


def _write_margin_metadata(margin: str, name: str, pixels: list[tuple[int, int]], rows: int,
                           margin_arcsec: float) -> None:
    """``dataset/_metadata``, ``partition_info.csv`` and ``properties`` of the margin
    catalog (written by hats)."""
    from hats.catalog import PartitionInfo, TableProperties
    from hats.io.parquet_metadata import write_parquet_metadata
    from hats.pixel_math import HealpixPixel

    path = hats_path(margin)
    info = PartitionInfo.from_healpix([HealpixPixel(k, p) for k, p in pixels])
    props = TableProperties(
        catalog_name=name, catalog_type="margin", total_rows=rows, ra_column="ra",
        dec_column="dec", healpix_column=HEALPIX_COLUMN, healpix_order=29,
        primary_catalog=MAIN_CATALOG, margin_threshold=float(margin_arcsec),
        **TableProperties.new_provenance_dict(path, builder=f"hicatalog v{__version__}"))
    if pixels:
        write_parquet_metadata(path)
    info.write_to_file(catalog_path=path)
    props.to_properties_file(path)


def _index_map_task(partitions: list[tuple[int, int]], catalog: str, scratch: str,
                    row_group_rows: int) -> np.ndarray:
    """Write ``(object_id, Norder, Dir, Npix)`` of the ``partitions`` of ``catalog``, sorted
    by id, to ``scratch`` (row groups of ``row_group_rows``); returns every
    ``INDEX_SAMPLE_EVERY``-th id (object array)."""
    from hats.pixel_math import HealpixPixel

    tables = []
    for k, p in partitions:
        ids = storage.read_parquet(partition_file(catalog, k, p), [INDEX_COLUMN]).column(0)
        n = len(ids)
        tables.append(pa.table({INDEX_COLUMN: ids, "Norder": pa.array(np.full(n, k, np.uint8)),
                                "Dir": pa.array(np.full(n, HealpixPixel(k, p).dir, np.uint64)),
                                "Npix": pa.array(np.full(n, p, np.uint64))}))
    table = pa.concat_tables(tables).sort_by([(INDEX_COLUMN, "ascending")])
    storage.write_parquet_atomic(table, scratch, row_group_size=row_group_rows,
                                 write_statistics=True)
    return np.asarray(table.column(INDEX_COLUMN).to_pylist()[::INDEX_SAMPLE_EVERY], dtype=object)


def _index_reduce_task(scratch: list[str], lo: str | None, hi: str | None, path: str,
                       row_group_rows: int) -> int:
    """Write the rows of the ``scratch`` files with ``lo <= object_id < hi`` (``None``: no
    bound), sorted by id, to the index file ``path``; returns their number."""
    bounds = ([(INDEX_COLUMN, ">=", lo)] if lo is not None else []) + \
        ([(INDEX_COLUMN, "<", hi)] if hi is not None else [])
    tables = []
    for f in scratch:
        fs, p = storage.filesystem_and_path(f)
        tables.append(pq.read_table(p, filesystem=fs, filters=bounds or None))
    table = pa.concat_tables(tables).sort_by([(INDEX_COLUMN, "ascending")])
    storage.write_parquet_atomic(table, path, row_group_size=row_group_rows,
                                 write_statistics=True)
    return table.num_rows


def write_index(tasks: TaskRunner, version_dir: str, groups: list[list[tuple[int, int]]],
                rows: int, scratch: str, row_group_rows: int) -> int:
    """Write the index on ``object_id`` of the main catalog ``version_dir/hi_catalog`` into
    ``version_dir/hi_catalog_object_id`` (``tasks``: one task per group of partitions ``groups``
    ``[[(order, pixel), ...], ...]``, then one per range of ids; ``scratch``: a directory
    for the intermediate files, removed at the end), then its HATS metadata (``_metadata``,
    ``properties``: catalog_type index, ``hats_index_column`` object_id). ``rows``: the
    rows of the partitions. Returns the rows indexed.

    Raises
    ------
    RuntimeError: the index holds another number of rows than ``rows``.
    """
    catalog = storage.join(version_dir, MAIN_CATALOG)
    index = storage.join(version_dir, INDEX_NAME)
    parts = [storage.join(scratch, f"index-{i:05d}.parquet") for i in range(len(groups))]
    samples = np.sort(np.concatenate(tasks.map(
        _index_map_task, [(g, catalog, f, row_group_rows)
                          for g, f in zip(groups, parts, strict=True)])))
    n_files = max(1, -(-rows // INDEX_FILE_ROWS))
    cuts = [samples[int(len(samples) * b / n_files)] for b in range(1, n_files)]
    cuts = sorted(set(cuts))
    edges = [None, *cuts, None]
    counts = tasks.map(_index_reduce_task, [
        (parts, lo, hi, storage.join(index, "dataset", f"part-{b:05d}.parquet"), row_group_rows)
        for b, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True))])
    storage.delete_dir(scratch)
    if sum(counts) != rows:
        raise RuntimeError(f"{index}: indexed {sum(counts)} rows, the partitions hold {rows}")
    _write_index_metadata(index, rows)
    return rows


def _write_index_metadata(index: str, rows: int) -> None:
    """``dataset/_metadata`` (every index file's footer, in file order) and ``properties``
    of the index catalog (written by hats)."""
    from hats.catalog import TableProperties
    from hats.io.parquet_metadata import write_parquet_metadata

    path = hats_path(index)
    write_parquet_metadata(path, order_by_healpix=False)
    TableProperties(
        catalog_name=INDEX_NAME, catalog_type="index", total_rows=rows,
        primary_catalog=MAIN_CATALOG, indexing_column=INDEX_COLUMN,
        extra_columns=["Norder", "Dir", "Npix"],
        **TableProperties.new_provenance_dict(path, builder=f"hicatalog v{__version__}"),
    ).to_properties_file(path)


def write_collection_properties(version_dir: str, version: int, margin: str | None,
                                index: bool) -> None:
    """``version_dir/collection.properties``: the collection of version ``version``, its main
    catalog ``hi_catalog`` and, when given, the margin catalog ``margin`` (the default) and
    (``index``) the index ``hi_catalog_object_id``."""
    from hats.catalog.dataset.collection_properties import CollectionProperties

    kwargs: dict[str, Any] = {"all_margins": [margin], "default_margin": margin} if margin \
        else {}
    if index:
        kwargs.update(all_indexes={INDEX_COLUMN: INDEX_NAME}, default_index=INDEX_COLUMN)
    CollectionProperties(obs_collection=f"hi_catalog_v{version}",
                         hats_primary_table_url=MAIN_CATALOG, **kwargs,
                         ).to_properties_file(hats_path(version_dir))
