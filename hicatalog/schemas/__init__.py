"""The data contracts: Arrow schemas of every table that crosses a stage boundary.

Each table is one JSON file in the repository's top-level ``schemas/`` directory
(``cutouts.json``, ``tracers.json``, ``hi_catalog.json``, ``labels.json``, ``truth.json``,
``environment.json``) listing its columns with Arrow type names (``pa.type_for_alias``),
nullability, whether the column is required, units, IVOA UCDs (``ucd``, where given) and a
description. There is one copy of each file: a checkout, an editable install and a ``ray job
submit --working-dir`` upload read ``schemas/`` itself; a wheel ships the same files as
``hicatalog/schemas/contracts/`` (``pyproject.toml``), so every Ray worker that has
``hicatalog`` validates against the same contract.

One loader (:func:`load_schema`, :func:`table_spec`) and one validator (:func:`validate_schema`,
:func:`validate_table`, :func:`conform_table`) check every contract table; :func:`read_table`
reads and validates one.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hicatalog import storage
from hicatalog.errors import SchemaError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = [
    "SchemaError",
    "TableSpec",
    "table_names",
    "table_spec",
    "load_schema",
    "validate_schema",
    "validate_table",
    "conform_table",
    "read_table",
    "first_occurrences",
]

# Arrow types a reader may hand us that mean the same thing as the contract's type.
_EQUIVALENT = {
    pa.string(): (pa.string(), pa.large_string(), pa.string_view()),
    pa.binary(): (pa.binary(), pa.large_binary(), pa.binary_view()),
}


@dataclass(frozen=True)
class TableSpec:
    """A table contract: the full Arrow schema plus which columns are required/unique, and
    ``values``: for a column whose values are codes (``status``), each code and its meaning."""

    name: str
    description: str
    schema: pa.Schema
    required: tuple[str, ...]
    unique: tuple[str, ...]
    values: dict[str, dict[str, str]] = dataclass_field(default_factory=dict)

    def field(self, name: str) -> pa.Field:
        return self.schema.field(name)


def _contracts_dir() -> Traversable:
    """The directory holding the contract files: the source tree's top-level ``schemas/`` when
    this module runs from a source tree, else the copy inside the installed wheel."""
    source = Path(__file__).resolve().parents[2] / "schemas"
    if (source / "cutouts.json").is_file():
        return source
    return resources.files(__name__).joinpath("contracts")


def table_names() -> list[str]:
    """Names of all contracts (the ``*.json`` files of the contracts directory)."""
    files = _contracts_dir().iterdir()
    return sorted(p.name[:-5] for p in files if p.name.endswith(".json"))


@functools.cache
def table_spec(name: str) -> TableSpec:
    """Load the contract ``name`` (e.g. ``"cutouts"``)."""
    try:
        text = _contracts_dir().joinpath(f"{name}.json").read_text()
    except FileNotFoundError:
        raise SchemaError(
            f"unknown table contract {name!r}; expected one of {table_names()}"
        ) from None
    doc = json.loads(text)
    fields = []
    required = []
    for col in doc["fields"]:
        meta = {"description": col.get("description", "")}
        for key in ("unit", "ucd"):
            if col.get(key):
                meta[key] = col[key]
        fields.append(
            pa.field(col["name"], pa.type_for_alias(col["type"]), col["nullable"], metadata=meta)
        )
        if col.get("required", True):
            required.append(col["name"])
    schema = pa.schema(fields, metadata={"table": name, "description": doc["description"]})
    values = {col["name"]: dict(col["values"]) for col in doc["fields"] if "values" in col}
    return TableSpec(name, doc["description"], schema, tuple(required), tuple(doc["unique"]),
                     values)


def load_schema(name: str, include_optional: bool = True) -> pa.Schema:
    """The contract ``name`` as a ``pyarrow.Schema`` (optionally only required columns)."""
    spec = table_spec(name)
    if include_optional:
        return spec.schema
    return pa.schema([spec.schema.field(c) for c in spec.required], metadata=spec.schema.metadata)


def _type_ok(expected: pa.DataType, got: pa.DataType) -> bool:
    return got == expected or got in _EQUIVALENT.get(expected, ())


def validate_schema(schema: pa.Schema, name: str, source: str = "<table>") -> None:
    """Check that ``schema`` carries every required column of contract ``name`` with its type.

    Optional columns are checked for type when present; extra columns are allowed.

    Raises
    ------
    SchemaError: naming the source (file), every bad column and the expected type.
    """
    spec = table_spec(name)
    problems = []
    for fld in spec.schema:
        if fld.name not in schema.names:
            if fld.name in spec.required:
                problems.append(f"missing column '{fld.name}' (expected {fld.type})")
            continue
        got = schema.field(fld.name).type
        if not _type_ok(fld.type, got):
            problems.append(f"column '{fld.name}' has type {got}, expected {fld.type}")
    if problems:
        raise SchemaError(f"{source} is not a valid '{name}' table: " + "; ".join(problems))


def validate_table(
    table: pa.Table,
    name: str,
    source: str = "<table>",
    allow_empty: bool = False,
    check_unique: bool = True,
) -> None:
    """Validate schema, emptiness, nulls in non-nullable columns and uniqueness of keys."""
    validate_schema(table.schema, name, source)
    if table.num_rows == 0 and not allow_empty:
        raise SchemaError(f"{source} is an empty '{name}' table (0 rows)")
    spec = table_spec(name)
    for fld in spec.schema:
        if fld.name in table.column_names and not fld.nullable:
            nulls = table.column(fld.name).null_count
            if nulls:
                raise SchemaError(
                    f"{source}: column '{fld.name}' has {nulls} null values, but it is not nullable"
                )
    if check_unique:
        for col in spec.unique:
            n_unique = pc.count_distinct(table.column(col)).as_py()
            if n_unique != table.num_rows:
                raise SchemaError(
                    f"{source}: column '{col}' must be unique, "
                    f"found {table.num_rows - n_unique} duplicate values"
                )


def first_occurrences(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Row indices (int64, ascending) of the first occurrence of each distinct value.

    The project's one de-duplication rule: where a key (``object_id``) repeats, the first row
    in input order wins (shard order, then row order) and later rows are the duplicates. Nulls
    count as one value.
    """
    codes = pc.index_in(values, value_set=pc.unique(values)).fill_null(-1)
    _, first = np.unique(codes.to_numpy(zero_copy_only=False), return_index=True)
    return np.sort(first).astype(np.int64)


