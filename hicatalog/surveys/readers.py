"""Readers for the published catalogs, by their real file formats and column names.

Every reader takes a local path or any fsspec URL (``s3://``, ``https://``, ...), checks that
the file carries the published columns, and returns a ``pyarrow.Table`` with *canonical*
snake_case columns (listed in each docstring) so that the selections never see the survey
teams' spellings. CSV goes through ``pyarrow.csv``; FITS tables through ``astropy.io.fits``.

A file that is not what it claims raises :class:`CatalogFormatError` naming the file, the
missing published column(s) and the columns found.

Three rules hold for every reader, CSV and FITS alike:

- **Column names** are matched with surrounding blanks stripped (``" PhotoObjID "`` is
  ``PhotoObjID``).
- **Ids** (``AGCNr``, ``PhotoObjID``, ``PHOTOID``, ``SPECOBJID``, ``GASS``, ``nibles_id``,
  ``NSAID``) and integer codes are read exactly by :mod:`hicatalog.ids`: CSV fields are read
  as text and never inferred as numbers, so a 64-bit id never goes through float64, whether
  the column has empty fields or not; an id stored as floating point that cannot be exact is
  an error.
- **Missing values** (empty fields, NaN, +-inf and the published sentinels such as -9999,
  -99 or 99.99 where they are sentinels) become NaN through
  :func:`hicatalog.surveys.quality.null_missing`, so that "valid" means ``isfinite``
  downstream. Any other value is kept as measured, however extreme (e.g. log M_HI = 3.76 for
  a nearby dwarf); the ``labels`` table flags extremes (:mod:`hicatalog.surveys.quality`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from astropy.io import fits

from hicatalog.errors import CatalogFormatError
from hicatalog.ids import IdError, int_ids, text_ids
from hicatalog.sky import valid_coordinates
from hicatalog.surveys.quality import null_missing

__all__ = [
    "CatalogFormatError",
    "read_a40",
    "read_a40_sdss",
    "read_a100",
    "read_mpajhu",
    "read_xgass",
    "read_nibles",
    "read_nsa",
    "sdss_objid",
    "photo_key_from_objid",
]


def _open_bytes(path: str) -> bytes:
    try:
        with fsspec.open(path, "rb", compression="infer") as fh:
            return fh.read()
    except FileNotFoundError:
        raise CatalogFormatError(f"{path}: no such file") from None


def _read_csv(path: str) -> dict[str, np.ndarray]:
    """Every column of a CSV file as text: an object array ``(N,)`` of ``str`` (blanks
    stripped) or ``None`` (empty field), keyed by the stripped header name. Nothing is
    inferred as a number here: the readers convert each column by its kind."""
    data = _open_bytes(path)
    try:
        first_line = data.split(b"\n", 1)[0].decode("utf-8-sig").rstrip("\r")
        header = next(csv.reader([first_line]))
    except (StopIteration, UnicodeDecodeError) as exc:
        raise CatalogFormatError(f"{path}: cannot be parsed as CSV: {exc}") from None
    try:
        t = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(column_names=header, skip_rows=1),
            parse_options=pacsv.ParseOptions(newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in header},
                strings_can_be_null=True,
                null_values=[""],
            ),
        )
    except pa.ArrowInvalid as exc:
        raise CatalogFormatError(f"{path}: cannot be parsed as CSV: {exc}") from None
    out = {}
    for c in t.column_names:
        text = [None if v is None else (v.strip() or None) for v in t.column(c).to_pylist()]
        out[c.strip()] = np.array(text, dtype=object)
    return out


def _read_fits_columns(path: str) -> dict[str, np.ndarray]:
    """All columns of the first binary-table HDU of a FITS file, as native-endian arrays
    (text columns as ``str`` arrays), keyed by the stripped column name."""
    data = _open_bytes(path)
    try:
        with fits.open(io.BytesIO(data), memmap=False) as hdul:
            hdu = next((h for h in hdul if isinstance(h, fits.BinTableHDU)), None)
            if hdu is None:
                raise CatalogFormatError(f"{path}: FITS file has no binary table extension")
            out = {}
            for name in hdu.columns.names:
                arr = np.asarray(hdu.data[name])
                if arr.dtype.kind in "iuf" and arr.dtype.byteorder not in ("=", "|"):
                    arr = arr.astype(arr.dtype.newbyteorder("="))
                out[name.strip()] = arr
            return out
    except OSError as exc:
        raise CatalogFormatError(f"{path}: cannot be read as FITS: {exc}") from None


def _read_any(path: str) -> dict[str, np.ndarray]:
    """CSV (by extension ``.csv``/``.csv.gz``/``.txt``, every column as text) or FITS."""
    if path.lower().endswith((".csv", ".csv.gz", ".txt")):
        return _read_csv(path)
    return _read_fits_columns(path)


class _Columns(dict):
    """Canonical name -> column, remembering the file and each column's published name."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path
        self.names: dict[str, str] = {}

    def measure(self, canon: str) -> np.ndarray:
        """The column as a measured float64 quantity (:func:`_measure`)."""
        return _measure(self[canon], canon, self.path, self.names[canon])

    def int(self, canon: str) -> np.ndarray:
        """The column as a required exact int64 id or code (:func:`_int`)."""
        return _int(self[canon], self.path, self.names[canon])

    def text_id(self, canon: str) -> np.ndarray:
        """The column as a required exact text id (:func:`_text_id`)."""
        return _text_id(self[canon], self.path, self.names[canon])


