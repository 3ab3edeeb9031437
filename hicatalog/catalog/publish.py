"""Publishing: staged catalog rows -> a new, complete, immutable HATS version (on Ray).

The build stages its rows per input shard (:mod:`hicatalog.catalog.manifest`); a publish
turns the staged rows of a list of builds into ``DIR/version=V``, a HATS catalog (Hierarchical
Adaptive Tiling Scheme, https://www.ivoa.net/documents/Notes/HATS/: the layout LSDB reads and
the archives serving Gaia or ZTF as HATS use), and then switches ``DIR/_manifest.json`` to it.
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
   ``dataset/Norder=k/Dir=d/Npix=p.parquet`` in row groups of ``row_group_rows`` rows, whose
   ra/dec min/max statistics let DuckDB and polars skip most of a file. The rows without a
   valid position go to ``invalid_coordinates.parquet``. The driver holds only file names and
   counts: its memory does not grow with the number of rows.
4. **Metadata** (``hats``): ``dataset/_metadata`` and ``dataset/_common_metadata``
   (:func:`hats.io.parquet_metadata.write_parquet_metadata`), ``partition_info.csv``
   (:class:`hats.catalog.PartitionInfo`), ``properties`` and ``hats.properties``
   (:class:`hats.catalog.TableProperties`).
5. **Checks and switch**: the rows written must equal the rows staged (else nothing is
   switched); then ``_manifest.json`` is rewritten in one atomic write, and versions beyond
   ``keep_versions`` are removed (from the manifest first, then their files).
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hicatalog import __version__, storage
from hicatalog.catalog.manifest import (
    INVALID_COORDINATES_FILE,
    MANIFEST_FILE,
    STAGING_DIR,
    partition_file,
    read_manifest,
    staged_parts,
    version_dirs,
    version_path,
    write_json_atomic,
)
from hicatalog.config import BuildCatalogConfig
from hicatalog.schemas import load_schema
from hicatalog.sky import valid_coordinates, wrap_ra

__all__ = ["healpix_29", "publish_version", "publish_tables", "current_builds", "hats_path", "HISTOGRAM_ORDER", "PARTITION_ROWS",
           "ROW_GROUP_ROWS"]

log = logging.getLogger("hicatalog.catalog.publish")

#: HEALPix order of the histogram the partitions are merged from (pixels of ~0.05 deg^2).
HISTOGRAM_ORDER = 8
#: Default most rows in one published partition file (``--partition-rows``).
PARTITION_ROWS: int = BuildCatalogConfig.model_fields["partition_rows"].default
#: Default rows per Parquet row group in the published files (``--row-group-rows``).
ROW_GROUP_ROWS: int = BuildCatalogConfig.model_fields["row_group_rows"].default
#: Rows a histogram/map task reads (a group of whole staged files, at least one).
MAP_ROWS = 500_000
HEALPIX_COLUMN = "_healpix_29"


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


# ----------------------------------------------------------------------------- Ray tasks


def _read(path: str, columns: list[str] | None = None) -> pa.Table:
    fs, p = storage.filesystem_and_path(path)
    with fs.open_input_file(p) as fh:
        return pq.read_table(fh, columns=columns)


def _histogram_task(files: list[str], order: int) -> tuple[np.ndarray, np.ndarray, int]:
    """``(pixels, counts, rows without a pixel)`` at ``order`` over the staged ``files``."""
    pix = [np.zeros(0, np.int64)]
    n_null = 0
    for f in files:
        col = _read(f, [HEALPIX_COLUMN]).column(0)
        n_null += col.null_count
        pix.append(pc.drop_null(col).to_numpy() >> (2 * (29 - order)))
    pixels, counts = np.unique(np.concatenate(pix), return_counts=True)
    return pixels, counts.astype(np.int64), n_null


def _map_task(files: list[str], scratch: str, starts: np.ndarray) -> dict[int, int]:
    """Sort the rows of ``files`` by ``_healpix_29`` and write them to ``scratch``, one row
    group per partition (partition ``i`` holds the rows with ``starts[i] <= _healpix_29 <
    starts[i+1]``; partition ``len(starts)`` the rows without one). Returns ``{partition: row
    group}`` for the partitions present."""
    table = pa.concat_tables([_read(f) for f in files], promote_options="permissive")
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
        fs, p = storage.filesystem_and_path(f)
        with fs.open_input_file(p) as fh:
            tables.append(pq.ParquetFile(fh).read_row_group(rg))
    table = pa.concat_tables(tables, promote_options="permissive")
    if table.column(HEALPIX_COLUMN).null_count == 0:
        table = table.sort_by([(HEALPIX_COLUMN, "ascending")])  # stable: staging order on ties
    else:
        table = table.sort_by([("object_id", "ascending")])
    storage.write_parquet_atomic(table, path, row_group_size=row_group_rows,
                                 write_statistics=True)
    fs, p = storage.filesystem_and_path(path)
    return {"rows": table.num_rows, "bytes": fs.get_file_info(p).size}


# ----------------------------------------------------------------------------- driver


def current_builds(manifest: dict[str, Any] | None) -> list[str]:
    """The staging directories (full paths) whose rows the manifest's current version holds;
    [] for ``None``. An incremental build publishes these plus its own."""
    if manifest is None:
        return []
    current = next(v for v in manifest["versions"] if v["version"] == manifest["version"])
    return [version_path(manifest, b) for b in current["builds"]]


def _groups(parts: list[tuple[str, int]], rows: int) -> list[list[str]]:
    """Whole staged files in groups of about ``rows`` rows (at least one file each)."""
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
    histogram (hats' alignment: pixels merged up to ``partition_rows`` rows)."""
    from hats.pixel_math.partition_stats import generate_alignment

    top = int(histogram.max(initial=0))
    if top > partition_rows:
        raise ValueError(
            f"{top} rows fall in one order-{HISTOGRAM_ORDER} HEALPix pixel (about 0.05 deg^2), "
            f"more than --partition-rows {partition_rows}; raise --partition-rows"
        )
    alignment = generate_alignment(histogram, highest_order=HISTOGRAM_ORDER,
                                   threshold=partition_rows, drop_empty_siblings=True)
    dest = {tuple(a[:2]) for a in alignment[histogram > 0]}
    counts: dict[tuple[int, int], int] = {}
    for a, n in zip(alignment[histogram > 0], histogram[histogram > 0], strict=True):
        counts[tuple(a[:2])] = counts.get(tuple(a[:2]), 0) + int(n)
    return sorted(((int(k), int(p), counts[(k, p)]) for k, p in dest),
                  key=lambda kp: kp[1] << (2 * (29 - kp[0])))


