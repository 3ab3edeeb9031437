"""The target list of ``hicatalog fetch``: which galaxies to fetch, and the labels they carry.

A target list is a Parquet file or directory, or a CSV file (``.csv`` or ``.csv.gz``), local
or a URL, with one row per galaxy: ``object_id``, ``ra``, ``dec`` (deg, ICRS) and any other
columns. The ``labels`` table of ``hicatalog labels`` is one as it stands.

The columns copied from a target into its cutout shard row are fixed by the ``cutouts``
contract (:func:`hicatalog.schemas.table_spec`), not by a list kept here: ``z`` (a required
contract column, null when the target list has none) and every optional contract column,
see :func:`label_columns`.

``object_id`` follows the project's id rule (:mod:`hicatalog.ids`): text or integers, read
exactly; a floating-point id column that cannot be exact is an error.

``fetch --limit N`` works on a fixed subset of the list, :func:`limit_subset`: the same N and
seed give the same rows, whatever is already stored, so a rerun resumes it.
"""

from __future__ import annotations

import csv
import functools
import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.fs as pafs

from hicatalog.errors import InputError, InputNotFoundError
from hicatalog.ids import text_ids
from hicatalog.schemas import table_spec
from hicatalog.storage import filesystem_and_path, read_parquet

__all__ = ["TARGET_COLUMNS", "STRATUM_COLUMN", "label_columns", "read_targets", "limit_order",
           "limit_subset"]

#: The column whose values ``--limit`` samples in proportion (the sample: a40A, nibles, ...).
STRATUM_COLUMN = "dataset"

#: Columns every target list must have: ``object_id`` (read as string), ``ra``, ``dec``
#: (deg, read as float64).
TARGET_COLUMNS = ("object_id", "ra", "dec")


@functools.cache
def label_columns() -> tuple[str, ...]:
    """Names of the optional columns of the ``cutouts`` contract, in contract order.

    These are the labels a target list may carry into the shards (e.g. ``m_true``,
    ``detected``, ``dataset``); a column added to the contract is carried with no other
    edit. The contract's required columns (``object_id``, ``ra``, ``dec``, ``z``,
    ``survey``, ``image``) are not labels: the fetch writes each of them itself.
    """
    spec = table_spec("cutouts")
    return tuple(f.name for f in spec.schema if f.name not in spec.required)


