"""Catalog layout, build fingerprints and ``_manifest.json``.

Layout of a catalog directory ``DIR`` (every file written atomically: temporary name, then
rename)::

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
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

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
    with open(path) as fh:
        return json.load(fh)


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """Read a catalog manifest (a ``_manifest.json`` file or the catalog directory).

    Raises
    ------
    ValueError: missing or malformed, naming the path.
    """
    p = Path(path)
    if p.is_dir():
        p = p / MANIFEST_FILE
    if not p.is_file():
        raise ValueError(f"{p}: catalog manifest not found (expected DIR/_manifest.json "
                         "written by `hicatalog build-catalog`)")
    try:
        doc = read_json(p)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p}: catalog manifest is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or "versions" not in doc:
        raise ValueError(f"{p}: not a catalog manifest (no 'versions' list)")
    doc["_path"] = str(p.resolve())
    return doc


def version_dirs(catalog_dir: str | os.PathLike) -> dict[int, Path]:
    """``{V: DIR/version=V}`` for the version directories that exist."""
    out = {}
    base = Path(catalog_dir)
    if base.is_dir():
        for d in base.iterdir():
            if d.is_dir() and d.name.startswith("version="):
                try:
                    out[int(d.name.split("=", 1)[1])] = d
                except ValueError:
                    continue
    return dict(sorted(out.items()))


def catalog_object_ids(manifest: dict[str, Any]) -> set[str]:
    """All ``object_id`` values of every version a manifest lists (reads only that column)."""
    base = Path(manifest["_path"]).parent
    ids: set[str] = set()
    for v in manifest["versions"]:
        vdir = Path(v["path"]) if os.path.isabs(v["path"]) else base / v["path"]
        if not vdir.is_dir():
            raise SchemaError(f"catalog version directory {vdir} listed in {manifest['_path']} "
                              "does not exist")
        for f in sorted(vdir.rglob("*.parquet")):
            if f.name.startswith((".", "_")):
                continue
            ids.update(pq.read_table(f, columns=["object_id"]).column(0).to_pylist())
    return ids