def _properties(vdir: str, n_rows: int, pixels: list[tuple[int, int, int]],
                partition_rows: int, version: int, build_ids: list[str]) -> Any:
    from hats.catalog import PartitionInfo, TableProperties
    from hats.pixel_math import HealpixPixel

    info = PartitionInfo.from_healpix([HealpixPixel(k, p) for k, p, _ in pixels])
    provenance = TableProperties.new_provenance_dict(vdir, builder=f"hicatalog v{__version__}")
    return info, TableProperties(
        catalog_name="hi_catalog",
        catalog_type="object",
        total_rows=n_rows,
        ra_column="ra",
        dec_column="dec",
        healpix_column=HEALPIX_COLUMN,
        healpix_order=29,
        hats_max_rows=partition_rows,
        moc_sky_fraction=round(info.calculate_fractional_coverage(), 6) if pixels else 0.0,
        **provenance,
        obs_title="H I mass fractions predicted from optical cutouts (hicatalog)",
        hicatalog_version=str(version),
        hicatalog_build_ids=" ".join(build_ids),
        hicatalog_invalid_coordinates_file=INVALID_COORDINATES_FILE,
    )


def _write_version(vdir: str, scratch_dir: str, parts: list[tuple[str, int]],
                   partition_rows: int, row_group_rows: int) -> dict[str, Any]:
    """Write the complete HATS catalog of the staged ``parts`` into ``vdir`` (Ray tasks);
    returns what the manifest records about it."""
    import ray

    from hicatalog.runtime import init_ray

    init_ray()
    groups = _groups(parts, MAP_ROWS)
    hist_task = ray.remote(num_cpus=1)(_histogram_task)
    histogram = np.zeros(12 * 4**HISTOGRAM_ORDER, dtype=np.int64)
    n_null = 0
    pending = [hist_task.remote(g, HISTOGRAM_ORDER) for g in groups]
    while pending:  # summed as they come: one task's result in the driver at a time
        done, pending = ray.wait(pending, num_returns=1)
        pixels, counts, nulls = ray.get(done[0])
        histogram[pixels] += counts
        n_null += nulls
    pixels = _partitions(histogram, partition_rows)
    del histogram
    starts = np.array([p << (2 * (29 - k)) for k, p, _ in pixels], dtype=np.int64)

    # map: scratch files whose row groups are the partitions; the last index: no position
    map_task = ray.remote(num_cpus=1)(_map_task)
    scratch = [storage.join(scratch_dir, f"map-{i:05d}.parquet") for i in range(len(groups))]
    starts_ref = ray.put(starts)
    layouts = ray.get([map_task.remote(g, s, starts_ref) for g, s in zip(groups, scratch,
                                                                          strict=True)])
    # reduce: one task per output partition
    reduce_task = ray.remote(num_cpus=1)(_reduce_task)
    targets = [(k, p, partition_file(vdir, k, p)) for k, p, _ in pixels]
    targets.append((None, None, storage.join(vdir, INVALID_COORDINATES_FILE)))
    refs = []
    for i, (_, _, path) in enumerate(targets):
        pieces = [(s, lay[i]) for s, lay in zip(scratch, layouts, strict=True) if i in lay]
        if pieces:
            refs.append(reduce_task.remote(pieces, path, row_group_rows))
        else:  # no row without a position: the file exists anyway, empty, with the schema
            refs.append(None)
    results = [ray.get(r) if r is not None else None for r in refs]
    if results[-1] is None:
        storage.write_parquet_atomic(load_schema("hi_catalog").empty_table(), targets[-1][2])
        results[-1] = {"rows": 0, "bytes": 0}
    n_pixel_rows = sum(r["rows"] for r in results[:-1])
    for (k, p, n), r in zip(pixels, results[:-1], strict=True):
        if r["rows"] != n:
            raise RuntimeError(f"partition Norder={k} Npix={p}: wrote {r['rows']} rows, the "
                               f"histogram counted {n}; nothing was published")
    if results[-1]["rows"] != n_null:
        raise RuntimeError(f"{INVALID_COORDINATES_FILE}: wrote {results[-1]['rows']} rows, "
                           f"expected {n_null}; nothing was published")
    return {"pixels": pixels, "rows": n_pixel_rows + n_null, "pixel_rows": n_pixel_rows,
            "invalid_coordinate_rows": n_null,
            "files": len(pixels) + 1, "bytes": sum(r["bytes"] for r in results)}


