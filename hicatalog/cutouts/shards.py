"""Parquet image shards: writing them atomically, finding them, and fingerprinting them.

A shard directory holds ``part-NNNNN.parquet`` files of the ``cutouts`` contract (JPEG bytes
as served, never re-encoded). Shards are written to a temporary name and renamed, so a killed
writer never leaves a half-written shard that a reader would trust. Paths may be local or any
fsspec/pyarrow URL (``s3://``, ``gs://``).
"""

from __future__ import annotations

import hashlib
import os

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from hicatalog.schemas import SchemaError, conform_table, validate_schema
from hicatalog.storage import filesystem_and_path, write_parquet_atomic

__all__ = [
    "TARGET_SHARD_BYTES",
    "rows_per_shard_for",
    "write_shard",
    "list_shards",
    "fingerprint_shards",
]

#: Shard size the design asks for (about 128 MiB).
TARGET_SHARD_BYTES = 128 * 1024**2


def rows_per_shard_for(bytes_per_row: float, target_bytes: int = TARGET_SHARD_BYTES) -> int:
    """Rows per shard that give shards of about ``target_bytes`` (at least one row)."""
    return max(1, int(target_bytes // max(bytes_per_row, 1.0)))


def write_shard(table: pa.Table, out_dir: str, name: str, index: int | str, contract: str = "cutouts") -> str:
    """Validate ``table`` against ``contract`` and write it as ``out_dir/name-index.parquet``.

    The file appears atomically (written under a temporary name, then moved).
    Returns the final path.
    """
    table = conform_table(table, contract, f"shard {name}-{index}")
    stem = f"{name}-{index:05d}" if isinstance(index, int) else f"{name}-{index}"
    final = out_dir.rstrip("/") + f"/{stem}.parquet"
    # JPEG bytes do not compress: the cutouts contract is stored uncompressed.
    write_parquet_atomic(table, final, compression="zstd" if contract != "cutouts" else "none")
    return final if "://" in out_dir else filesystem_and_path(final)[1]


def list_shards(path: str | list[str], contract: str | None = "cutouts") -> list[str]:
    """All Parquet files under ``path`` (a file, a directory, or a list of them), sorted.

    Hidden and temporary files (``.name``, ``_name``) are ignored. With ``contract``, each
    shard's schema is checked (reading only its footer).

    Raises
    ------
    SchemaError: nothing found, or a shard that does not match the contract.
    """
    paths = [path] if isinstance(path, str) else list(path)
    found: list[str] = []
    for p in paths:
        fs, base = filesystem_and_path(p)
        info = fs.get_file_info(base)
        if info.type == pafs.FileType.NotFound:
            raise SchemaError(f"{p}: no such file or directory (expected {contract or 'Parquet'} shards)")
        if info.type == pafs.FileType.File:
            files = [base]
        else:
            sel = pafs.FileSelector(base, recursive=True)
            files = [
                f.path for f in fs.get_file_info(sel)
                if f.type == pafs.FileType.File and f.path.endswith(".parquet")
                and not os.path.basename(f.path).startswith((".", "_"))
            ]
        prefix = p[: p.index("://") + 3] if "://" in p else ""
        found.extend(prefix + f if prefix and not f.startswith(prefix) else f for f in sorted(files))
    if not found:
        raise SchemaError(f"{path}: contains no Parquet shards")
    if contract is not None:
        for f in found:
            fs, fpath = filesystem_and_path(f)
            with fs.open_input_file(fpath) as fh:
                validate_schema(pq.read_schema(fh), contract, f)
    return found


def fingerprint_shards(files: list[str]) -> str:
    """A short, stable fingerprint of a set of shards (names, sizes, row counts).

    Cheap (reads footers only) and changes whenever a shard is added, removed or rewritten.
    """
    h = hashlib.sha256()
    for f in sorted(files):
        fs, fpath = filesystem_and_path(f)
        with fs.open_input_file(fpath) as fh:
            md = pq.read_metadata(fh)
            h.update(f"{os.path.basename(f)}:{fh.size()}:{md.num_rows};".encode())
    return h.hexdigest()[:16]
