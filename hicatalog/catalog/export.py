"""``hicatalog export``: a selection of a published catalog version as FITS or VOTable.

The rows are read from the version's files (:func:`hicatalog.catalog.reader.open_catalog`),
never from a directory listing: the current version, or a listed ``version``. A selection
is a cone or an RA/Dec box (the partitions whose HEALPix pixel cannot hold a row of it are
not opened; the Dec range and the status / ``p_cnn`` cuts are pushed down to the Parquet
scan, whose row-group statistics skip the rest), a ``p_cnn`` cut, ``status`` and
``env_status`` values, the columns and a row limit.

Both formats are written as they are read, one batch of at most :data:`BATCH_ROWS` rows at a
time, so memory stays flat whatever the size of the selection: a first pass over the
selection counts its rows and measures the widest value of each string column (fixed widths
and the row count go in the header), the second writes the header and then the rows, the
same fixed-width big-endian records in both (:func:`_rows`): a FITS binary table, or a
VOTable 1.4 whose BINARY2 stream (base64) puts the null flags before each record. A local
output is written to a temporary file renamed into place; an output URL (``s3://``) is
collected in memory and uploaded as one object (:func:`hicatalog.storage.write_atomic`).

Metadata, from the contract ``schemas/hi_catalog.json`` and the manifest: each column's unit
(FITS ``TUNITn`` / VOTable ``unit``, in the format's unit syntax: :func:`unit_strings`), UCD
(``TUCDn`` / ``ucd``), description (``TCOMMn`` / ``DESCRIPTION``); nulls as NaN (floats),
``TNULLn`` = :data:`INT_NULL` (integers), empty (strings), and in a VOTable also the null
flag of every null value; text as ASCII (other characters as escapes); the provenance
(:func:`provenance`) as ``HIERARCH HICATALOG ...`` keywords of the table HDU (long values
continued with ``CONTINUE`` cards, ``LONGSTRN``) / VOTable ``INFO`` elements.

An empty selection writes a valid table of no rows (``ExportResult.rows == 0``; the command
says so): a region without galaxies is an answer, not an error.
"""

from __future__ import annotations

import gzip
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from hicatalog import __version__, storage
from hicatalog.catalog.reader import CatalogVersion, open_catalog
from hicatalog.errors import ConfigError, OutputError
from hicatalog.schemas import describe
from hicatalog.sky import wrap_ra

__all__ = ["export_catalog", "ExportResult", "Selection", "provenance", "show_result",
           "unit_strings", "FORMATS", "INT_NULL", "BATCH_ROWS", "ANY"]

log = logging.getLogger(__name__)