def _pick(cols: dict[str, np.ndarray], path: str, what: str, spec: dict[str, Sequence[str]],
          optional: dict[str, Sequence[str]] | None = None) -> _Columns:
    """Map published names (first alias found, blanks around names ignored) to canonical
    names; error on missing ones."""
    stripped = {k.strip(): v for k, v in cols.items()}
    out, missing = _Columns(path), []
    for canon, aliases in spec.items():
        name = next((a for a in aliases if a in stripped), None)
        if name is None:
            missing.append(" or ".join(repr(a) for a in aliases))
        else:
            out[canon], out.names[canon] = stripped[name], name
    if missing:
        raise CatalogFormatError(
            f"{path} is not a valid {what} file: missing column(s) {', '.join(missing)} "
            f"(found {sorted(stripped)})"
        )
    for canon, aliases in (optional or {}).items():
        name = next((a for a in aliases if a in stripped), None)
        if name is not None:
            out[canon], out.names[canon] = stripped[name], name
    return out


def _measure(a: np.ndarray, canon: str, path: str, name: str) -> np.ndarray:
    """A measured column as float64 ``(N,)``, missing values (empty, NaN, inf, the column's
    sentinels) as NaN: :func:`hicatalog.surveys.quality.null_missing`. Text (CSV) is parsed
    here; text that is not a number is an error naming the file, column and value."""
    if a.dtype.kind in "OUS":
        vals = []
        for v in a.tolist():
            if v is None:
                vals.append(np.nan)
                continue
            text = v.decode() if isinstance(v, bytes) else str(v)
            try:
                vals.append(float(text.strip()) if text.strip() else np.nan)
            except ValueError:
                raise CatalogFormatError(
                    f"{path}: column {name!r} holds {text!r}, not a number") from None
        a = np.array(vals, dtype=np.float64)
    elif a.dtype.kind not in "iuf":
        raise CatalogFormatError(f"{path}: column {name!r} has type {a.dtype}, not a number")
    return null_missing(a, canon)


def _int(a: np.ndarray, path: str, name: str) -> np.ndarray:
    """A required integer id or code column, read exactly (:func:`hicatalog.ids.int_ids`)."""
    try:
        return int_ids(a, f"{path}: column {name!r}")[0]
    except IdError as exc:
        raise CatalogFormatError(str(exc)) from None


def _text_id(a: np.ndarray, path: str, name: str) -> np.ndarray:
    """A required id column as text, exactly (:func:`hicatalog.ids.text_ids`)."""
    try:
        return text_ids(a, f"{path}: column {name!r}")
    except IdError as exc:
        raise CatalogFormatError(str(exc)) from None


def _str(a: np.ndarray) -> np.ndarray:
    return np.array(["" if v is None else str(v).strip() for v in a.tolist()], dtype=object)


def _table(cols: dict[str, np.ndarray]) -> pa.Table:
    return pa.table({k: pa.array(v.tolist() if v.dtype == object else v) for k, v in cols.items()})


# ---------------------------------------------------------------------------------------------
# ALFALFA


_A40 = {
    "agc": ("AGCNr",),
    "ra_hi": ("HIra", "RAdeg_HI"),
    "dec_hi": ("HIdec", "Decdeg_HI", "DECdeg_HI"),
    "ra_oc": ("OCra", "RAdeg_OC"),
    "dec_oc": ("OCdec", "DECdeg_OC", "Decdeg_OC"),
    "vhelio": ("Vhelio",),
    "w50": ("W50",),
    "hi_flux": ("HIflux",),
    "dist_mpc": ("Dist",),
    "log_mhi": ("logMsun",),
    "hi_code": ("HIcode",),
    "oc_code": ("OCcode",),
}


