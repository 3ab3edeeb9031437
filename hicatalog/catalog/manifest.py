"""Catalog layout, build fingerprints, the staging area and ``_manifest.json``.

Layout of a catalog directory ``DIR``, a local path or a URL::

    DIR/_manifest.json                           the pointer: current version, every version
    DIR/version=V/                               published version V: a complete HATS catalog
    DIR/version=V/properties, hats.properties    HATS properties (rows, columns, builder, ...)
    DIR/version=V/partition_info.csv             the HEALPix partitions (Norder, Npix)
    DIR/version=V/dataset/_metadata              every partition's Parquet footer
    DIR/version=V/dataset/_common_metadata       the schema
    DIR/version=V/dataset/Norder=k/Dir=d/Npix=p.parquet
                                                 the rows in HEALPix pixel (k, p), sorted by
                                                 ``_healpix_29``
    DIR/version=V/invalid_coordinates.parquet    the rows without a valid position (NaN ra or
                                                 dec, |dec| > 90): ``_healpix_29`` null
    DIR/_staging/build=B/_build.json             fingerprint + build id owning build B
    DIR/_staging/build=B/_done/part-SSSSS.json   input shard SSSSS is completely staged
    DIR/_staging/build=B/part-SSSSS.parquet      the rows of input shard SSSSS (internal)

The staging area (``_staging``) is the build's exactly-once, resumable output: one file per
input shard, written atomically, counted only once its ``_done`` marker exists. Users never
query it. A publish (:mod:`hicatalog.catalog.publish`) turns the staged rows of a list of
builds into a new, complete, immutable ``version=V`` directory, and only then rewrites
``_manifest.json`` (one atomic write: a rename on a disk, one PUT on an object store), so a
reader that resolves the current version through the manifest
(:func:`hicatalog.catalog.reader.open_catalog`) sees one complete version or the previous one,
never a mix. Older versions stay listed and readable until ``--keep-versions`` removes them.
Every version holds the whole catalog: one row per input cutout row of every build it
publishes, so an ``object_id`` that repeats in the input has its one prediction plus rows
with ``status = 'duplicate_id'``.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import pyarrow as pa

from hicatalog import storage
from hicatalog.storage import write_atomic, write_parquet_atomic

__all__ = [
    "MANIFEST_FILE",
    "STAGING_DIR",
    "INVALID_COORDINATES_FILE",
    "fingerprint",
    "write_json_atomic",
    "read_json",
    "read_manifest",
    "build_dirs",
    "version_dirs",
    "version_path",
    "partition_file",
    "write_staged_part",
    "staged_parts",
]

MANIFEST_FILE = "_manifest.json"
BUILD_FILE = "_build.json"
DONE_DIR = "_done"
STAGING_DIR = "_staging"
#: The rows of a version without a valid position, next to its HATS ``dataset/``.
INVALID_COORDINATES_FILE = "invalid_coordinates.parquet"
#: Rows per Parquet row group in the staged files.
STAGING_ROW_GROUP_ROWS = 65_536


def fingerprint(parts: dict[str, Any]) -> str:
    """Stable 16-hex-digit digest of a JSON-able dict (sorted keys)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON; the file appears atomically."""
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON document at ``path`` (a local path or a URL)."""
    return json.loads(storage.read_bytes(path))


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """Read a catalog manifest (a ``_manifest.json`` file or the catalog directory; a local
    path or a URL). ``_path`` is set to where it was read (absolute, or the URL).

    Raises
    ------
    ValueError: missing or malformed, or a catalog of the layout before HATS versions (its
        versions list no ``builds``), naming the path.
    """
    p = storage.absolute(path)
    if storage.is_dir(p):
        p = storage.join(p, MANIFEST_FILE)
    try:
        doc = read_json(p)
    except FileNotFoundError:
        raise ValueError(f"{p}: catalog manifest not found (expected DIR/_manifest.json "
                         "written by `hicatalog build-catalog`)") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p}: catalog manifest is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("versions"), list):
        raise ValueError(f"{p}: not a catalog manifest (no 'versions' list)")
    if any("builds" not in v for v in doc["versions"]):
        raise ValueError(f"{p}: a catalog in the declination-zone layout of hicatalog before "
                         "HATS versions; build it again into a new --out")
    doc["_path"] = p
    return doc


