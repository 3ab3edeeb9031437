"""The target list of ``hicatalog fetch``: which galaxies to fetch, and the labels they carry.

A target list is a Parquet file or directory, or a CSV file (``.csv`` or ``.csv.gz``), local
or a URL, with one row per galaxy: ``object_id``, ``ra``, ``dec`` (deg, ICRS) and any other
columns. The ``labels`` table of ``hicatalog labels`` is one as it stands.

The columns copied from a target into its cutout shard row are fixed by the ``cutouts``
contract (:func:`hicatalog.schemas.table_spec`), not by a list kept here: ``z`` (a required
contract column, null when the target list has none) and every optional contract column,
see :func:`label_columns`.
"""

from __future__ import annotations

import functools

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from hicatalog.schemas import table_spec
from hicatalog.storage import filesystem_and_path

__all__ = ["TARGET_COLUMNS", "label_columns", "read_targets"]

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
    Other columns keep their types. CSV ``object_id`` values are read as text, so leading
    zeros survive.

    Raises
    ------
    ValueError: the path does not exist or cannot be read, a column of
        :data:`TARGET_COLUMNS` is missing or cannot be cast, ``z`` or a label column cannot be
        cast to its contract type, an ``object_id`` is null, or object_ids repeat (the
        message gives up to five of them).
    """
    fs, p = filesystem_and_path(path)
    info = fs.get_file_info(p)
    if info.type == pafs.FileType.NotFound:
        raise ValueError(f"target list {path!r} does not exist (expected Parquet or CSV)")
    try:
        if p.lower().endswith((".csv", ".csv.gz")):
            with fs.open_input_stream(p, compression="detect") as fh:
                table = pacsv.read_csv(
                    fh,
                    convert_options=pacsv.ConvertOptions(
                        column_types={"object_id": pa.string()}, strings_can_be_null=True
                    ),
                )
        else:
            table = pq.read_table(p, filesystem=fs)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValueError(
            f"target list {path!r} cannot be read as Parquet or CSV: {exc}"
        ) from None
    missing = [c for c in TARGET_COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(
            f"target list {path!r} is missing column(s) {missing}; expected object_id, ra, dec "
            f"(found {table.column_names})"
        )
    try:
        table = _cast_column(table, "object_id", pa.string())
        for c in ("ra", "dec"):
            table = _cast_column(table, c, pa.float64())
    except pa.ArrowException as exc:
        raise ValueError(f"target list {path!r}: cannot read object_id/ra/dec: {exc}") from None
    spec = table_spec("cutouts")
    for c in ("z", *label_columns()):
        if c in table.column_names:
            want = spec.field(c).type
            try:
                table = _cast_column(table, c, want)
            except pa.ArrowException:
                raise ValueError(
                    f"target list {path!r}: label column {c!r} has type "
                    f"{table.column(c).type}, expected {want} (it is copied into the cutout "
                    f"shards)"
                ) from None
    n_null = table.column("object_id").null_count
    if n_null:
        raise ValueError(f"target list {path!r}: {n_null} row(s) have no object_id")
    counts = pc.value_counts(table.column("object_id"))
    dup = [v["values"].as_py() for v in counts if v["counts"].as_py() > 1]
    if dup:
        raise ValueError(
            f"target list {path!r}: object_id must be unique, {len(dup)} value(s) repeat "
            f"(e.g. {dup[:5]})"
        )
    return table


def _cast_column(table: pa.Table, name: str, to: pa.DataType) -> pa.Table:
    return table.set_column(table.column_names.index(name), name, table.column(name).cast(to))
