"""Catalog layout, build fingerprints and ``_manifest.json``.

Layout of a catalog directory ``DIR``, a local path or a URL (every file written atomically
by :func:`hicatalog.storage.write_atomic`: a complete file, or nothing)::

    DIR/_manifest.json                               latest manifest (all versions listed)
    DIR/version=V/_build.json                        fingerprint + build id owning version V
    DIR/version=V/_manifest.json                     the manifest as of version V
    DIR/version=V/_done/part-SSSSS.json              input shard SSSSS is completely written
    DIR/version=V/dec_zone=D/part-SSSSS.parquet      rows of input shard SSSSS with
                                                     D <= dec < D + dec_zone_deg, sorted by ra

``V`` counts builds into ``DIR`` (1, 2, ...): an incremental build (``--since-manifest``)
adds a version holding only the galaxies the earlier versions lack and never rewrites their
files, so ``DIR/**/*.parquet`` (hive partitioning: ``version``, ``dec_zone``) is always the
whole catalog: one row per input cutout row, so an ``object_id`` that repeats in the input has
its one prediction plus rows with ``status = 'duplicate_id'``. ``dec_zone`` is the lower declination edge in whole
degrees; rows without valid coordinates go to ``dec_zone=__HIVE_DEFAULT_PARTITION__`` (read
as null by DuckDB, polars and pyarrow).
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import pyarrow.parquet as pq

from hicatalog import storage
from hicatalog.schemas import SchemaError
from hicatalog.storage import write_atomic

__all__ = [
    "MANIFEST_FILE",
    "NULL_PARTITION",
    "fingerprint",
    "write_json_atomic",
    "read_json",
    "read_manifest",
    "version_dirs",
    "version_path",
    "catalog_object_ids",
]

MANIFEST_FILE = "_manifest.json"
BUILD_FILE = "_build.json"
DONE_DIR = "_done"
#: Hive partition value that readers turn into null.
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"


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
    ValueError: missing or malformed, naming the path.
    """
    p = storage.absolute(path)
    if storage.is_dir(p):
        p = storage.join(p, MANIFEST_FILE)
    if not storage.is_file(p):
        raise ValueError(f"{p}: catalog manifest not found (expected DIR/_manifest.json "
                         "written by `hicatalog build-catalog`)")
    try:
        doc = read_json(p)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p}: catalog manifest is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or "versions" not in doc:
        raise ValueError(f"{p}: not a catalog manifest (no 'versions' list)")
    doc["_path"] = p
    return doc


def version_dirs(catalog_dir: str | os.PathLike) -> dict[int, str]:
    """``{V: DIR/version=V}`` for the version directories that exist."""
    out = {}
    for name in storage.list_dirs(catalog_dir):
        if name.startswith("version="):
            try:
                out[int(name.split("=", 1)[1])] = storage.join(catalog_dir, name)
            except ValueError:
                continue
    return dict(sorted(out.items()))


def version_path(manifest: dict[str, Any], version: dict[str, Any]) -> str:
    """Where a version the manifest lists lives: its ``path`` taken relative to the directory
    of the manifest (read by :func:`read_manifest`) unless it is absolute or a URL."""
    p = version["path"]
    if storage.is_url(p) or os.path.isabs(p):
        return p
    return storage.join(storage.parent(manifest["_path"]), p)


def catalog_object_ids(manifest: dict[str, Any]) -> set[str]:
    """All ``object_id`` values of every version a manifest lists (reads only that column)."""
    ids: set[str] = set()
    for v in manifest["versions"]:
        vdir = version_path(manifest, v)
        if not storage.is_dir(vdir):
            raise SchemaError(f"catalog version directory {vdir} listed in {manifest['_path']} "
                              "does not exist")
        for f in storage.list_files(vdir, recursive=True, suffix=".parquet"):
            fs, fp = storage.filesystem_and_path(f)
            with fs.open_input_file(fp) as fh:
                ids.update(pq.read_table(fh, columns=["object_id"]).column(0).to_pylist())
    return ids