def hats_path(path: str) -> Any:
    """``path`` as the ``hats`` functions should get it: an S3 URL as a ``UPath`` with
    ``anon=False`` (hats turns a plain ``s3://`` string into an anonymous client, which a
    private bucket refuses), anything else unchanged."""
    if not str(path).startswith("s3://"):
        return path
    from upath import UPath

    return UPath(path, anon=False)


def _write_hats_metadata(vdir: str, written: dict[str, Any], partition_rows: int,
                         version: int, build_ids: list[str]) -> None:
    from hats.io.parquet_metadata import write_parquet_metadata

    vdir = hats_path(vdir)
    info, props = _properties(vdir, written["pixel_rows"], written["pixels"], partition_rows,
                              version, build_ids)
    if written["pixels"]:
        write_parquet_metadata(vdir)
    info.write_to_file(catalog_path=vdir)
    props.to_properties_file(vdir)


def publish_version(out: str, builds: list[str], *, previous: dict[str, Any] | None,
                    build_info: dict[str, Any], partition_rows: int = PARTITION_ROWS,
                    row_group_rows: int = ROW_GROUP_ROWS,
                    keep_versions: int | None = None) -> dict[str, Any]:
    """Publish the staged rows of ``builds`` as a new version of the catalog in ``out`` and
    switch ``out/_manifest.json`` to it; returns the new manifest.

    ``builds``: staging directories (``DIR/_staging/build=B``, absolute or URLs), oldest first;
    the version holds every row they staged. ``previous``: the manifest whose versions the new
    one continues (read with :func:`hicatalog.catalog.manifest.read_manifest`; ``None``: the
    one in ``out``, if any). ``build_info``: the build's fields of the manifest (``build_id``,
    ``fingerprint``, models, config, input, row counts, ...). ``partition_rows``: most rows per
    HEALPix partition file; ``row_group_rows``: rows per Parquet row group;
    ``keep_versions``: keep only this many newest versions (``None``: keep all).

    Publishing the same builds with the same options as the current version again writes
    nothing and returns the current manifest.

    Raises
    ------
    RuntimeError: the rows written differ from the rows staged (the manifest is unchanged).
    ValueError: a staging directory is not a staged build; a pixel too dense for
        ``partition_rows``.
    """
    t0 = time.perf_counter()
    out = storage.absolute(out).rstrip("/")
    options = {"partition_rows": partition_rows, "row_group_rows": row_group_rows,
               "histogram_order": HISTOGRAM_ORDER}
    here = out + "/"

    def recorded(path: str) -> str:
        """Paths inside ``out`` are recorded relative to it (the catalog can be moved)."""
        return path[len(here):] if path.startswith(here) else path

    own = storage.join(out, MANIFEST_FILE)
    if previous is None and storage.is_file(own):
        previous = read_manifest(own)  # the new version continues this directory's list
    old_versions = []
    if previous is not None:
        for v in previous["versions"]:
            v = dict(v)
            v["path"] = recorded(version_path(previous, v["path"]))
            v["builds"] = [recorded(version_path(previous, b)) for b in v.get("builds", [])]
            old_versions.append(v)
        same_dir = storage.parent(previous["_path"]).rstrip("/") == out
        current = next((v for v in old_versions if v["version"] == previous["version"]), None)
        if (same_dir and current is not None and current["builds"] == [recorded(b) for b in builds]
                and current.get("options") == options
                and previous.get("fingerprint") == build_info.get("fingerprint")):
            log.info("%s: version %d already publishes these builds", out, current["version"])
            prev = dict(previous)
            prev.pop("_path", None)
            return prev
    listed = {v["version"] for v in old_versions}
    if storage.is_file(own):  # versions of this directory that `previous` may not list
        listed |= {v["version"] for v in read_manifest(own)["versions"]}
    existing = version_dirs(out)
    for v, d in existing.items():
        if v not in listed:  # a publish that died before its switch: no reader can see it
            log.info("removing %s, an unfinished publish", d)
            storage.delete_dir(d)
    version = max([0, *listed]) + 1
    vdir = storage.join(out, f"version={version}")
    scratch_dir = storage.join(out, STAGING_DIR, f"publish={version}")
    storage.delete_dir(scratch_dir)

    parts = [p for b in builds for p in staged_parts(b)]
    staged_rows = sum(n for _, n in parts)
    parts = [(f, n) for f, n in parts if n]
    log.info("publishing %d staged rows (%d files, %d builds) as %s", staged_rows, len(parts),
             len(builds), vdir)
    written = _write_version(vdir, scratch_dir, parts, partition_rows, row_group_rows)
    if written["rows"] != staged_rows:
        raise RuntimeError(f"{vdir}: wrote {written['rows']} rows, {staged_rows} were staged; "
                           "nothing was published")
    build_ids = sorted({build_info.get("build_id", "")} | {
        bid for v in old_versions for bid in v.get("build_ids", [])} - {""})
    _write_hats_metadata(vdir, written, partition_rows, version, build_ids)
    storage.delete_dir(scratch_dir)

    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    this = {
        "version": version, "path": recorded(vdir), "builds": [recorded(b) for b in builds],
        "build_ids": build_ids, "rows": staged_rows,
        "invalid_coordinate_rows": written["invalid_coordinate_rows"],
        "partitions": len(written["pixels"]), "files": written["files"],
        "bytes": written["bytes"], "options": options, "created": created,
        "publish_s": round(time.perf_counter() - t0, 3),
    }
    versions = sorted([*old_versions, this], key=lambda v: v["version"])
    dropped = []
    if keep_versions is not None and len(versions) > keep_versions:
        dropped, versions = versions[:-keep_versions], versions[-keep_versions:]
    manifest = {
        **build_info,
        "catalog": "hi_catalog",
        "version": version,
        "versions": versions,
        "layout": "version=V/ is a HATS catalog: dataset/Norder=k/Dir=d/Npix=p.parquet, "
                  f"_metadata, partition_info.csv, properties; {INVALID_COORDINATES_FILE}: "
                  "rows without a valid position",
    }
    write_json_atomic(storage.join(vdir, "_version.json"), this)
    write_json_atomic(storage.join(out, MANIFEST_FILE), manifest)  # the switch
    for v in dropped:  # after the switch: no new reader resolves them any more
        p = version_path({"_path": storage.join(out, MANIFEST_FILE)}, v["path"])
        if p.startswith(here):
            storage.delete_dir(p)
            log.info("--keep-versions %d: removed version %d (%s)", keep_versions,
                     v["version"], p)
    return manifest