def read_targets(path: str) -> pa.Table:
    """Read a target list: Parquet (file or directory) or CSV, local path or URL.

    Returns the table with its rows in file order and every column kept: ``object_id`` as
    string, ``ra`` and ``dec`` as float64 (deg; not checked here, the fetch flags bad
    positions per row), and ``z`` and the :func:`label_columns` that are present cast to their
    ``cutouts`` contract types (``z`` float64, ``m_true`` float32, ``detected`` bool, ...).
    Other columns keep their types. CSV header names are taken with blanks around them
    stripped. ``object_id`` is read by :func:`hicatalog.ids.text_ids`: CSV values as text
    (leading zeros survive), integer columns exactly, blanks stripped.

    Raises
    ------
    InputNotFoundError: the path does not exist. IdError: ``object_id`` is a floating-point
        column that cannot hold the ids exactly. InputError: the file cannot be read, a column
        of :data:`TARGET_COLUMNS` is missing or cannot be cast, ``z`` or a label column cannot
        be cast to its contract type, an ``object_id`` is null, or object_ids repeat (the
        message gives up to five of them).
    """
    fs, p = filesystem_and_path(path)
    info = fs.get_file_info(p)
    if info.type == pafs.FileType.NotFound:
        raise InputNotFoundError(f"target list {path!r} does not exist (expected Parquet or CSV)")
    try:
        if p.lower().endswith((".csv", ".csv.gz")):
            with fs.open_input_stream(p, compression="detect") as fh:
                data = fh.read()
            header = next(csv.reader([data.split(b"\n", 1)[0].decode("utf-8-sig").rstrip("\r")]))
            id_cols = {h: pa.string() for h in header if h.strip() == "object_id"}
            table = pacsv.read_csv(
                pa.BufferReader(data),
                convert_options=pacsv.ConvertOptions(
                    column_types=id_cols, strings_can_be_null=True
                ),
            )
            table = table.rename_columns([c.strip() for c in table.column_names])
        else:
            table = read_parquet(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(
            f"target list {path!r} cannot be read as Parquet or CSV: {exc}"
        ) from None
    missing = [c for c in TARGET_COLUMNS if c not in table.column_names]
    if missing:
        raise InputError(
            f"target list {path!r} is missing column(s) {missing}; expected object_id, ra, dec "
            f"(found {table.column_names})"
        )
    ids = text_ids(table.column("object_id"), f"target list {path!r}: column 'object_id'",
                   allow_missing=True)
    table = table.set_column(table.column_names.index("object_id"), "object_id",
                             pa.array(ids.tolist(), pa.string()))
    try:
        for c in ("ra", "dec"):
            table = _cast_column(table, c, pa.float64())
    except pa.ArrowException as exc:
        raise InputError(f"target list {path!r}: cannot read object_id/ra/dec: {exc}") from None
    spec = table_spec("cutouts")
    for c in ("z", *label_columns()):
        if c in table.column_names:
            want = spec.field(c).type
            try:
                table = _cast_column(table, c, want)
            except pa.ArrowException:
                raise InputError(
                    f"target list {path!r}: label column {c!r} has type "
                    f"{table.column(c).type}, expected {want} (it is copied into the cutout "
                    f"shards)"
                ) from None
    n_null = table.column("object_id").null_count
    if n_null:
        raise InputError(f"target list {path!r}: {n_null} row(s) have no object_id")
    counts = pc.value_counts(table.column("object_id"))
    dup = [v["values"].as_py() for v in counts if v["counts"].as_py() > 1]
    if dup:
        raise InputError(
            f"target list {path!r}: object_id must be unique, {len(dup)} value(s) repeat "
            f"(e.g. {dup[:5]})"
        )
    return table


def _cast_column(table: pa.Table, name: str, to: pa.DataType) -> pa.Table:
    return table.set_column(table.column_names.index(name), name, table.column(name).cast(to))


def _stratum_rank(object_ids: list[str], seed: int) -> np.ndarray:
    """A seeded pseudo-random rank key per object_id (uint64): BLAKE2b of ``seed:object_id``,
    so a row's place depends on its id and the seed only, not on the file order."""
    return np.array([
        int.from_bytes(hashlib.blake2b(f"{seed}:{i}".encode(), digest_size=8).digest(), "big")
        for i in object_ids], dtype=np.uint64)


def limit_order(targets: pa.Table, seed: int = 0) -> np.ndarray:
    """Row indices of ``targets`` in the order ``fetch --limit`` takes them (int64 ``(N,)``).

    Stratified by :data:`STRATUM_COLUMN` (``dataset``; a null value is a stratum of its own;
    without the column the whole list is one stratum): within a stratum of ``n_s`` rows the
    rows are in a seeded pseudo-random order (:func:`_stratum_rank` of ``seed`` and
    ``object_id``), the row of rank ``r`` gets the key ``(r + 0.5) / n_s``, and all rows are
    sorted by key (ties by stratum name). Every prefix of the order therefore holds each
    stratum in proportion to its size (within one row): the first 200 rows of a labels table
    written sample by sample hold detections and non-detections alike.
    """
    n = targets.num_rows
    ids = targets.column("object_id").to_pylist()
    if STRATUM_COLUMN in targets.column_names:
        strata = ["" if v is None else f"={v}" for v in targets.column(STRATUM_COLUMN).to_pylist()]
    else:
        strata = [""] * n
    names = sorted(set(strata))
    code = np.array([names.index(s) for s in strata], dtype=np.int64) if n else np.zeros(0, int)
    rank_key = _stratum_rank(ids, seed)
    key = np.zeros(n, dtype=np.float64)
    for k in range(len(names)):
        rows = np.flatnonzero(code == k)
        ranked = rows[np.argsort(rank_key[rows], kind="stable")]
        key[ranked] = (np.arange(len(ranked)) + 0.5) / len(ranked)
    return np.lexsort((code, key)).astype(np.int64)


def limit_subset(targets: pa.Table, limit: int | None, seed: int = 0) -> np.ndarray:
    """Bool mask ``(N,)`` of the rows ``fetch --limit limit`` works on: the first ``limit`` of
    :func:`limit_order` (every row when ``limit`` is None or >= N). The same ``limit`` and
    ``seed`` give the same rows, and a larger ``limit`` keeps every row of a smaller one."""
    n = targets.num_rows
    mask = np.zeros(n, dtype=bool)
    if limit is None or limit >= n:
        mask[:] = True
    else:
        mask[limit_order(targets, seed)[:limit]] = True
    return mask