def _numbered_dirs(parent: str, key: str) -> dict[int, str]:
    out = {}
    for name in storage.list_dirs(parent):
        if name.startswith(f"{key}="):
            try:
                out[int(name.split("=", 1)[1])] = storage.join(parent, name)
            except ValueError:
                continue
    return dict(sorted(out.items()))


def build_dirs(catalog_dir: str | os.PathLike) -> dict[int, str]:
    """``{B: DIR/_staging/build=B}`` for the staging directories that exist."""
    return _numbered_dirs(storage.join(catalog_dir, STAGING_DIR), "build")


def version_dirs(catalog_dir: str | os.PathLike) -> dict[int, str]:
    """``{V: DIR/version=V}`` for the published version directories that exist (listed in
    the manifest or not: a publish that died leaves an unlisted one)."""
    return _numbered_dirs(os.fspath(catalog_dir), "version")


def version_path(manifest: dict[str, Any], path: str) -> str:
    """A path the manifest records (a version's ``path``, one of its ``builds``) as a full
    path: taken relative to the manifest's directory (read by :func:`read_manifest`) unless
    it is absolute or a URL."""
    if storage.is_url(path) or os.path.isabs(path):
        return path
    return storage.join(storage.parent(manifest["_path"]), path)


def partition_file(version_dir: str, order: int, pixel: int) -> str:
    """``version_dir/dataset/Norder=k/Dir=d/Npix=p.parquet``: the HATS file of HEALPix pixel
    ``pixel`` of order ``order`` (``d``: hats' directory number of the pixel)."""
    from hats.io import paths
    from hats.pixel_math import HealpixPixel

    return storage.join(version_dir, paths.DATASET_DIR, f"{paths.PARTITION_ORDER}={order}",
                        f"{paths.PARTITION_DIR}={HealpixPixel(order, pixel).dir}",
                        f"{paths.PARTITION_PIXEL}={pixel}.parquet")


def write_staged_part(build_dir: str, shard_index: int, table: pa.Table, *,
                      build_fingerprint: str, shard: str, counts: dict[str, Any]) -> None:
    """Stage the ``hi_catalog`` rows of input shard ``shard_index``: the Parquet file, then
    its ``_done`` marker (both atomic; the shard counts as staged only once the marker exists).

    ``counts`` (e.g. rows per ``status``) is recorded in the marker; an empty ``table`` writes
    only the marker.
    """
    name = f"part-{shard_index:05d}"
    files = []
    if table.num_rows:
        write_parquet_atomic(table, storage.join(build_dir, f"{name}.parquet"),
                             row_group_size=STAGING_ROW_GROUP_ROWS)
        files.append(f"{name}.parquet")
    write_json_atomic(storage.join(build_dir, DONE_DIR, f"{name}.json"), {
        "fingerprint": build_fingerprint, "shard": shard, "rows": table.num_rows,
        "files": files, **counts,
    })


def staged_parts(build_dir: str) -> list[tuple[str, int]]:
    """``[(file, rows)]``: the staged Parquet files of a build, from its ``_done`` markers of
    the build's own fingerprint (``_build.json``), in shard order. Only these rows are
    published: a file without its marker is an unfinished shard.

    Raises
    ------
    ValueError: ``build_dir`` has no ``_build.json``.
    """
    try:
        owner = read_json(storage.join(build_dir, BUILD_FILE))["fingerprint"]
    except FileNotFoundError:
        raise ValueError(f"{build_dir}: not a staged build (no {BUILD_FILE})") from None
    out = []
    for f in storage.list_files(storage.join(build_dir, DONE_DIR), suffix=".json"):
        marker = read_json(f)
        if marker.get("fingerprint") != owner:
            continue
        out.extend((storage.join(build_dir, name), marker["rows"]) for name in marker["files"])
    return out