def publish_tables(out: str, tables: Any, *, build_id: str,
                   previous: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
    """Stage ``hi_catalog`` tables that were predicted elsewhere as a new build of the catalog
    in ``out`` (one staged part per table of the iterable ``tables``; each must carry the
    contract's columns; ``_healpix_29`` is computed from ra/dec where absent) and publish a
    version of them, plus, with ``previous`` (a manifest), the builds of its current version. ``options``
    go to :func:`publish_version`. Used by the tests and the benchmark; returns the manifest.
    """
    from hicatalog.catalog.manifest import BUILD_FILE, build_dirs, fingerprint, write_staged_part
    from hicatalog.schemas import conform_table

    out = storage.absolute(out)
    b = max([0, *build_dirs(out)]) + 1
    bdir = storage.join(out, STAGING_DIR, f"build={b}")
    fp = fingerprint({"build_id": build_id, "build": b})
    write_json_atomic(storage.join(bdir, BUILD_FILE), {"fingerprint": fp, "build_id": build_id,
                                                       "build": b})
    rows = 0
    for s, t in enumerate(tables):
        if HEALPIX_COLUMN not in t.column_names:
            t = t.append_column(HEALPIX_COLUMN, healpix_29(
                t.column("ra").to_numpy(zero_copy_only=False),
                t.column("dec").to_numpy(zero_copy_only=False)))
        t = conform_table(t, "hi_catalog", f"table {s}")
        write_staged_part(bdir, s, t, build_fingerprint=fp, shard=f"table {s}", counts={})
        rows += t.num_rows
    builds = current_builds(previous) + [bdir]
    return publish_version(out, builds, previous=previous, build_info={
        "build_id": build_id, "fingerprint": fp, "rows": {"total": rows}}, **options)
