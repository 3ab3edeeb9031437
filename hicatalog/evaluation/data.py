"""Reading what the evaluation needs: a catalog directory, a truth table, cutout images.

- :func:`load_catalog` reads the current version of a catalog directory, resolved through its
  ``_manifest.json`` (:func:`hicatalog.catalog.reader.open_catalog`), or any Parquet file or
  directory of ``hi_catalog`` rows.
- :func:`load_truth` reads the mock's ``truth`` table, a real ``labels`` table or labelled
  cutout shards, and names the sample column ``dataset`` in every case.
- :func:`trained_on` reads what the models were trained on from the cards the build's
  manifest names.
- :func:`join_catalog_truth` joins them on ``object_id`` and keeps rows with ``status == 'ok'``,
  counting everything it drops.
- :func:`load_cutouts` decodes labelled cutout shards into arrays for the training analyses.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from hicatalog import storage
from hicatalog.catalog.manifest import MANIFEST_FILE
from hicatalog.catalog.reader import open_catalog
from hicatalog.cutouts.decode import decode_batch
from hicatalog.cutouts.shards import list_shards
from hicatalog.errors import InputNotFoundError, ModelError
from hicatalog.schemas import SchemaError, first_occurrences

__all__ = [
    "CatalogTruth",
    "load_catalog",
    "load_manifests",
    "load_truth",
    "join_catalog_truth",
    "trained_on",
    "Cutouts",
    "load_cutouts",
]

log = logging.getLogger("hicatalog.evaluation")

#: The catalog's float columns the evaluation reads when present (cast to float64).
_CATALOG_FLOATS = ("m_pred", "p_cnn", "z", "one_plus_delta5", "m_pred_std", "m_pred_err",
                   "m_lo68", "m_hi68", "m_lo95", "m_hi95", "p_detect")
_CATALOG_COLUMNS = ("object_id", "status", "build_id", *_CATALOG_FLOATS)
_TRUTH_COLUMNS = ("object_id", "m_true", "detected", "upper_limit", "log_mstar", "z",
                  "one_plus_delta5_true", "one_plus_delta5", "m_label", "label_is_limit",
                  "p_detect")


def _parquet_files(root: str) -> list[str]:
    if not (storage.is_file(root) or storage.is_dir(root)):
        raise InputNotFoundError(f"{root}: no such file or directory (expected a Parquet dataset)")
    try:
        return list_shards(root, contract=None)
    except SchemaError as exc:
        raise SchemaError(f"{exc} (expected a Parquet dataset)") from None


def _hive_values(path: str, root: str) -> dict[str, str]:
    parts = storage.relative(storage.parent(path), root).split("/")
    return dict(p.split("=", 1) for p in parts if "=" in p)


def load_manifests(catalog_dir: str) -> dict[str, Any]:
    """The ``_manifest.json`` in ``catalog_dir`` (a catalog's: every version listed in it), as
    ``{"_manifest.json": document}``; ``{}`` when there is none.

    Unreadable manifests are reported as ``{"error": ...}`` rather than raising.
    """
    out: dict[str, Any] = {}
    for p in storage.list_files(catalog_dir, suffix="_manifest.json"):
        if storage.basename(p) != "_manifest.json":
            continue
        rel = storage.relative(p, catalog_dir)
        try:
            out[rel] = storage.read_json(p)
        except (OSError, json.JSONDecodeError) as exc:
            out[rel] = {"error": f"cannot read {p}: {exc}"}
    return out


def _catalog_files(catalog_dir: str) -> tuple[list[str], str]:
    """``(files, root)``: a catalog directory's current version (through its manifest:
    :func:`hicatalog.catalog.reader.open_catalog`), else the Parquet file or directory itself."""
    if storage.is_dir(catalog_dir):
        manifest = storage.join(catalog_dir, MANIFEST_FILE)
        # one read of the whole file (a ranged read could mix it with a replacement)
        if storage.is_file(manifest) and "versions" in json.loads(
                storage.read_versioned(manifest)[0]):
            cat = open_catalog(catalog_dir)
            return cat.files, cat.path
        return _parquet_files(catalog_dir), catalog_dir
    return _parquet_files(catalog_dir), storage.parent(catalog_dir)


def load_catalog(catalog_dir: str) -> pl.DataFrame:
    """Read a ``hi_catalog``: the current version of a catalog directory, resolved through its
    ``_manifest.json`` (never by file times or a listing); or a Parquet file or directory of
    ``hi_catalog`` rows without a manifest (read recursively, in path order).

    Returns a DataFrame with ``object_id``, ``m_pred``, ``p_cnn``, ``status`` and, when present,
    ``z``, ``one_plus_delta5`` (1+delta5), ``m_pred_std`` (TTA spread), ``m_pred_err`` (predictive
    standard deviation), ``m_lo68``, ``m_hi68``, ``m_lo95``, ``m_hi95`` (predictive interval
    bounds, dex), ``p_detect`` (predicted detection probability), ``build_id``; plus ``_file``
    (source file). The float columns are float64.
    Hive partition keys in the path (``key=value``) are added as string columns when the file
    lacks them. Rows with ``status = 'duplicate_id'`` are left out (the build predicted the
    galaxy's first occurrence, which is in the catalog too). An ``object_id`` that still repeats
    keeps its first row (:func:`hicatalog.schemas.first_occurrences`), with a warning.

    Raises
    ------
    SchemaError: no Parquet files, or a file without ``object_id``/``m_pred``/``p_cnn``/``status``.
    ValueError: the catalog's manifest names a version that cannot be read.
    """
    files, root = _catalog_files(catalog_dir)
    frames = []
    for f in files:
        schema = storage.read_parquet_schema(f)
        hive = _hive_values(f, root)
        cols = [c for c in _CATALOG_COLUMNS if c in schema.names]
        missing = [c for c in ("object_id", "m_pred", "p_cnn", "status") if c not in cols and c not in hive]
        if missing:
            raise SchemaError(
                f"{f}: not a 'hi_catalog' table: missing column(s) {missing} "
                f"(expected object_id, m_pred, p_cnn, status)"
            )
        table = storage.read_parquet(f, cols)
        for key, value in hive.items():
            if key in _CATALOG_COLUMNS and key not in table.column_names:
                table = table.append_column(key, pa.array([value] * table.num_rows, pa.string()))
        df = pl.from_arrow(table)
        for c in _CATALOG_FLOATS:
            if c in df.columns:
                df = df.with_columns(pl.col(c).cast(pl.Float64))
        frames.append(df.with_columns(pl.lit(f).alias("_file")))
    cat = pl.concat(frames, how="diagonal_relaxed").filter(pl.col("status") != "duplicate_id")
    first = first_occurrences(cat.get_column("object_id").to_arrow())
    if len(first) < cat.height:
        log.warning("%s: %d rows repeat an object_id; kept the first row of each",
                    catalog_dir, cat.height - len(first))
        cat = cat[first]
    return cat


def load_truth(truth_path: str) -> pl.DataFrame:
    """Read the truth: a mock ``truth`` table, a real ``labels`` table or labelled cutouts.

    Returns ``object_id``, ``m_true`` (float64, dex; an upper limit where ``upper_limit``),
    ``dataset`` (string; from ``dataset``, else the mock's ``population``, else ``'all'``),
    ``upper_limit`` (bool; False where the table has none) and, when present, ``detected``
    (bool), ``log_mstar``, ``z``, ``one_plus_delta5_true`` (1+delta5; from
    ``one_plus_delta5_true`` or ``one_plus_delta5``), the mock's ``m_label`` and
    ``label_is_limit`` (the label a survey gives, and whether it is an upper limit; ``m_true``
    stays the true M) and its true detection probability as ``p_detect_true`` (renamed, so that
    it never meets the catalog's predicted ``p_detect``).

    Raises
    ------
    SchemaError: unreadable, or no ``object_id`` / ``m_true`` column.
    """
    files = _parquet_files(truth_path)
    frames = []
    for f in files:
        names = storage.read_parquet_schema(f).names
        missing = [c for c in ("object_id", "m_true") if c not in names]
        if missing:
            raise SchemaError(
                f"{f}: not a truth/labels table: missing column(s) {missing} "
                "(expected object_id, m_true and dataset or population)"
            )
        cols = [c for c in (*_TRUTH_COLUMNS, "dataset", "population") if c in names]
        frames.append(pl.from_arrow(storage.read_parquet(f, cols)))
    t = pl.concat(frames, how="diagonal_relaxed")
    if "dataset" in t.columns and "population" in t.columns:
        t = t.with_columns(pl.coalesce("dataset", "population").alias("dataset")).drop("population")
    elif "population" in t.columns:
        t = t.rename({"population": "dataset"})
    elif "dataset" not in t.columns:
        t = t.with_columns(pl.lit("all").alias("dataset"))
    t = t.with_columns(pl.col("dataset").cast(pl.String).fill_null("unknown"))
    if "upper_limit" in t.columns:
        t = t.with_columns(pl.col("upper_limit").cast(pl.Boolean).fill_null(False))
    else:
        t = t.with_columns(pl.lit(False).alias("upper_limit"))
    if "one_plus_delta5_true" not in t.columns and "one_plus_delta5" in t.columns:
        t = t.rename({"one_plus_delta5": "one_plus_delta5_true"})
    elif "one_plus_delta5" in t.columns:
        t = t.drop("one_plus_delta5")
    if "p_detect" in t.columns:
        t = t.rename({"p_detect": "p_detect_true"})
    for c in ("m_true", "log_mstar", "z", "one_plus_delta5_true", "m_label", "p_detect_true"):
        if c in t.columns:
            t = t.with_columns(pl.col(c).cast(pl.Float64))
    first = first_occurrences(t.get_column("object_id").to_arrow())
    if len(first) < t.height:
        log.warning("%s: %d repeated object_id values ignored (first row kept)", truth_path,
                    t.height - len(first))
        t = t[first]
    return t


def trained_on(manifest: dict[str, Any] | None) -> dict[str, Any]:
    """What the catalog's models were trained on, from the model cards its build manifest
    names (``manifest["models"][task]["path"]``; the card must carry the manifest's
    ``weights_sha256``).

    Returns ``{"regression": info, "pr": info}``; ``info`` is ``{"model_id", "train_samples",
    "negatives", "upper_limits_as_negatives", "sample_counts"}`` from the card, or ``{"unknown":
    reason}`` when there is no manifest, the card cannot be read or is of other weights, or the
    card records no samples (an older card, or shards without a ``dataset`` column).
    """
    from hicatalog.models.card import ModelCard

    out: dict[str, Any] = {}
    models = (manifest or {}).get("models") or {}
    for task in ("regression", "pr"):
        m = models.get(task) if isinstance(models, dict) else None
        if not isinstance(m, dict) or not m.get("path"):
            out[task] = {"unknown": "the catalog's _manifest.json names no model directory"}
            continue
        path = storage.join(str(m["path"]), "model_card.json")
        try:
            card = ModelCard.from_json(storage.read_bytes(path).decode(), path)
        except (OSError, ModelError) as exc:
            out[task] = {"unknown": f"cannot read {path}: {exc}"}
            continue
        if m.get("weights_sha256") and card.weights_sha256 != m["weights_sha256"]:
            out[task] = {"unknown": f"{path} is of other weights than the catalog's model"}
        elif card.train_samples is None:
            out[task] = {"unknown": f"{path} records no training samples"}
        else:
            out[task] = {"model_id": card.model_id, "train_samples": list(card.train_samples),
                         "negatives": card.negatives,
                         "upper_limits_as_negatives": card.upper_limits_as_negatives,
                         "sample_counts": card.sample_counts}
    return out


@dataclass
class CatalogTruth:
    """The joined table and the bookkeeping of every row that was not used."""

    table: pl.DataFrame
    counts: dict[str, Any] = field(default_factory=dict)


def join_catalog_truth(catalog: pl.DataFrame, truth: pl.DataFrame) -> CatalogTruth:
    """Inner-join catalog and truth on ``object_id``; keep ``status == 'ok'`` rows.

    ``table`` columns: the catalog's, plus the truth's (the truth's ``z`` becomes ``z_true``).
    ``counts``: ``n_catalog``, ``status_counts``, ``n_ok``, ``n_truth``, ``n_matched``
    (ok rows with a truth row), ``n_ok_without_truth``, ``n_truth_without_ok_row``.
    """
    status_counts = {
        str(r["status"]): int(r["len"]) for r in catalog.group_by("status").len().sort("status").iter_rows(named=True)
    }
    ok = catalog.filter(pl.col("status") == "ok")
    if "z" in truth.columns:
        truth = truth.rename({"z": "z_true"})
    joined = ok.join(truth, on="object_id", how="inner")
    counts = {
        "n_catalog": catalog.height,
        "status_counts": status_counts,
        "n_ok": ok.height,
        "n_truth": truth.height,
        "n_matched": joined.height,
        "n_ok_without_truth": ok.height - joined.height,
        "n_truth_without_ok_row": truth.height - joined.height,
    }
    return CatalogTruth(joined, counts)


@dataclass
class Cutouts:
    """Decoded cutouts: ``images`` ``uint8`` ``(N, 3, S, S)``; ``columns`` maps each requested
    label column to a numpy array of length N (NaN/None where null); rows that failed to
    decode are dropped and counted in ``n_bad``."""

    images: np.ndarray
    columns: dict[str, np.ndarray]
    n_bad: int = 0


def load_cutouts(
    data: str | list[str],
    columns: tuple[str, ...] = ("object_id", "m_true"),
    image_size: int | None = None,
    max_rows: int | None = None,
    seed: int = 0,
    filter_expr: Any = None,
) -> Cutouts:
    """Decode labelled cutout shards into arrays.

    Parameters
    ----------
    data: shard directory/file (or a list of them) of the ``cutouts`` contract.
    columns: label columns to return (absent ones raise :class:`SchemaError`).
    image_size: side of the returned images in px (``None``: the stored size of the first image).
    max_rows: keep a random subset of at most this many rows (chosen with ``seed``).
    filter_expr: optional ``pyarrow.compute`` expression applied before sampling.
    """
    files = list_shards(data, contract="cutouts")
    want = list(dict.fromkeys(("object_id", *columns, "image")))
    tables = []
    for f in files:
        names = storage.read_parquet_schema(f).names
        missing = [c for c in want if c not in names]
        if missing:
            raise SchemaError(f"{f}: cutout shard lacks column(s) {missing} needed here")
        tables.append(storage.read_parquet(f, want))
    table = pa.concat_tables(tables, promote_options="permissive")
    if filter_expr is not None:
        table = table.filter(filter_expr)
    if max_rows is not None and table.num_rows > max_rows:
        idx = np.sort(np.random.default_rng(seed).choice(table.num_rows, max_rows, replace=False))
        table = table.take(pa.array(idx))
    if table.num_rows == 0:
        raise SchemaError(f"{data}: no cutout rows to use")
    images = table.column("image").to_pylist()
    if image_size is None:
        from hicatalog.cutouts.decode import decode_jpeg

        image_size = decode_jpeg(images[0]).shape[0]
    batch = decode_batch(images, expected_size=None, out_size=image_size)
    keep = batch.ok
    cols = {}
    for c in columns:
        col = table.column(c)
        if pa.types.is_floating(col.type) or pa.types.is_integer(col.type):
            arr = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
        else:
            arr = np.asarray(col.to_pylist(), dtype=object)
        cols[c] = arr[keep]
    n_bad = int((~keep).sum())
    if n_bad:
        log.warning("%s: %d cutouts could not be decoded and were skipped", data, n_bad)
    return Cutouts(batch.images[keep], cols, n_bad)