def read_a40(path: str) -> pa.Table:
    """ALFALFA alpha.40 source catalog (Haynes et al. 2011), ``a40.datafile1.csv``.

    Published columns: ``AGCNr, Name, HIra, HIdec, OCra, OCdec, Vhelio, W50, errW50, HIflux,
    errflux, SNR, RMS, Dist, logMsun, HIcode, OCcode`` (positions in decimal degrees; the
    astroquery spellings ``RAdeg_HI, Decdeg_HI, RAdeg_OC, DECdeg_OC`` are accepted too).

    Returns canonical columns: ``agc`` int64, ``ra_hi, dec_hi, ra_oc, dec_oc`` float64 deg
    (NaN: no optical counterpart), ``vhelio`` km/s, ``w50`` km/s, ``hi_flux`` Jy km/s,
    ``dist_mpc`` Mpc, ``log_mhi`` log10 Msun (all float64, NaN where missing), ``hi_code``
    int64, ``oc_code`` string.
    """
    cols = _pick(_read_any(path), path, "ALFALFA a.40 (datafile1)", _A40)
    out = {
        "agc": cols.int("agc"),
        **{k: cols.measure(k) for k in ("ra_hi", "dec_hi", "ra_oc", "dec_oc", "vhelio", "w50",
                                         "hi_flux", "dist_mpc", "log_mhi")},
        "hi_code": cols.int("hi_code"),
        "oc_code": _str(cols["oc_code"]),
    }
    return _table(out)


def read_a40_sdss(path: str) -> pa.Table:
    """ALFALFA alpha.40 -- SDSS DR7 cross-match table (``a40.datafile3.csv``).

    Published columns used: ``AGCNr``, ``PhotoObjID`` (SDSS DR7 objID, a 64-bit integer;
    empty when there is no photometric match). CSV or FITS; the ids are read exactly
    (:mod:`hicatalog.ids`), never through float64.

    Returns: ``agc`` int64, ``photo_objid`` int64 (0 where empty), ``photo_key`` int64 (see
    :func:`photo_key_from_objid`; -1 where empty).
    """
    cols = _pick(_read_any(path), path, "ALFALFA a.40 SDSS cross-match (datafile3)",
                 {"agc": ("AGCNr",), "photo_objid": ("PhotoObjID", "PhotoObjId", "photoObjID")})
    try:
        objid, present = int_ids(cols["photo_objid"],
                                 f"{path}: column {cols.names['photo_objid']!r}",
                                 allow_missing=True)
    except IdError as exc:
        raise CatalogFormatError(str(exc)) from None
    present &= objid > 0
    key = np.where(present, photo_key_from_objid(objid), -1)
    return _table({"agc": cols.int("agc"), "photo_objid": np.where(present, objid, 0),
                   "photo_key": key})


_A100 = {
    "agc": ("AGCNr",),
    "ra_hi": ("RAdeg_HI",),
    "dec_hi": ("DECdeg_HI", "Decdeg_HI"),
    "ra_oc": ("RAdeg_OC",),
    "dec_oc": ("DECdeg_OC", "Decdeg_OC"),
    "vhelio": ("Vhelio",),
    "w50": ("W50",),
    "hi_flux": ("HIflux",),
    "dist_mpc": ("Dist",),
    "log_mhi": ("logMH",),
    "hi_code": ("HIcode",),
}


def read_a100(path: str) -> pa.Table:
    """ALFALFA alpha.100 catalog (Haynes et al. 2018), ``a100.code12.table2.190808.csv``.

    Published columns: ``AGCNr, Name, RAdeg_HI, DECdeg_HI, RAdeg_OC, DECdeg_OC, Vhelio, W50,
    sigW, W20, HIflux, sigflux, SNR, RMS, Dist, sigDist, logMH, siglogMH, HIcode``.

    Returns canonical columns as :func:`read_a40` (without ``oc_code``); an optical position
    of 0, 0 or empty (no counterpart) becomes NaN.
    """
    cols = _pick(_read_any(path), path, "ALFALFA a.100 (table2)", _A100)
    ra_oc, dec_oc = cols.measure("ra_oc"), cols.measure("dec_oc")
    none = (ra_oc == 0) & (dec_oc == 0)
    ra_oc[none] = np.nan
    dec_oc[none] = np.nan
    out = {
        "agc": cols.int("agc"),
        "ra_hi": cols.measure("ra_hi"), "dec_hi": cols.measure("dec_hi"),
        "ra_oc": ra_oc, "dec_oc": dec_oc,
        **{k: cols.measure(k) for k in ("vhelio", "w50", "hi_flux", "dist_mpc", "log_mhi")},
        "hi_code": cols.int("hi_code"),
    }
    return _table(out)


