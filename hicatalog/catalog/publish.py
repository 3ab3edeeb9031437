"""Publishing: staged catalog rows -> a new, complete, immutable HATS version (on Ray).

The build stages its rows per input shard (:mod:`hicatalog.catalog.manifest`); a publish
turns the staged rows of a list of builds into ``DIR/version=V``, a HATS catalog (Hierarchical
Adaptive Tiling Scheme, https://www.ivoa.net/documents/Notes/HATS/: the layout LSDB reads and
the archives serving Gaia or ZTF as HATS use) inside a HATS collection with its margin cache
(:mod:`hicatalog.catalog.collection`), and then commits ``DIR/_manifest.json`` to it.
The ``hats`` package does the format's pixel math and metadata; this module only moves rows:

1. **Histogram** (one Ray task per group of staged files, ~``MAP_ROWS`` rows): rows per HEALPix
   pixel of order ``HISTOGRAM_ORDER`` from the ``_healpix_29`` column; the driver sums them in
   one fixed-size array (12 * 4**8 int64: 6 MiB whatever the number of rows).
2. **Partitions**: :func:`hats.pixel_math.partition_stats.generate_alignment` merges pixels into
   partitions of at most ``partition_rows`` rows each (adaptive: small pixels where the sky is
   dense, large ones where it is sparse; empty siblings dropped).
3. **Shuffle** (Ray): one map task per group sorts its rows by ``_healpix_29`` and writes them
   as one scratch Parquet file whose row groups are the partitions (so the partitions are
   contiguous; rows without a position last); then one task per output partition reads its
   row group from every scratch file, sorts by ``_healpix_29`` and writes
   ``hi_catalog/dataset/Norder=k/Dir=d/Npix=p.parquet`` in row groups of ``row_group_rows`` rows, whose
   ra/dec min/max statistics let DuckDB and polars skip most of a file. The rows without a
   valid position go to ``invalid_coordinates.parquet``. The driver holds only file names and
   counts: its memory does not grow with the number of rows.
4. **Metadata** (``hats``): ``dataset/_metadata`` and ``dataset/_common_metadata``
   (:func:`hats.io.parquet_metadata.write_parquet_metadata`), ``partition_info.csv``
   (:class:`hats.catalog.PartitionInfo`), ``properties`` and ``hats.properties``
   (:class:`hats.catalog.TableProperties`).
5. **Margin cache and index** (Ray; :mod:`hicatalog.catalog.collection`):
   ``hi_catalog_<margin_arcsec>arcs/`` (one task per partition), ``hi_catalog_object_id/`` (a
   shuffle by id), then ``collection.properties``.
6. **Checks and commit**: the rows written must equal the rows staged (else nothing is
   committed); the version number was claimed before any data was written, and
   ``_manifest.json`` is replaced only if it still names the base version
   (:mod:`hicatalog.catalog.commit`: compare-and-swap; a publish that another committed
   before rebases, given a ``rebase``). Versions beyond ``keep_versions`` leave the list;
   their files wait for a vacuum after the grace period.

:func:`publish_version` is these steps in order, each a function of small typed values
(:class:`PublishOptions`, :class:`PublishTarget`, :class:`StagedRows`,
:class:`WrittenVersion`); its parameters and their defaults are the library's own
(:data:`PARTITION_ROWS`, :data:`ROW_GROUP_ROWS`).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hicatalog import __version__, storage
from hicatalog.catalog.collection import (
    MARGIN_ARCSEC,
    WrittenMargin,
    margin_order,
    write_collection_properties,
    write_index,
    write_margin,
)
from hicatalog.catalog.commit import (
    MAX_REBASES,
    Rebase,
    claim_build,
    claim_version,
    commit_version,
    reached,
    rebase_builds,
)
from hicatalog.catalog.manifest import (
    HEALPIX_COLUMN,
    INVALID_COORDINATES_FILE,
    MAIN_CATALOG,
    STAGING_DIR,
    BuildRecord,
    Manifest,
    RowCounts,
    VersionEntry,
    VersionOptions,
    fingerprint,
    hats_path,
    partition_file,
    recorded_path,
    staged_counts,
    staged_parts,
    write_staged_part,
)
from hicatalog.catalog.release import README_NAME, describing_properties, version_readme
from hicatalog.errors import ConfigError, HicatalogError, WriteConflict
from hicatalog.runtime import TaskRunner
from hicatalog.schemas import conform_table, load_schema
from hicatalog.sky import valid_coordinates, wrap_ra

__all__ = ["healpix_29", "publish_version", "publish_tables", "hats_path", "PublishOptions",
           "HISTOGRAM_ORDER", "PARTITION_ROWS", "ROW_GROUP_ROWS", "MARGIN_ARCSEC"]

log = logging.getLogger("hicatalog.catalog.publish")

#: HEALPix order of the histogram the partitions are merged from (pixels of ~0.05 deg^2).
HISTOGRAM_ORDER = 8
#: Default most rows in one published partition file (``partition_rows``).
PARTITION_ROWS = 500_000
#: Default rows per Parquet row group in the published files (``row_group_rows``).
ROW_GROUP_ROWS = 10_000
#: Rows a histogram/map task reads (a group of whole staged files, at least one).
MAP_ROWS = 500_000


def healpix_29(ra_deg: np.ndarray, dec_deg: np.ndarray) -> pa.Array:
    """The HATS spatial index: nested HEALPix pixel at order 29 of each position, int64
    ``(N,)``; null where the position is not valid (:func:`hicatalog.sky.valid_coordinates`).

    ``ra_deg``, ``dec_deg``: float64 ``(N,)`` in degrees (any finite RA, it wraps).
    """
    from hats.pixel_math.spatial_index import compute_spatial_index

    ra = np.asarray(ra_deg, dtype=np.float64)
    dec = np.asarray(dec_deg, dtype=np.float64)
    ok = valid_coordinates(ra, dec)
    out = np.zeros(len(ra), dtype=np.int64)
    if ok.any():
        # cdshealpix panics on NaN, so only valid positions are handed to it
        out[ok] = compute_spatial_index(wrap_ra(ra[ok]), dec[ok])
    return pa.array(out, type=pa.int64(), mask=~ok)


# ----------------------------------------------------------------------------- the values


@dataclass(frozen=True)
class PublishOptions:
    """How a version's files are cut: ``partition_rows``, most rows in one HEALPix partition
    file; ``row_group_rows``, rows per Parquet row group; ``margin_arcsec``, width of the
    margin cache (arcsec; 0: none)."""

    partition_rows: int = PARTITION_ROWS
    row_group_rows: int = ROW_GROUP_ROWS
    margin_arcsec: float = MARGIN_ARCSEC

    def __post_init__(self) -> None:
        """Raises ConfigError for a ``margin_arcsec`` < 0 or wider than the partitions allow
        (:func:`hicatalog.catalog.collection.margin_order`), before anything is written."""
        if self.margin_arcsec != 0:
            margin_order(self.margin_arcsec, HISTOGRAM_ORDER)

    def record(self) -> VersionOptions:
        """What the manifest records (with the histogram's order)."""
        return VersionOptions(partition_rows=self.partition_rows,
                              row_group_rows=self.row_group_rows,
                              histogram_order=HISTOGRAM_ORDER,
                              margin_arcsec=float(self.margin_arcsec))


@dataclass(frozen=True)
class PublishTarget:
    """Where a publish writes: catalog directory ``out``, the new ``version`` number (claimed),
    its directory ``vdir`` (the HATS collection; its main catalog in :attr:`catalog`) and the
    shuffle's ``scratch`` directory."""

    out: str
    version: int
    vdir: str
    scratch: str

    @property
    def catalog(self) -> str:
        """The main HATS catalog's directory, ``vdir/hi_catalog``."""
        return storage.join(self.vdir, MAIN_CATALOG)


@dataclass(frozen=True)
class StagedRows:
    """The staged rows a publish reads: ``parts``, the non-empty staged files with their row
    counts, in build then shard order; ``rows``, every staged row."""

    parts: list[tuple[str, int]]
    rows: int


@dataclass(frozen=True)
class WrittenVersion:
    """What the shuffle wrote: ``pixels`` ``[(order, pixel, rows)]``, the rows in them
    (``pixel_rows``) and in ``invalid_coordinates.parquet``, the data ``files`` and their
    ``bytes``."""

    pixels: list[tuple[int, int, int]]
    pixel_rows: int
    invalid_coordinate_rows: int
    files: int
    bytes: int

    @property
    def rows(self) -> int:
        return self.pixel_rows + self.invalid_coordinate_rows


# ----------------------------------------------------------------------------- Ray tasks


def _histogram_task(files: list[str], order: int) -> tuple[np.ndarray, np.ndarray, int]:
    """``(pixels, counts, rows without a pixel)`` at ``order`` over the staged ``files``."""
    pix = [np.zeros(0, np.int64)]
    n_null = 0
    for f in files:
        col = storage.read_parquet(f, [HEALPIX_COLUMN]).column(0)
        n_null += col.null_count
        pix.append(pc.drop_null(col).to_numpy() >> (2 * (29 - order)))
    pixels, counts = np.unique(np.concatenate(pix), return_counts=True)
    return pixels, counts.astype(np.int64), n_null


def _map_task(files: list[str], scratch: str, starts: np.ndarray) -> dict[int, int]:
    """Sort the rows of ``files`` by ``_healpix_29`` and write them to ``scratch``, one row
    group per partition (partition ``i`` holds the rows with ``starts[i] <= _healpix_29 <
    starts[i+1]``; partition ``len(starts)`` the rows without one). Returns ``{partition: row
    group}`` for the partitions present."""
    table = pa.concat_tables([storage.read_parquet(f) for f in files],
                             promote_options="permissive")
    table = table.sort_by([(HEALPIX_COLUMN, "ascending")])  # nulls last
    hp = table.column(HEALPIX_COLUMN)
    n_valid = len(hp) - hp.null_count
    part = np.searchsorted(starts, pc.drop_null(hp).to_numpy(), side="right") - 1
    bounds = np.flatnonzero(np.diff(part)) + 1
    edges = np.concatenate([[0], bounds, [n_valid]]).astype(np.int64)
    groups = {int(part[a]): (int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)
              if b > a}
    if hp.null_count:
        groups[len(starts)] = (n_valid, len(hp))

    def write(sink: Any) -> None:
        with pq.ParquetWriter(sink, table.schema, compression="lz4") as w:
            for a, b in groups.values():
                w.write_table(table.slice(a, b - a), row_group_size=b - a)

    storage.write_atomic(scratch, write)
    return {p: i for i, p in enumerate(groups)}


def _reduce_task(pieces: list[tuple[str, int]], path: str, row_group_rows: int) -> dict:
    """Read row group ``rg`` of each scratch file, sort by ``_healpix_29`` and write ``path``;
    returns ``{"rows", "bytes"}``."""
    tables = []
    for f, rg in pieces:
        with storage.open_parquet(f) as pf:
            tables.append(pf.read_row_group(rg))
    table = pa.concat_tables(tables, promote_options="permissive")
    if table.column(HEALPIX_COLUMN).null_count == 0:
        table = table.sort_by([(HEALPIX_COLUMN, "ascending")])  # stable: staging order on ties
    else:
        table = table.sort_by([("object_id", "ascending")])
    storage.write_parquet_atomic(table, path, row_group_size=row_group_rows,
                                 write_statistics=True)
    fs, p = storage.filesystem_and_path(path)
    return {"rows": table.num_rows, "bytes": fs.get_file_info(p).size}


# ----------------------------------------------------------------------------- steps


def _groups(parts: list[tuple[Any, int]], rows: int) -> list[list[Any]]:
    """Whole staged files (or partitions: any ``(item, rows)``) in groups of about ``rows``
    rows (at least one item each)."""
    out, cur, n = [], [], 0
    for f, k in parts:
        cur.append(f)
        n += k
        if n >= rows:
            out.append(cur)
            cur, n = [], 0
    if cur:
        out.append(cur)
    return out


def _partitions(histogram: np.ndarray, partition_rows: int) -> list[tuple[int, int, int]]:
    """``[(order, pixel, rows)]``, sorted by pixel start, from the order-``HISTOGRAM_ORDER``
    histogram (hats' alignment: pixels merged up to ``partition_rows`` rows).

    Raises
    ------
    ConfigError: one pixel of the histogram holds more than ``partition_rows`` rows.
    """
    from hats.pixel_math.partition_stats import generate_alignment

    top = int(histogram.max(initial=0))
    if top > partition_rows:
        raise ConfigError(
            f"{top} rows fall in one order-{HISTOGRAM_ORDER} HEALPix pixel (about 0.05 deg^2), "
            f"more than partition_rows={partition_rows}; raise partition_rows",
            params=("partition_rows",))
    alignment = generate_alignment(histogram, highest_order=HISTOGRAM_ORDER,
                                   threshold=partition_rows, drop_empty_siblings=True)
    dest = {tuple(a[:2]) for a in alignment[histogram > 0]}
    counts: dict[tuple[int, int], int] = {}
    for a, n in zip(alignment[histogram > 0], histogram[histogram > 0], strict=True):
        counts[tuple(a[:2])] = counts.get(tuple(a[:2]), 0) + int(n)
    return sorted(((int(k), int(p), counts[(k, p)]) for k, p in dest),
                  key=lambda kp: kp[1] << (2 * (29 - kp[0])))


def _histogram(tasks: TaskRunner, groups: list[list[str]]) -> tuple[np.ndarray, int]:
    """``(rows per order-HISTOGRAM_ORDER pixel, rows without a position)`` of the staged
    files, one task per group; summed as the tasks finish, so the driver holds one task's
    result and one fixed-size array (12 * 4**8 int64, 6 MiB) whatever the rows."""
    histogram = np.zeros(12 * 4**HISTOGRAM_ORDER, dtype=np.int64)
    n_null = 0
    for pixels, counts, nulls in tasks.as_completed(
            _histogram_task, [(g, HISTOGRAM_ORDER) for g in groups]):
        histogram[pixels] += counts
        n_null += nulls
    return histogram, n_null


def _shuffle(tasks: TaskRunner, target: PublishTarget, groups: list[list[str]],
             pixels: list[tuple[int, int, int]], row_group_rows: int) -> list[dict]:
    """Write the partitions of ``pixels`` and ``invalid_coordinates.parquet`` into
    ``target.catalog`` (one map task per group writes a scratch file whose row groups are the
    partitions, one reduce task per partition reads its row group of each); returns
    ``{"rows", "bytes"}`` per partition, then of the rows without a position."""
    starts = np.array([p << (2 * (29 - k)) for k, p, _ in pixels], dtype=np.int64)
    scratch = [storage.join(target.scratch, f"map-{i:05d}.parquet") for i in range(len(groups))]
    starts_ref = tasks.share(starts)
    layouts = tasks.map(_map_task, [(g, s, starts_ref)
                                    for g, s in zip(groups, scratch, strict=True)])
    paths = [partition_file(target.catalog, k, p) for k, p, _ in pixels]
    paths.append(storage.join(target.catalog, INVALID_COORDINATES_FILE))
    calls = {}
    for i, path in enumerate(paths):
        pieces = [(s, lay[i]) for s, lay in zip(scratch, layouts, strict=True) if i in lay]
        if pieces:  # no row without a position: that file is written below, empty
            calls[i] = (pieces, path, row_group_rows)
    done = dict(zip(calls, tasks.map(_reduce_task, calls.values()), strict=True))
    results = [done.get(i) for i in range(len(paths))]
    if results[-1] is None:
        storage.write_parquet_atomic(load_schema("hi_catalog").empty_table(), paths[-1])
        results[-1] = {"rows": 0, "bytes": 0}
    return results


def _checked(pixels: list[tuple[int, int, int]], results: list[dict],
             n_null: int) -> WrittenVersion:
    """The version the shuffle wrote, once every file holds the rows the histogram counted.

    Raises
    ------
    RuntimeError: a file holds other rows than counted (nothing is published).
    """
    for (k, p, n), r in zip(pixels, results[:-1], strict=True):
        if r["rows"] != n:
            raise RuntimeError(f"partition Norder={k} Npix={p}: wrote {r['rows']} rows, the "
                               f"histogram counted {n}; nothing was published")
    if results[-1]["rows"] != n_null:
        raise RuntimeError(f"{INVALID_COORDINATES_FILE}: wrote {results[-1]['rows']} rows, "
                           f"expected {n_null}; nothing was published")
    return WrittenVersion(pixels=pixels, pixel_rows=sum(r["rows"] for r in results[:-1]),
                          invalid_coordinate_rows=n_null, files=len(pixels) + 1,
                          bytes=sum(r["bytes"] for r in results))


def _write_version(tasks: TaskRunner, target: PublishTarget, staged: StagedRows,
                   options: PublishOptions) -> WrittenVersion:
    """Write the complete HATS data of the ``staged`` rows into ``target.catalog``:
    histogram, partitions, shuffle, checks."""
    groups = _groups(staged.parts, MAP_ROWS)
    histogram, n_null = _histogram(tasks, groups)
    pixels = _partitions(histogram, options.partition_rows)
    del histogram
    results = _shuffle(tasks, target, groups, pixels, options.row_group_rows)
    return _checked(pixels, results, n_null)


def _write_hats_metadata(target: PublishTarget, written: WrittenVersion,
                         options: PublishOptions, build_ids: list[str],
                         build: BuildRecord) -> None:
    """``dataset/_metadata``, ``_common_metadata``, ``partition_info.csv``, ``properties``
    and ``hats.properties`` of the version's main catalog (written by hats), the properties describing the
    version (:func:`~hicatalog.catalog.release.describing_properties`)."""
    from hats.catalog import PartitionInfo, TableProperties
    from hats.io.parquet_metadata import write_parquet_metadata
    from hats.pixel_math import HealpixPixel

    vdir = hats_path(target.catalog)
    info = PartitionInfo.from_healpix([HealpixPixel(k, p) for k, p, _ in written.pixels])
    provenance = TableProperties.new_provenance_dict(vdir, builder=f"hicatalog v{__version__}")
    props = TableProperties(
        catalog_name="hi_catalog",
        catalog_type="object",
        total_rows=written.pixel_rows,
        ra_column="ra",
        dec_column="dec",
        healpix_column=HEALPIX_COLUMN,
        healpix_order=29,
        hats_max_rows=options.partition_rows,
        moc_sky_fraction=(round(info.calculate_fractional_coverage(), 6) if written.pixels
                          else 0.0),
        **provenance,
        obs_title="H I mass fractions predicted from optical cutouts (hicatalog)",
        **describing_properties(build, target.version, written.rows),
        hicatalog_version=str(target.version),
        hicatalog_build_ids=" ".join(build_ids),
        hicatalog_invalid_coordinates_file=INVALID_COORDINATES_FILE,
    )
    if written.pixels:
        write_parquet_metadata(vdir)
    info.write_to_file(catalog_path=vdir)
    props.to_properties_file(vdir)


def _write_margin_and_index(tasks: TaskRunner, target: PublishTarget, written: WrittenVersion,
                            options: PublishOptions) -> WrittenMargin | None:
    """The version's margin cache (none with ``margin_arcsec`` 0 or no partition) and its
    index on ``object_id`` (when it has partitions); returns the margin written."""
    if not written.pixels:
        return None
    t0 = time.perf_counter()
    margin = write_margin(tasks, target.vdir, written.pixels, options.margin_arcsec,
                          options.row_group_rows) if options.margin_arcsec else None
    t1 = time.perf_counter()
    groups = _groups([((k, p), n) for k, p, n in written.pixels], MAP_ROWS)
    write_index(tasks, target.vdir, groups, written.pixel_rows, storage.join(target.scratch, "index"),
                options.row_group_rows)
    log.info("margin cache: %d rows in %.1f s; object_id index in %.1f s",
             margin.rows if margin else 0, t1 - t0, time.perf_counter() - t1)
    return margin


def _already_published(current: Manifest | None, builds: list[str], options: PublishOptions,
                       build: BuildRecord) -> bool:
    """Whether the current version of ``current`` (the catalog's manifest) publishes exactly
    ``builds`` with these ``options`` for this build (a rerun: nothing to write)."""
    if current is None:
        return False
    return ([b.rstrip("/") for b in current.builds()] == [b.rstrip("/") for b in builds]
            and current.current().options == options.record()
            and current.fingerprint == build.fingerprint)


def _staged(builds: list[str]) -> StagedRows:
    """The rows the ``builds`` staged (their ``_done`` markers)."""
    parts = [p for b in builds for p in staged_parts(b)]
    return StagedRows(parts=[(f, n) for f, n in parts if n], rows=sum(n for _, n in parts))


def _entry(target: PublishTarget, builds: list[str], build_ids: list[str], staged: StagedRows,
           written: WrittenVersion, options: PublishOptions, margin_rows: int,
           t0: float) -> VersionEntry:
    """The manifest's entry of the new version."""
    return VersionEntry(
        version=target.version, path=recorded_path(target.vdir, target.out),
        catalog=MAIN_CATALOG, margin_rows=margin_rows,
        builds=tuple(recorded_path(b, target.out) for b in builds), build_ids=tuple(build_ids),
        rows=staged.rows, invalid_coordinate_rows=written.invalid_coordinate_rows,
        partitions=len(written.pixels), files=written.files, bytes=written.bytes,
        options=options.record(), created=storage.utc_timestamp(),
        publish_s=round(time.perf_counter() - t0, 3))


def _write_files(target: PublishTarget, builds: list[str], build: BuildRecord,
                 base: Manifest | None, options: PublishOptions, t0: float) -> VersionEntry:
    """Write the whole version ``target`` of the staged rows of ``builds`` (data, HATS
    metadata, margin, index, collection, ``_version.json``, README; its build ids:
    ``build``'s and those of the current version of ``base``, the manifest it continues);
    returns its manifest entry. Nothing is committed.

    Raises
    ------
    RuntimeError: the rows written differ from the rows staged.
    """
    staged = _staged(builds)
    log.info("publishing %d staged rows (%d files, %d builds) as %s", staged.rows,
             len(staged.parts), len(builds), target.vdir)
    tasks = TaskRunner.for_rows(staged.rows)
    written = _write_version(tasks, target, staged, options)
    if written.rows != staged.rows:
        raise RuntimeError(f"{target.vdir}: wrote {written.rows} rows, {staged.rows} were "
                           "staged; nothing was published")
    build_ids = sorted({build.build_id, *(base.current().build_ids if base else ())} - {""})
    _write_hats_metadata(target, written, options, build_ids, build)
    margin = _write_margin_and_index(tasks, target, written, options)
    storage.delete_dir(target.scratch)
    write_collection_properties(target.vdir, target.version, margin.name if margin else None,
                                index=bool(written.pixels))
    entry = _entry(target, builds, build_ids, staged, written, options,
                   margin.rows if margin else 0, t0)
    storage.write_json_atomic(storage.join(target.vdir, "_version.json"), entry.to_dict(),
                              sort_keys=True)
    storage.write_atomic(storage.join(target.vdir, README_NAME),
                         version_readme(entry, build).encode())
    return entry


def _publish_once(out: str, builds: list[str], current: Manifest | None,
                  previous: Manifest | None, build: BuildRecord, options: PublishOptions,
                  keep_versions: int | None, t0: float, floor: int,
                  seen: tuple[Manifest | None, str | None]) -> Manifest:
    """Claim a version number above ``current`` (``out``'s manifest, the base), write the
    version of ``builds`` and commit it if the manifest still names the base
    (:func:`hicatalog.catalog.commit.commit_version`; ``seen``: ``out``'s manifest and its
    version token as read just before, so an uncontended commit reads nothing more). The
    claimed directory is removed when the data cannot be written or the commit must rebase.
    ``floor``: the number claimed before (the new one is above it).

    Raises
    ------
    Rebase: another publish committed rows this version lacks meanwhile.
    """
    version, deadline = claim_version(out, current, build.build_id, floor)
    vdir = storage.join(out, f"version={version}")
    target = PublishTarget(out=out, version=version, vdir=vdir,
                           scratch=storage.join(out, STAGING_DIR, f"publish={version}"))
    try:
        entry = _write_files(target, builds, build, current or previous, options, t0)
        reached("data-written")
        return commit_version(out, entry, build,
                              base_version=current.version if current is not None else None,
                              previous=previous, keep_versions=keep_versions,
                              deadline=deadline, known=seen)
    except (Rebase, RuntimeError, HicatalogError, OSError) as exc:
        # this claim's directory is this publish's alone and was not committed
        storage.delete_dir(target.scratch)
        storage.delete_dir(vdir)
        if isinstance(exc, Rebase):
            exc.claimed = version
        raise


#: ``rebase(current, builds) -> (builds, build)``: the builds of a version that continues
#: the manifest ``current`` committed meanwhile, and the record of the build that publishes it.
Rebaser = Callable[[Manifest, list[str]], tuple[list[str], BuildRecord]]


def publish_version(out: str, builds: list[str], *, previous: Manifest | None,
                    build: BuildRecord, partition_rows: int = PARTITION_ROWS,
                    row_group_rows: int = ROW_GROUP_ROWS,
                    margin_arcsec: float = MARGIN_ARCSEC,
                    keep_versions: int | None = None, rebase: Rebaser | None = None) -> Manifest:
    """Publish the staged rows of ``builds`` as a new version of the catalog in ``out`` and
    commit it as the current version (:mod:`hicatalog.catalog.commit`); returns the new
    manifest.

    ``builds``: staging directories (``DIR/_staging/build=B``, absolute or URLs), oldest first;
    the version holds every row they staged. ``previous``: the manifest the new version
    continues (the base: in ``out``, the version it must still be current at the commit; in
    another directory, whose versions a new catalog in ``out`` lists; ``None``: ``out``'s
    current manifest when the publish starts). ``build``: the build
    that publishes (recorded at the manifest's top level). ``partition_rows``: most rows per
    HEALPix partition file; ``row_group_rows``: rows per Parquet row group; ``margin_arcsec``:
    width of the margin cache LSDB cross-matches across partition edges with (arcsec; 0:
    none); ``keep_versions``: keep only this many newest versions listed (``None``: all; the
    others are removed from the manifest, their files left to :func:`~hicatalog.catalog.
    commit.vacuum`). ``rebase``: how to continue when another publish committed builds
    this version lacks (:data:`Rebaser`, e.g. :func:`hicatalog.catalog.commit.rebase_builds`
    for the build's own staging); at most :data:`~hicatalog.catalog.commit.MAX_REBASES`
    times.

    Publishing the same builds with the same options as the current version again writes
    nothing and returns the current manifest.

    Raises
    ------
    RuntimeError: the rows written differ from the rows staged (nothing is committed).
    InputError: a staging directory is not a staged build. ConfigError: a pixel too dense
        for ``partition_rows``; a ``margin_arcsec`` < 0 or wider than the partitions allow.
    WriteConflict: another publish committed builds this version lacks, and there is no
        ``rebase`` or it was needed more than ``MAX_REBASES`` times.
    """
    t0 = time.perf_counter()
    out = storage.absolute(out).rstrip("/")
    options = PublishOptions(partition_rows=partition_rows, row_group_rows=row_group_rows,
                             margin_arcsec=margin_arcsec)  # a bad width fails here
    seen, token = Manifest.read_versioned(out)
    base = previous if previous is not None and previous.catalog_dir.rstrip("/") == out else seen
    rebases = floor = 0
    while True:
        if _already_published(seen, builds, options, build):
            log.info("%s: version %d already publishes these builds", out, seen.version)
            return seen
        if _number(seen) != _number(base):
            if rebase is None or rebases == MAX_REBASES or seen is None:
                raise _conflict(out, seen, base, build, rebases)
            builds, build = rebase(seen, builds)
            base, rebases = seen, rebases + 1
        try:
            return _publish_once(out, builds, base, previous, build, options, keep_versions,
                                 t0, floor, (seen, token))
        except Rebase as r:
            floor = r.claimed
            log.info("%s: version %s was committed meanwhile; rebasing", out, _number(r.current))
        seen, token = Manifest.read_versioned(out)


def _number(manifest: Manifest | None) -> int | None:
    return manifest.version if manifest is not None else None


def _conflict(out: str, seen: Manifest | None, base: Manifest | None, build: BuildRecord,
              rebases: int) -> WriteConflict:
    """The one line a publish that cannot commit fails with."""
    what = (f"version {seen.version} ({seen.build_id}) was committed" if seen is not None
            else "its manifest was deleted")
    return WriteConflict(
        f"{out}: {what} while {build.build_id} published from version "
        f"{_number(base) or 'none'}" + (f"; gave up after {rebases} rebases" if rebases else "")
        + "; nothing was committed: rerun to add to it")


def publish_tables(out: str, tables: Iterable[pa.Table], *, build_id: str,
                   previous: Manifest | None = None, **options: Any) -> Manifest:
    """Stage ``hi_catalog`` tables that were predicted elsewhere as a new build of the catalog
    in ``out`` (one staged part per table of the iterable ``tables``; each must carry the
    contract's columns; ``_healpix_29`` is computed from ra/dec where absent) and publish a
    version of them, plus, with ``previous`` (a manifest, the base), the builds of its
    current version; a version committed meanwhile is rebased onto
    (:func:`hicatalog.catalog.commit.rebase_builds`). ``options`` go to
    :func:`publish_version`. Used by the tests and the benchmarks; returns the manifest.
    """
    out = storage.absolute(out).rstrip("/")
    fp = fingerprint({"build_id": build_id, "nonce": uuid.uuid4().hex})
    staging = claim_build(out, {"fingerprint": fp, "build_id": build_id}, continues=True)
    for s, t in enumerate(tables):
        if HEALPIX_COLUMN not in t.column_names:
            t = t.append_column(HEALPIX_COLUMN, healpix_29(
                t.column("ra").to_numpy(zero_copy_only=False),
                t.column("dec").to_numpy(zero_copy_only=False)))
        t = conform_table(t, "hi_catalog", f"table {s}")
        write_staged_part(staging.dir, s, t, build_fingerprint=fp, shard=f"table {s}",
                          counts=staged_counts(t))

    def record() -> BuildRecord:
        rows = sum(n for _, n in staged_parts(staging.dir))
        return BuildRecord(build_id=build_id, fingerprint=fp, rows=RowCounts(total=rows))

    def rebase(current: Manifest, builds: list[str]) -> tuple[list[str], BuildRecord]:
        return rebase_builds(builds, staging.dir, current), record()

    builds = (previous.builds() if previous is not None else []) + [staging.dir]
    return publish_version(out, builds, previous=previous, build=record(), rebase=rebase,
                           **options)