#: Output suffixes of each format (``format=None``: chosen by the suffix of ``out``).
FORMATS = {"fits": (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz"),
           "votable": (".vot", ".votable", ".xml")}
#: The FITS ``TNULLn`` of every integer column: the smallest value of its type.
INT_NULL = {pa.int64(): np.iinfo(np.int64).min, pa.int32(): np.iinfo(np.int32).min,
            pa.int16(): np.iinfo(np.int16).min}
#: Rows per batch read and written (the unit of memory of an export).
BATCH_ROWS = 65_536
#: The ``status`` / ``env_status`` value that selects every row.
ANY = "any"
_FITS_TYPES = {pa.float64(): ("D", ">f8"), pa.float32(): ("E", ">f4"), pa.int64(): ("K", ">i8"),
               pa.int32(): ("J", ">i4"), pa.int16(): ("I", ">i2"), pa.bool_(): ("L", "i1")}
_STRING_TYPES = (pa.string(), pa.large_string(), pa.string_view())


# ----------------------------------------------------------------------------- the selection


@dataclass(frozen=True)
class Selection:
    """Which rows: ``cone`` ``(ra, dec, radius)`` deg (great-circle distance <= radius);
    ``box`` ``(ra_min, ra_max, dec_min, dec_max)`` deg (RA taken mod 360, ``ra_min > ra_max``
    crosses RA 0, ``ra_max - ra_min >= 360`` is every RA; bounds included); ``min_p_cnn``:
    ``p_cnn > min_p_cnn`` (a null ``p_cnn`` fails); ``status`` / ``env_status``: that value
    (:data:`ANY`: every value); ``limit``: at most this many rows, the first in the order of
    the version's files (HEALPix order)."""

    cone: tuple[float, float, float] | None = None
    box: tuple[float, float, float, float] | None = None
    min_p_cnn: float | None = None
    status: str = "ok"
    env_status: str = ANY
    limit: int | None = None

    def describe(self) -> str:
        """One line: every cut of the selection (``status='ok'; min_p_cnn=0.9; ...``)."""
        parts = []
        if self.cone is not None:
            parts.append("cone(ra, dec, radius)=({}, {}, {}) deg".format(*self.cone))
        if self.box is not None:
            parts.append("box(ra_min, ra_max, dec_min, dec_max)=({}, {}, {}, {}) deg"
                         .format(*self.box))
        for name in ("status", "env_status"):
            if getattr(self, name) != ANY:
                parts.append(f"{name}={getattr(self, name)!r}")
        if self.min_p_cnn is not None:
            parts.append(f"p_cnn>{self.min_p_cnn}")
        if self.limit is not None:
            parts.append(f"limit={self.limit}")
        return "; ".join(parts) or "all rows"

    @property
    def spatial(self) -> bool:
        """Whether a cone or a box is given (rows without a valid position never match)."""
        return self.cone is not None or self.box is not None

    def dec_range(self) -> tuple[float, float] | None:
        """The Dec range (deg) every selected row lies in, or None (no spatial cut)."""
        if self.cone is not None:
            _, dec, r = self.cone
            return max(-90.0, dec - r), min(90.0, dec + r)
        if self.box is not None:
            return self.box[2], self.box[3]
        return None

    def pushdown(self) -> ds.Expression | None:
        """The cuts the Parquet scan applies (exact for status, env_status and p_cnn; the
        Dec range of a cone or box, which lets row-group statistics skip row groups)."""
        terms = [ds.field(n) == getattr(self, n) for n in ("status", "env_status")
                 if getattr(self, n) != ANY]
        if self.min_p_cnn is not None:
            terms.append(ds.field("p_cnn") > self.min_p_cnn)
        dec = self.dec_range()
        if dec is not None:
            terms.append((ds.field("dec") >= dec[0]) & (ds.field("dec") <= dec[1]))
        expr = None
        for t in terms:
            expr = t if expr is None else expr & t
        return expr

    def mask(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """Bool ``(N,)``: rows inside the cone / box (all True without one). ``ra``, ``dec``:
        float64 ``(N,)`` deg."""
        ok = np.ones(len(ra), bool)
        with np.errstate(invalid="ignore"):
            if self.cone is not None:
                ok &= _within_cone(ra, dec, *self.cone)
            if self.box is not None:
                ok &= _within_box(ra, dec, *self.box)
        return ok


def _within_cone(ra: np.ndarray, dec: np.ndarray, ra0: float, dec0: float,
                 radius: float) -> np.ndarray:
    """Great-circle distance to (ra0, dec0) <= radius (haversine; all in deg)."""
    d1, d2 = np.radians(dec), np.radians(dec0)
    hav = (np.sin((d1 - d2) / 2) ** 2
           + np.cos(d1) * np.cos(d2) * np.sin(np.radians(ra - ra0) / 2) ** 2)
    return hav <= np.sin(np.radians(radius) / 2) ** 2


def _within_box(ra: np.ndarray, dec: np.ndarray, ra_min: float, ra_max: float,
                dec_min: float, dec_max: float) -> np.ndarray:
    """Dec in [dec_min, dec_max] and RA (mod 360) in [ra_min, ra_max], crossing RA 0 when
    ra_min > ra_max (mod 360); every RA when ra_max - ra_min >= 360."""
    in_dec = (dec >= dec_min) & (dec <= dec_max)
    if ra_max - ra_min >= 360.0:
        return in_dec & np.isfinite(ra)
    r, lo, hi = wrap_ra(ra), float(wrap_ra(ra_min)), float(wrap_ra(ra_max))
    in_ra = (r >= lo) & (r <= hi) if lo <= hi else (r >= lo) | (r <= hi)
    return in_dec & in_ra


def _selection(cone: Any, box: Any, min_p_cnn: float | None, status: str, env_status: str,
               limit: int | None) -> Selection:
    """The :class:`Selection` of the parameters; ConfigError naming the one that is wrong."""
    if cone is not None and box is not None:
        raise ConfigError("give cone or box, not both", params=("cone", "box"))
    if cone is not None:
        cone = _numbers(cone, 3, "cone", "(ra, dec, radius) in deg")
        if not (-90.0 <= cone[1] <= 90.0 and 0.0 < cone[2] <= 180.0):
            raise ConfigError(f"cone={cone}: expected dec in [-90, 90] and a radius in "
                              "(0, 180] deg", params=("cone",))
    if box is not None:
        box = _numbers(box, 4, "box", "(ra_min, ra_max, dec_min, dec_max) in deg")
        if not -90.0 <= box[2] <= box[3] <= 90.0:
            raise ConfigError(f"box={box}: expected -90 <= dec_min <= dec_max <= 90",
                              params=("box",))
    if min_p_cnn is not None and not 0.0 <= min_p_cnn < 1.0:
        raise ConfigError(f"min_p_cnn={min_p_cnn}: expected a value in [0, 1)",
                          params=("min_p_cnn",))
    if limit is not None and limit < 1:
        raise ConfigError(f"limit={limit}: expected at least 1 row", params=("limit",))
    return Selection(cone=cone, box=box, min_p_cnn=min_p_cnn, status=status,
                     env_status=env_status, limit=limit)


def _numbers(values: Any, n: int, name: str, what: str) -> tuple[float, ...]:
    """``values`` as ``n`` finite floats; ConfigError naming ``name`` otherwise."""
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        out = ()
    if len(out) != n or not all(np.isfinite(out)):
        raise ConfigError(f"{name}={values!r}: expected {n} finite numbers {what}",
                          params=(name,))
    return out


# ----------------------------------------------------------------------------- the files


def _cells(selection: Selection, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)``: ranges of order-29 HEALPix indices covering the cone or box
    (cdshealpix's MOC at ``depth``, cells that overlap it included), sorted by ``lo``; the two
    zones of a box across RA 0 may give overlapping ranges."""
    import astropy.units as u
    from astropy.coordinates import Angle, Latitude, Longitude
    from cdshealpix import nested

    if selection.cone is not None:
        ra, dec, r = selection.cone
        found = [nested.cone_search(Longitude(float(wrap_ra(ra)) * u.deg), Latitude(dec * u.deg),
                                    Angle(r * u.deg), depth)]
    else:
        ra_min, ra_max, dec_min, dec_max = selection.box
        eps = 1e-9  # zones exclude their upper edges; the box includes them
        lat = (Latitude(max(-90.0, dec_min - eps) * u.deg),
               Latitude(min(90.0, dec_max + eps) * u.deg))
        lo, hi = float(wrap_ra(ra_min)), float(wrap_ra(ra_max)) + eps
        top = float(np.nextafter(360.0, 0.0))
        spans = ([(0.0, top)] if ra_max - ra_min >= 360.0
                 else [(lo, min(hi, top))] if lo <= hi - eps else [(lo, top), (0.0, hi)])
        found = [nested.zone_search(Longitude(a * u.deg), lat[0], Longitude(b * u.deg), lat[1],
                                    depth) for a, b in spans]
    ipix = np.concatenate([f[0] for f in found]).astype(np.int64)
    shift = 2 * (29 - np.concatenate([f[1] for f in found]).astype(np.int64))
    order = np.argsort(ipix << shift)
    return (ipix << shift)[order], ((ipix + 1) << shift)[order]


def files_to_read(cat: CatalogVersion, selection: Selection) -> list[str]:
    """The files of ``cat`` that may hold selected rows: without a cone or box every file;
    with one, the partitions whose HEALPix pixel overlaps it (the rows without a valid
    position never match one)."""
    if not selection.spatial:
        return list(cat.files)
    if not cat.pixels:
        return []
    lo, hi = _cells(selection, max(k for k, _ in cat.pixels))
    reach = np.maximum.accumulate(hi)  # the furthest any range starting at or before lo[i] reaches
    keep = []
    for (k, p), f in zip(cat.pixels, cat.files, strict=False):
        a, b = p << (2 * (29 - k)), (p + 1) << (2 * (29 - k))
        i = np.searchsorted(lo, b, side="left") - 1
        if i >= 0 and reach[i] > a:
            keep.append(f)
    return keep


def _batches(files: list[str], columns: list[str], selection: Selection,
             rows: int | None = None) -> Iterator[pa.RecordBatch]:
    """The selected rows of ``files`` (in their order), ``columns`` only, in batches of at
    most :data:`BATCH_ROWS`; at most ``rows`` (default: the selection's limit)."""
    left = selection.limit if rows is None else rows
    read = list(dict.fromkeys([*columns, *(["ra", "dec"] if selection.spatial else [])]))
    expr = selection.pushdown()
    for f in files:
        fs, path = storage.filesystem_and_path(f)
        scan = ds.dataset(path, format="parquet", filesystem=fs).to_batches(
            columns=read, filter=expr, batch_size=BATCH_ROWS, batch_readahead=1,
            fragment_readahead=1)
        for batch in scan:
            if selection.spatial:
                keep = selection.mask(batch.column("ra").to_numpy(zero_copy_only=False),
                                      batch.column("dec").to_numpy(zero_copy_only=False))
                batch = batch.filter(pa.array(keep)).select(columns)
            if left is not None:
                batch = batch.slice(0, left)
                left -= batch.num_rows
            if batch.num_rows:
                yield batch
            if left == 0:
                return


# ----------------------------------------------------------------------------- columns


def _ascii(col: pa.Array) -> pa.Array:
    """A string column as FITS holds text: ASCII (other characters as Python's backslash
    escapes: ``\\xe9``, ``\\u2013``), nulls as empty strings."""
    col = pc.fill_null(col.cast(pa.string()), "")
    if len(col) == 0 or pc.all(pc.string_is_ascii(col)).as_py():
        return col
    return pa.array([s.encode("ascii", "backslashreplace").decode() for s in col.to_pylist()],
                    pa.string())


@dataclass
class _Scan:
    """The first pass: rows selected and the widest value (bytes, ASCII) of each string
    column."""

    rows: int = 0
    widths: dict[str, int] = field(default_factory=dict)


def _scan(files: list[str], schema: pa.Schema, selection: Selection) -> _Scan:
    """Count the selected rows and measure the string columns of ``schema``; reads only the
    string columns (and those the selection needs)."""
    strings = [f.name for f in schema if f.type in _STRING_TYPES]
    out = _Scan(widths=dict.fromkeys(strings, 1))
    for batch in _batches(files, strings or ["ra"], selection):
        out.rows += batch.num_rows
        for name in strings:
            width = pc.max(pc.binary_length(_ascii(batch.column(name)))).as_py() or 0
            out.widths[name] = max(out.widths[name], width)
    return out


def _columns(requested: list[str] | None, schema: pa.Schema) -> list[str]:
    """The columns to write: ``requested`` (in that order) or every contract column the
    version has; ConfigError naming an unknown one."""
    contract = [c["name"] for c in describe("hi_catalog")]
    there = [c for c in contract if c in schema.names]
    if not requested:
        return there
    unknown = [c for c in requested if c not in there]
    if unknown:
        raise ConfigError(f"columns: unknown column(s) {', '.join(map(repr, unknown))}; "
                          f"expected some of: {', '.join(there)}", params=("columns",))
    return list(dict.fromkeys(requested))


def unit_strings(unit: str) -> tuple[str, str]:
    """``(FITS, VOUnit)`` strings of a contract unit: astropy's spelling in each standard
    (``Mpc^-2`` -> ``Mpc-2``, ``Mpc**-2``); a unit neither standard knows (``dex``) as
    written for FITS and quoted for VOUnit (``'dex'``: VOUnit's syntax of a unit not to be
    parsed, which astropy reads back as the unit ``dex``, not as deci-ex)."""
    import astropy.units as u

    try:
        q = u.Unit(unit)
        return q.to_string("fits"), q.to_string("vounit")
    except (ValueError, TypeError):
        return unit, f"'{unit}'"


def _column_meta(columns: list[str]) -> dict[str, dict[str, Any]]:
    """``{name: {"unit", "ucd", "description"}}`` of ``columns`` from the contract."""
    rows = {c["name"]: c for c in describe("hi_catalog")}
    return {n: {k: rows[n][k] for k in ("unit", "ucd", "description")} for n in columns}


# ----------------------------------------------------------------------------- provenance


def provenance(cat: CatalogVersion, selection: Selection, rows: int) -> dict[str, tuple[Any, str]]:
    """``{KEY: (value, comment)}``: where the rows come from, as the FITS header
    (``HIERARCH HICATALOG KEY``) and the VOTable ``INFO`` elements (``name = key``) carry it.

    From the manifest: the catalog, the version and its entry's ``created`` and ``build_ids``,
    the current version; and, when the exported version is the current one, the build that
    published it (``build_id``, ``model_id``, ``code_version``, ``created``; a manifest records
    only the current version's build, so an older version's export has no such keys: its
    rows carry ``build_id`` and ``model_id`` columns). Then the selection, the rows and the
    hicatalog that exported.
    """
    m = cat.manifest
    entry = m.entry(cat.version)
    out: dict[str, tuple[Any, str]] = {
        "CATALOG": (cat.catalog, "catalog directory (its _manifest.json)"),
        "VERSION": (cat.version, "published catalog version exported"),
        "CURRENT_VERSION": (m.version, "current version when exported"),
        "VERSION_CREATED": (entry.created or "", "when the version was published (UTC)"),
        "BUILD_IDS": (" ".join(entry.build_ids), "builds whose rows the version holds"),
    }
    if cat.version == m.version:
        build = m.build
        out.update({
            "BUILD_ID": (build.build_id, "build that published the version"),
            "MODEL_ID": (build.model_id or "", "models of that build (regression+pr)"),
            "CODE_VERSION": (build.code_version or "", "hicatalog version of that build"),
            "BUILD_CREATED": (build.created or "", "when that build ran (UTC)"),
        })
    out.update({
        "SELECTION": (selection.describe(), "rows selected"),
        "ROWS": (rows, "rows exported"),
        "EXPORTED_BY": (f"hicatalog {__version__}", "software that wrote this file"),
        "EXPORTED": (storage.utc_timestamp(), "when this file was written (UTC)"),
    })
    return out


def _text(value: Any) -> Any:
    """A header value as FITS holds it (strings in printable ASCII)."""
    if isinstance(value, str):
        return value.encode("ascii", "backslashreplace").decode()
    return value


# ----------------------------------------------------------------------------- FITS


def _row_dtype(schema: pa.Schema, widths: dict[str, int], flags: int = 0) -> np.dtype:
    """The big-endian numpy record of one row of ``schema`` as FITS and VOTable BINARY2 write
    it: strings ``S{width}`` (NUL-padded ASCII), numbers big-endian; with ``flags`` > 0 a
    leading field ``_nulls`` of that many bytes (BINARY2's null flags)."""
    out = [("_nulls", "u1", (flags,))] if flags else []
    for f in schema:
        if f.type in _STRING_TYPES:
            out.append((f.name, f"S{widths[f.name]}"))
        elif f.type in _FITS_TYPES:
            out.append((f.name, _FITS_TYPES[f.type][1]))
        else:
            raise TypeError(f"column {f.name!r}: no FITS/VOTable type for Arrow type {f.type}")
    return np.dtype(out)


def _rows(batch: pa.RecordBatch, dtype: np.dtype) -> np.ndarray:
    """The rows of ``batch`` as records of ``dtype`` (:func:`_row_dtype`): nulls as NaN
    (floats), :data:`INT_NULL` (integers), empty (strings), 0 (booleans; else ``T``/``F``);
    the null flags (one bit per column, first column in the high bit) when ``dtype`` has
    them."""
    out = np.zeros(batch.num_rows, dtype)
    names = [n for n in dtype.names if n != "_nulls"]
    for name in names:
        col = batch.column(name)
        if col.type in _STRING_TYPES:
            out[name] = _ascii(col).to_numpy(zero_copy_only=False).astype(dtype[name])
        elif col.type == pa.bool_():
            v = pc.fill_null(col, False).to_numpy(zero_copy_only=False)
            out[name] = np.where(col.is_null().to_numpy(zero_copy_only=False), 0,
                                 np.where(v, ord("T"), ord("F")))
        elif col.type in INT_NULL:
            out[name] = pc.fill_null(col, INT_NULL[col.type]).to_numpy(zero_copy_only=False)
        else:
            out[name] = pc.fill_null(col, float("nan")).to_numpy(zero_copy_only=False)
    if "_nulls" in dtype.names:
        null = np.stack([batch.column(n).is_null().to_numpy(zero_copy_only=False)
                         for n in names], axis=1)
        out["_nulls"] = np.packbits(null, axis=1, bitorder="big")
    return out


# ----------------------------------------------------------------------------- FITS


def _fits_header(schema: pa.Schema, widths: dict[str, int], rows: int,
                 meta: dict[str, dict[str, Any]], prov: dict[str, tuple[Any, str]]) -> Any:
    """The header of the binary table HDU: ``rows`` rows of ``schema`` (``TFORMn``,
    ``TNULLn`` of the integers), each column's ``TUNITn``, ``TUCDn``, ``TCOMMn``, then the
    provenance as ``HIERARCH HICATALOG`` keywords."""
    from astropy.io import fits

    cols = [fits.Column(name=f.name, format=f"{widths[f.name]}A") if f.type in _STRING_TYPES
            else fits.Column(name=f.name, format=_FITS_TYPES[f.type][0],
                             null=INT_NULL.get(f.type)) for f in schema]
    header = fits.BinTableHDU.from_columns(cols, nrows=0).header
    header["NAXIS2"] = rows
    header["EXTNAME"] = "HI_CATALOG"
    for i, c in enumerate(cols, start=1):
        m = meta[c.name]
        after = f"TFORM{i}"
        for key, value in ((f"TCOMM{i}", m["description"]), (f"TUCD{i}", m["ucd"]),
                           (f"TUNIT{i}", unit_strings(m["unit"])[0] if m["unit"] else "")):
            if value:
                header.set(key, _text(value), after=after)
    header["LONGSTRN"] = ("OGIP 1.0", "long strings continue on CONTINUE cards")
    for key, (value, comment) in prov.items():
        card = fits.Card(f"HIERARCH HICATALOG {key}", _text(value))
        bare = card.image.rstrip()
        # the comment where it fits (a continued long string carries it on its last card)
        if len(bare) > 80 or len(bare) + 3 + len(comment) <= 80:
            card.comment = comment
        header.append(card)
    return header


def _write_fits(sink: BinaryIO, batches: Iterator[pa.RecordBatch], schema: pa.Schema,
                scan: _Scan, meta: dict[str, dict[str, Any]],
                prov: dict[str, tuple[Any, str]]) -> int:
    """Write a primary HDU and the binary table of ``batches`` to ``sink``, batch by batch;
    returns the rows written (must be ``scan.rows``)."""
    from astropy.io import fits

    dtype = _row_dtype(schema, scan.widths)
    primary = fits.PrimaryHDU().header
    primary["EXTEND"] = True
    sink.write(primary.tostring().encode("ascii"))
    sink.write(_fits_header(schema, scan.widths, scan.rows, meta, prov).tostring()
               .encode("ascii"))
    rows = 0
    for batch in batches:
        sink.write(_rows(batch, dtype).tobytes())
        rows += batch.num_rows
    if rows != scan.rows:
        raise RuntimeError(f"wrote {rows} rows, the first pass counted {scan.rows}")
    sink.write(b"\0" * (-(rows * dtype.itemsize) % 2880))
    return rows


# ----------------------------------------------------------------------------- VOTable

_VOTABLE_TYPES = {pa.float64(): "double", pa.float32(): "float", pa.int64(): "long",
                  pa.int32(): "int", pa.int16(): "short", pa.bool_(): "boolean"}
#: Bytes of BINARY2 data base64-encoded at a time (a multiple of 57: whole 76-char lines).
_B64_CHUNK = 57 * 1024


def _votable_head(schema: pa.Schema, widths: dict[str, int], rows: int,
                  meta: dict[str, dict[str, Any]]) -> str:
    """The VOTable 1.4 document up to the BINARY2 stream: one ``FIELD`` per column (datatype,
    ``char`` arraysize, unit, ucd, ``DESCRIPTION``)."""
    from xml.sax.saxutils import escape, quoteattr

    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             '<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">',
             ' <RESOURCE type="results">', f'  <TABLE name="hi_catalog" nrows="{rows}">']
    for f in schema:
        m = meta[f.name]
        attrs = {"name": f.name, "ID": f.name,
                 "datatype": "char" if f.type in _STRING_TYPES else _VOTABLE_TYPES[f.type]}
        if f.type in _STRING_TYPES:
            attrs["arraysize"] = str(widths[f.name])
        if m["unit"]:
            attrs["unit"] = unit_strings(m["unit"])[1]
        if m["ucd"]:
            attrs["ucd"] = m["ucd"]
        text = " ".join(f"{k}={quoteattr(v)}" for k, v in attrs.items())
        lines.append(f"   <FIELD {text}><DESCRIPTION>{escape(m['description'])}</DESCRIPTION>"
                     "</FIELD>")
    lines.append('   <DATA><BINARY2><STREAM encoding="base64">')
    return "\n".join(lines) + "\n"


def _votable_tail(prov: dict[str, tuple[Any, str]]) -> str:
    """The end of the document: the stream's end, then the provenance as ``INFO``
    elements of the ``TABLE``."""
    from xml.sax.saxutils import escape, quoteattr

    infos = [f"   <INFO name={quoteattr(k.lower())} value={quoteattr(str(v))}>{escape(c)}"
             "</INFO>" for k, (v, c) in prov.items()]
    return "\n".join(["</STREAM></BINARY2></DATA>", *infos, "  </TABLE>", " </RESOURCE>",
                      "</VOTABLE>"]) + "\n"


def _write_votable(sink: BinaryIO, batches: Iterator[pa.RecordBatch], schema: pa.Schema,
                   scan: _Scan, meta: dict[str, dict[str, Any]],
                   prov: dict[str, tuple[Any, str]]) -> int:
    """Write a VOTable (BINARY2) of ``batches`` to ``sink``, batch by batch: the rows as FITS
    holds them (:func:`_rows`) behind BINARY2's null flags, base64-encoded in whole lines;
    returns the rows written (must be ``scan.rows``)."""
    import base64

    dtype = _row_dtype(schema, scan.widths, flags=(len(schema) + 7) // 8)
    sink.write(_votable_head(schema, scan.widths, scan.rows, meta).encode())
    rows, pending = 0, b""
    for batch in batches:
        pending += _rows(batch, dtype).tobytes()
        cut = len(pending) - len(pending) % _B64_CHUNK
        for i in range(0, cut, _B64_CHUNK):
            sink.write(base64.encodebytes(pending[i:i + _B64_CHUNK]))
        pending = pending[cut:]
        rows += batch.num_rows
    if rows != scan.rows:
        raise RuntimeError(f"wrote {rows} rows, the first pass counted {scan.rows}")
    sink.write(base64.encodebytes(pending) + _votable_tail(prov).encode())
    return rows


# ----------------------------------------------------------------------------- the export


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_catalog` wrote: ``out``, ``format``, ``rows`` (0: an empty table),
    the catalog ``version``, the ``columns``, the ``selection`` (one line), the partition
    files searched of those the version has (``files_read`` / ``partitions``: the files a cone
    or box overlaps, or all; a limit may stop before the last) and ``seconds``."""

    out: str
    format: str
    rows: int
    version: int
    columns: list[str]
    selection: str
    files_read: int
    partitions: int
    seconds: float


def _output_format(out: str, format: str | None) -> str:
    """``format``, or the one the suffix of ``out`` names; ConfigError when neither says or
    they disagree."""
    name = storage.basename(out).lower()
    by_suffix = next((f for f, sufs in FORMATS.items() if name.endswith(sufs)), None)
    if format not in (None, *FORMATS):
        raise ConfigError(f"format={format!r}: expected one of {', '.join(FORMATS)}",
                          params=("format",))
    if format is None and by_suffix is None:
        known = ", ".join(s for sufs in FORMATS.values() for s in sufs)
        raise ConfigError(f"out={out}: cannot tell the format from its suffix (one of {known}); "
                          "give format", params=("format", "out"))
    if format is not None and by_suffix is not None and format != by_suffix:
        raise ConfigError(f"format={format!r} but out={out} names a {by_suffix} file",
                          params=("format", "out"))
    return format or by_suffix


def _sink_writer(fmt: str, out: str, write: Any) -> Any:
    """The function :func:`hicatalog.storage.write_atomic` calls with the output stream:
    ``write(stream)``, through gzip for a ``.gz`` FITS file."""
    if not (fmt == "fits" and out.lower().endswith(".gz")):
        return write

    def gzipped(sink: Any) -> None:
        with gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=6, mtime=0) as gz:
            write(gz)
    return gzipped


def export_catalog(catalog: str, out: str, *, version: int | None = None,
                   format: str | None = None, cone: tuple[float, float, float] | None = None,
                   box: tuple[float, float, float, float] | None = None,
                   min_p_cnn: float | None = None, status: str = "ok", env_status: str = ANY,
                   columns: list[str] | None = None, limit: int | None = None,
                   overwrite: bool = False) -> ExportResult:
    """Write a selection of a published version of ``catalog`` (a directory or URL with a
    ``_manifest.json``) to ``out`` as a FITS binary table or a VOTable.

    ``version``: a listed version (default: the current one). ``format``: ``"fits"`` or
    ``"votable"`` (default: by the suffix of ``out``: ``.fits``, ``.fit``, ``.fts``, each
    optionally ``.gz``; ``.vot``, ``.votable``, ``.xml``). The selection (:class:`Selection`):
    ``cone`` ``(ra, dec, radius)`` deg, ``box`` ``(ra_min, ra_max, dec_min, dec_max)`` deg
    (``ra_min > ra_max`` crosses RA 0), ``min_p_cnn`` (``p_cnn > min_p_cnn``), ``status`` and
    ``env_status`` (a value, or ``"any"``), ``limit`` (the first rows in HEALPix order).
    ``columns``: the columns to write, in that order (default: every contract column).
    ``overwrite``: replace an existing ``out``.

    The recommended cut for reliable M is ``status='ok'`` and ``p_cnn > 0.9``; for the
    environment columns, also ``env_status='ok'``.

    Returns the :class:`ExportResult`; an empty selection writes a table of no rows.

    Raises
    ------
    InputNotFoundError: no catalog manifest at ``catalog``. InputError: ``version`` is not
        listed. ConfigError: a bad or unknown parameter value or column. OutputError: ``out``
        exists (without ``overwrite``).
    """
    t0 = time.perf_counter()
    fmt = _output_format(out, format)
    selection = _selection(cone, box, min_p_cnn, status, env_status, limit)
    if not overwrite and storage.is_file(out):
        raise OutputError(f"{out} exists; choose another out or set overwrite=True",
                          params=("out", "overwrite"))
    cat = open_catalog(catalog, version)
    stored = storage.read_parquet_schema(cat.files[-1])
    names = _columns(columns, stored)
    schema = pa.schema([stored.field(n) for n in names])
    files = files_to_read(cat, selection)
    scan = _scan(files, schema, selection)
    meta, prov = _column_meta(names), provenance(cat, selection, scan.rows)
    batches = _batches(files, names, selection, rows=scan.rows)
    written: list[int] = []

    def write(sink: Any) -> None:
        if fmt == "fits":
            written.append(_write_fits(sink, batches, schema, scan, meta, prov))
        else:
            written.append(_write_votable(sink, batches, schema, scan, meta, prov))

    storage.write_atomic(out, _sink_writer(fmt, out, write))
    read = sum(1 for f in files if f != cat.files[-1])
    log.info("exported %d rows of version %d to %s (%d of %d partitions searched)", written[0],
             cat.version, out, read, len(cat.pixels))
    return ExportResult(out=out, format=fmt, rows=written[0], version=cat.version, columns=names,
                        selection=selection.describe(), files_read=read,
                        partitions=len(cat.pixels), seconds=round(time.perf_counter() - t0, 3))


def show_result(result: ExportResult, params: dict[str, Any]) -> int:
    """Print what ``hicatalog export`` wrote (one line; an empty selection says so)."""
    what = (f"{result.rows} rows" if result.rows else
            "0 rows (the selection is empty: an empty table was written)")
    print(f"exported {what} of version {result.version} ({result.selection}) to {result.out} "
          f"as {result.format}: {len(result.columns)} columns, {result.files_read} of "
          f"{result.partitions} partitions searched, {result.seconds:.1f} s")
    return 0