# ---------------------------------------------------------------------------------------------
# SDSS DR7 identifiers and MPA-JHU


def sdss_objid(run, rerun, camcol, field, obj, sky_version: int = 1) -> np.ndarray:
    """SDSS objID from its parts: bits 59-62 skyVersion (1 in DR7 ``best`` ids), 48-58
    rerun, 32-47 run, 29-31 camcol, 28 firstField (0), 16-27 field, 0-15 object number
    (e.g. 587722981741363294 = run 752, rerun 40, camcol 1, field 263, obj 94)."""
    run, rerun, camcol, field, obj = (np.asarray(a, dtype=np.int64)
                                      for a in (run, rerun, camcol, field, obj))
    return ((np.int64(sky_version) << 59) | (rerun << 48) | (run << 32) | (camcol << 29)
            | (field << 16) | obj)


def photo_key_from_objid(objid) -> np.ndarray:
    """An objID with skyVersion and firstField bits cleared: equal for the same photometric
    object whatever the catalog that wrote it (int64)."""
    objid = np.asarray(objid, dtype=np.int64)
    mask = np.int64((1 << 59) - 1) & ~np.int64(1 << 28)
    return objid & mask


def read_mpajhu(
    info_path: str,
    mass_path: str,
    sfr_path: str | None = None,
    oh_path: str | None = None,
) -> pa.Table:
    """The MPA-JHU SDSS DR7 value-added catalogs (row-aligned FITS files).

    ``gal_info_dr7_v5_2.fit`` (``RA``, ``DEC``, ``Z``, ``PHOTOID`` = [run, rerun, camcol,
    field, obj], optional ``SPECOBJID``, ``Z_WARNING``), ``totlgm_dr7_v5_2.fit`` (``MEDIAN``:
    log M*, Chabrier IMF), ``gal_totsfr_dr7_v5_2.fits`` (``MEDIAN``: log SFR) and
    ``gal_fiboh_dr7_v5_2.fits`` (``MEDIAN``: 12 + log O/H); row i of each file is the same
    spectrum.

    Returns: ``mpa_index`` int64 (row number), ``ra, dec`` float64 deg, ``z`` float64,
    ``z_ok`` bool (``Z_WARNING == 0`` when present), ``photo_key`` int64 (see
    :func:`photo_key_from_objid`), ``specobjid`` string (exact, from an integer or text
    column), ``log_mstar``, ``log_sfr``, ``oh`` float64 (NaN where missing, a sentinel such as
    -99 / -9999 / -1 for the mass, or the file was not given).

    Raises
    ------
    CatalogFormatError: a missing column, or files that are not row-aligned (row counts differ).
    """
    info = _pick(_read_fits_columns(info_path), info_path, "MPA-JHU gal_info",
                 {"ra": ("RA",), "dec": ("DEC",), "z": ("Z",), "photoid": ("PHOTOID",)},
                 {"specobjid": ("SPECOBJID",), "z_warning": ("Z_WARNING",)})
    n = len(info["ra"])
    photoid = np.asarray(info["photoid"])
    if photoid.ndim != 2 or photoid.shape[1] < 5:
        raise CatalogFormatError(
            f"{info_path}: column 'PHOTOID' must hold 5 integers per row "
            f"(run, rerun, camcol, field, obj), got shape {photoid.shape}"
        )
    parts = _int(photoid[:, :5].reshape(-1), info_path, "PHOTOID").reshape(n, 5)
    objid = sdss_objid(*(parts[:, k] for k in range(5)))
    out = {
        "mpa_index": np.arange(n, dtype=np.int64),
        **{k: info.measure(k) for k in ("ra", "dec", "z")},
        "z_ok": (info.int("z_warning") == 0) if "z_warning" in info else np.ones(n, bool),
        "photo_key": photo_key_from_objid(objid),
        "specobjid": info.text_id("specobjid") if "specobjid" in info
        else np.array([str(i) for i in range(n)], dtype=object),
    }
    for canon, path, what in (("log_mstar", mass_path, "MPA-JHU totlgm (stellar mass)"),
                              ("log_sfr", sfr_path, "MPA-JHU gal_totsfr (SFR)"),
                              ("oh", oh_path, "MPA-JHU gal_fiboh (metallicity)")):
        if path is None:
            out[canon] = np.full(n, np.nan)
            continue
        col = _pick(_read_fits_columns(path), path, what, {"median": ("MEDIAN",)})["median"]
        if len(col) != n:
            raise CatalogFormatError(
                f"{path} has {len(col)} rows but {info_path} has {n}: the MPA-JHU files must "
                "be row-aligned (same release, same order)"
            )
        out[canon] = _measure(col, canon, path, "MEDIAN")
    return _table(out)