def conform_table(table: pa.Table, name: str, source: str = "<table>") -> pa.Table:
    """Validate, then select and cast the contract's columns in contract order.

    Optional columns that are absent stay absent; extra columns are dropped.
    """
    validate_schema(table.schema, name, source)
    spec = table_spec(name)
    cols, fields = [], []
    for fld in spec.schema:
        if fld.name in table.column_names:
            cols.append(table.column(fld.name).cast(fld.type))
            fields.append(fld)
    return pa.Table.from_arrays(cols, schema=pa.schema(fields, metadata=spec.schema.metadata))


def read_table(
    path: str,
    name: str,
    columns: list[str] | None = None,
    allow_empty: bool = False,
    check_unique: bool = True,
) -> pa.Table:
    """Read a Parquet file or directory (local path or URL, :func:`hicatalog.storage.read_parquet`)
    and validate it.

    Returns the table conformed to the contract (canonical types, contract column order).
    """
    try:
        table = storage.read_parquet(path, columns)
    except FileNotFoundError:
        raise SchemaError(f"{path}: no such file or directory (expected a '{name}' table)") from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise SchemaError(f"{path}: cannot be read as Parquet ('{name}' table): {exc}") from None
    if columns is None:
        validate_table(table, name, path, allow_empty=allow_empty, check_unique=check_unique)
        return conform_table(table, name, path)
    if table.num_rows == 0 and not allow_empty:
        raise SchemaError(f"{path} is an empty '{name}' table (0 rows)")
    return table


def describe(name: str) -> list[dict[str, Any]]:
    """Rows (name, type, unit, ucd, nullable, required, description, values) for
    documentation and the exports (``unit``, ``ucd``: ``""`` where the contract gives none;
    ``values``: the codes of a code column with their meanings, else ``{}``)."""
    spec = table_spec(name)
    out = []
    for fld in spec.schema:
        meta = {k.decode(): v.decode() for k, v in (fld.metadata or {}).items()}
        out.append(
            {
                "name": fld.name,
                "type": str(fld.type),
                "unit": meta.get("unit", ""),
                "ucd": meta.get("ucd", ""),
                "nullable": fld.nullable,
                "required": fld.name in spec.required,
                "description": meta.get("description", ""),
                "values": spec.values.get(fld.name, {}),
            }
        )
    return out
