"""Parquet image shards: writing them atomically, finding them, fingerprinting them, and
reading what survey and image size they hold.

A shard directory holds ``part-NNNNN.parquet`` files of the ``cutouts`` contract (JPEG bytes
as served, never re-encoded). Shards are written to a temporary name and renamed, so a killed
writer never leaves a half-written shard that a reader would trust. Paths may be local or any
fsspec/pyarrow URL (``s3://``, ``gs://``).
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from hicatalog import storage
from hicatalog.cutouts.decode import ImageDecodeError, read_jpeg_header
from hicatalog.imaging import SURVEYS
from hicatalog.schemas import SchemaError, conform_table, validate_schema
from hicatalog.storage import filesystem_and_path

__all__ = [
    "TARGET_SHARD_BYTES",
    "rows_per_shard_for",
    "shard_writer",
    "write_shard",
    "list_shards",
    "fingerprint_shards",
    "CutoutGeometry",
    "probe_cutouts",
]

#: Shard size the design asks for (about 128 MiB).
TARGET_SHARD_BYTES = 128 * 1024**2


def rows_per_shard_for(bytes_per_row: float, target_bytes: int = TARGET_SHARD_BYTES) -> int:
    """Rows per shard that give shards of about ``target_bytes`` (at least one row)."""
    return max(1, int(target_bytes // max(bytes_per_row, 1.0)))


def shard_writer(table: pa.Table, label: str, contract: str = "cutouts") -> Callable[[Any], None]:
    """``table`` checked against ``contract`` (:func:`~hicatalog.schemas.conform_table`;
    ``label`` names it in errors), as a function that writes it as a Parquet shard to the
    binary sink it is given (what :func:`hicatalog.storage.write_atomic` takes). JPEG bytes do
    not compress: the cutouts contract is stored uncompressed, other contracts with zstd."""
    table = conform_table(table, contract, f"shard {label}")
    compression = "zstd" if contract != "cutouts" else "none"
    return lambda sink: pq.write_table(table, sink, compression=compression)


def write_shard(table: pa.Table, out_dir: str, name: str, index: int | str, contract: str = "cutouts") -> str:
    """Validate ``table`` against ``contract`` and write it as ``out_dir/name-index.parquet``.

    The file appears atomically (written under a temporary name, then moved).
    Returns the final path.
    """
    stem = f"{name}-{index:05d}" if isinstance(index, int) else f"{name}-{index}"
    final = out_dir.rstrip("/") + f"/{stem}.parquet"
    storage.write_atomic(final, shard_writer(table, stem, contract))
    return final if "://" in out_dir else filesystem_and_path(final)[1]


def list_shards(path: str | list[str], contract: str | None = "cutouts") -> list[str]:
    """All Parquet files under ``path`` (a file, a directory, or a list of them), sorted.

    Files and directories whose name starts with ``.`` or ``_`` (temporary files, status
    tables, ``_fetch_history/``) are ignored. With ``contract``, each
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
            # Like pyarrow datasets, skip any file or directory whose name starts with "." or
            # "_" (temporary files, _fetch_status.parquet, _fetch_history/, _done/).
            files = [
                f.path for f in fs.get_file_info(sel)
                if f.type == pafs.FileType.File and f.path.endswith(".parquet")
                and not any(part.startswith((".", "_"))
                            for part in f.path[len(base):].strip("/").split("/"))
            ]
        prefix = p[: p.index("://") + 3] if "://" in p else ""
        found.extend(prefix + f if prefix and not f.startswith(prefix) else f for f in sorted(files))
    if not found:
        raise SchemaError(f"{path}: contains no Parquet shards")
    if contract is not None:
        for f in found:
            validate_schema(storage.read_parquet_schema(f), contract, f)
    return found


def fingerprint_shards(files: list[str]) -> str:
    """A short, stable fingerprint of a set of shards (names, sizes, row counts).

    Cheap (reads footers only) and changes whenever a shard is added, removed or rewritten.
    The file is opened by hand, not through :func:`hicatalog.storage.open_parquet`: its size
    and its footer come through one handle (one request on an object store).
    """
    h = hashlib.sha256()
    for f in sorted(files):
        fs, fpath = filesystem_and_path(f)
        with fs.open_input_file(fpath) as fh:
            md = pq.read_metadata(fh)
            h.update(f"{os.path.basename(f)}:{fh.size()}:{md.num_rows};".encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class CutoutGeometry:
    """What a set of cutout shards holds: ``survey`` (``"sdss"`` or ``"legacy"``) and
    ``side_px``, the side in px of the stored square JPEGs."""

    survey: str
    side_px: int


def probe_cutouts(files: list[str], n_probe: int = 64) -> CutoutGeometry:
    """The survey and cutout side of a set of cutout shards: the one rule that training, the
    catalog build and the evaluation apply to their inputs.

    ``survey``: every row's ``survey`` value is read (one small column per shard); a set of
    shards holds exactly one survey, since a model is trained for one survey's bands and pixel
    scale. ``side_px``: the most common side among the first ``n_probe`` readable JPEG
    headers (in shard order); rows of another size get ``wrong_size`` when decoded.

    Raises
    ------
    SchemaError: no rows, a null or unknown survey, more than one survey (with the count of
        each), or no readable JPEG among the rows.
    """
    surveys: Counter[str | None] = Counter()
    sides: Counter[int] = Counter()
    n_read = 0
    for f in files:
        with storage.open_parquet(f) as pf:
            counts = pc.value_counts(pf.read(columns=["survey"]).column("survey"))
            for item in counts.to_pylist():
                surveys[item["values"]] += item["counts"]
            if n_read >= n_probe:
                continue
            for rb in pf.iter_batches(batch_size=n_probe, columns=["image"]):
                for data in rb.column(0).to_pylist()[: n_probe - n_read]:
                    n_read += 1
                    try:
                        w, h = read_jpeg_header(data)
                    except ImageDecodeError:
                        continue  # counted with its status when the row is decoded
                    if w == h:
                        sides[w] += 1
                if n_read >= n_probe:
                    break
    where = f"{files[0]} ..." if len(files) > 1 else (files[0] if files else "no shards")
    if not surveys:
        raise SchemaError(f"{where}: the cutout shards hold no rows")
    bad = sorted(str(s) for s in surveys if s not in SURVEYS)
    if bad:
        raise SchemaError(f"{where}: survey values {bad} are not one of {list(SURVEYS)}")
    if len(surveys) > 1:
        raise SchemaError(
            f"{where}: the cutouts mix surveys {dict(sorted(surveys.items()))}; a model is "
            "trained for and applied to one survey: give each survey's shards separately"
        )
    if not sides:
        raise SchemaError(f"{where}: no readable square JPEG among the first {n_read} cutouts")
    return CutoutGeometry(survey=next(iter(surveys)), side_px=sides.most_common(1)[0][0])