# ---------------------------------------------------------------------------------------------
# xGASS, NIBLES, NSA


def read_xgass(path: str) -> pa.Table:
    """xGASS representative sample (Catinella et al. 2018), ``xGASS_representative_sample``
    as FITS or CSV.

    Published columns used: ``GASS`` (id), ``RA``, ``DEC``, ``zSDSS``, ``lgMstar``, ``lgMHI``
    and the detection flag: ``HIsrc`` (4 = non-detection, ``lgMHI`` is a 5-sigma upper limit)
    or, if absent, ``HI_FLAG`` (99 = non-detection).

    Returns: ``xgass_id`` string, ``ra, dec`` deg, ``z``, ``log_mstar``, ``log_mhi`` float64,
    ``upper_limit`` bool.
    """
    cols = _pick(_read_any(path), path, "xGASS representative sample",
                 {"gass": ("GASS",), "ra": ("RA",), "dec": ("DEC",), "z": ("zSDSS",),
                  "log_mstar": ("lgMstar",), "log_mhi": ("lgMHI",)},
                 {"hisrc": ("HIsrc",), "hi_flag": ("HI_FLAG",)})
    if "hisrc" in cols:
        upper = cols.int("hisrc") == 4
    elif "hi_flag" in cols:
        upper = cols.int("hi_flag") == 99
    else:
        raise CatalogFormatError(
            f"{path} is not a valid xGASS representative sample: missing column 'HIsrc' or "
            "'HI_FLAG' (which rows are upper limits)"
        )
    return _table({
        "xgass_id": cols.text_id("gass"),
        **{k: cols.measure(k) for k in ("ra", "dec", "z", "log_mstar", "log_mhi")},
        "upper_limit": upper,
    })


def read_nibles(path: str) -> pa.Table:
    """NIBLES H I detections (van Driel et al. 2016) with SDSS/MPA-JHU stellar masses, as the
    paper's code tabulates them: columns ``nibles_id, ra, dec, z, logMstar, logMHI``
    (CSV or FITS; ``NIBLES``/``RAJ2000``/``DEJ2000`` spellings accepted).

    Returns: ``nibles_id`` string, ``ra, dec`` deg, ``z``, ``log_mstar``, ``log_mhi`` float64.
    """
    cols = _pick(_read_any(path), path, "NIBLES",
                 {"nibles_id": ("nibles_id", "NIBLES"), "ra": ("ra", "RAJ2000"),
                  "dec": ("dec", "DEJ2000"), "z": ("z",), "log_mstar": ("logMstar",),
                  "log_mhi": ("logMHI",)})
    return _table({
        "nibles_id": cols.text_id("nibles_id"),
        **{k: cols.measure(k) for k in ("ra", "dec", "z", "log_mstar", "log_mhi")},
    })


def read_nsa(path: str) -> pa.Table:
    """NASA-Sloan Atlas v1.0.1 (``nsa_v1_0_1.fits``) as a ``tracers`` table.

    Published columns used: ``NSAID``, ``RA``, ``DEC``, ``Z``. Rows without a usable position
    (:func:`hicatalog.sky.valid_coordinates`) or without a redshift (missing, or a sentinel
    such as -9999) are dropped: they cannot be environment tracers. The result validates as
    the ``tracers`` contract: ``object_id`` (``"NSA<NSAID>"``), ``ra``, ``dec``, ``z``.
    """
    from hicatalog.schemas import conform_table, validate_table

    cols = _pick(_read_any(path), path, "NASA-Sloan Atlas",
                 {"nsaid": ("NSAID",), "ra": ("RA",), "dec": ("DEC",), "z": ("Z",)})
    ra, dec, z = cols.measure("ra"), cols.measure("dec"), cols.measure("z")
    keep = valid_coordinates(ra, dec) & np.isfinite(z)
    ids = cols.int("nsaid")[keep]
    table = pa.table({
        "object_id": pa.array([f"NSA{i}" for i in ids], pa.string()),
        "ra": ra[keep], "dec": dec[keep], "z": z[keep],
    })
    validate_table(table, "tracers", path)
    return conform_table(table, "tracers", path)
