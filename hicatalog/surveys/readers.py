"""Readers for the published catalogs, by their real file formats and column names.

Every reader takes a local path or any fsspec URL (``s3://``, ``https://``, ...), checks that
the file carries the published columns, and returns a ``pyarrow.Table`` with *canonical*
snake_case columns (listed in each docstring) so that the selections never see the survey
teams' spellings. CSV goes through ``pyarrow.csv``; FITS tables through ``astropy.io.fits``.

A file that is not what it claims raises :class:`CatalogFormatError` naming the file, the
missing published column(s) and the columns found.

Sentinels: the catalogs mark missing values with numbers (MPA-JHU ``-99``/``-9999``/``-1``;
empty CSV fields). Readers turn every value outside the physical range named in
:data:`VALID_RANGES` into ``NaN`` so that "valid" means ``isfinite`` downstream.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from astropy.io import fits

__all__ = [
    "CatalogFormatError",
    "VALID_RANGES",
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


class CatalogFormatError(ValueError):
    """A catalog file lacks a published column or cannot be parsed."""


#: Physical ranges outside which a value is a sentinel (missing), per canonical column.
VALID_RANGES: dict[str, tuple[float, float]] = {
    "log_mstar": (5.0, 13.0),   # log10 Msun; MPA-JHU uses -1 / -99 for "no estimate"
    "log_mhi": (5.0, 12.0),     # log10 Msun
    "log_sfr": (-10.0, 4.0),    # log10 Msun/yr; MPA-JHU uses -99 / -9999
    "oh": (7.0, 10.0),          # 12 + log(O/H); MPA-JHU uses -99 / -9999
    "z": (-0.01, 2.0),
}


def _open_bytes(path: str) -> bytes:
    try:
        with fsspec.open(path, "rb", compression="infer") as fh:
            return fh.read()
    except FileNotFoundError:
        raise CatalogFormatError(f"{path}: no such file") from None


def _read_csv(path: str, string_columns: Sequence[str] = ()) -> pa.Table:
    data = _open_bytes(path)
    try:
        return pacsv.read_csv(
            io.BytesIO(data),
            parse_options=pacsv.ParseOptions(newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in string_columns},
                strings_can_be_null=True,
                null_values=["", "NA", "NaN", "nan", "null", '""'],
            ),
        )
    except pa.ArrowInvalid as exc:
        raise CatalogFormatError(f"{path}: cannot be parsed as CSV: {exc}") from None


def _read_fits_columns(path: str) -> dict[str, np.ndarray]:
    """All columns of the first binary-table HDU of a FITS file, as native-endian arrays."""
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
                out[name] = arr
            return out
    except OSError as exc:
        raise CatalogFormatError(f"{path}: cannot be read as FITS: {exc}") from None


def _read_any(path: str, string_columns: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """CSV (by extension ``.csv``/``.csv.gz``) or FITS, as a dict of numpy arrays."""
    lower = path.lower()
    if lower.endswith((".csv", ".csv.gz", ".txt")):
        t = _read_csv(path, string_columns)
        out = {}
        for c in t.column_names:
            col = t.column(c)
            is_text = pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
            out[c] = (np.asarray(col.to_pylist(), dtype=object) if is_text
                      else col.to_numpy(zero_copy_only=False))
        return out
    return _read_fits_columns(path)


def _pick(cols: dict[str, np.ndarray], path: str, what: str, spec: dict[str, Sequence[str]],
          optional: dict[str, Sequence[str]] | None = None) -> dict[str, np.ndarray]:
    """Map published names (first alias found) to canonical names; error on missing ones."""
    stripped = {k.strip(): v for k, v in cols.items()}
    out, missing = {}, []
    for canon, aliases in spec.items():
        name = next((a for a in aliases if a in stripped), None)
        if name is None:
            missing.append(" or ".join(repr(a) for a in aliases))
        else:
            out[canon] = stripped[name]
    if missing:
        raise CatalogFormatError(
            f"{path} is not a valid {what} file: missing column(s) {', '.join(missing)} "
            f"(found {sorted(stripped)})"
        )
    for canon, aliases in (optional or {}).items():
        name = next((a for a in aliases if a in stripped), None)
        if name is not None:
            out[canon] = stripped[name]
    return out


def _float(a: np.ndarray, canon: str | None = None) -> np.ndarray:
    """float64 with None -> NaN, and values outside ``VALID_RANGES[canon]`` -> NaN."""
    arr = np.array([np.nan if v is None else v for v in a], dtype=np.float64) \
        if a.dtype == object else a.astype(np.float64)
    if canon in VALID_RANGES:
        lo, hi = VALID_RANGES[canon]
        with np.errstate(invalid="ignore"):
            arr = np.where((arr >= lo) & (arr <= hi), arr, np.nan)
    return arr


def _int(a: np.ndarray, path: str, name: str) -> np.ndarray:
    if a.dtype == object:
        if any(v is None for v in a):
            raise CatalogFormatError(
                f"{path}: column {name!r} has empty values (expected integers)")
        a = np.asarray(a.tolist())
    try:
        return a.astype(np.int64)
    except (TypeError, ValueError) as exc:
        raise CatalogFormatError(f"{path}: column {name!r} is not integer: {exc}") from None


def _str(a: np.ndarray) -> np.ndarray:
    return np.array(["" if v is None else str(v).strip() for v in a], dtype=object)


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
    ``dist_mpc`` Mpc, ``log_mhi`` log10 Msun, ``hi_code`` int64, ``oc_code`` string.
    """
    cols = _pick(_read_any(path, ("OCcode", "Name")), path, "ALFALFA a.40 (datafile1)", _A40)
    out = {
        "agc": _int(cols["agc"], path, "AGCNr"),
        **{k: _float(cols[k]) for k in ("ra_hi", "dec_hi", "ra_oc", "dec_oc", "vhelio", "w50",
                                         "hi_flux", "dist_mpc")},
        "log_mhi": _float(cols["log_mhi"], "log_mhi"),
        "hi_code": _int(cols["hi_code"], path, "HIcode"),
        "oc_code": _str(cols["oc_code"]),
    }
    return _table(out)


def read_a40_sdss(path: str) -> pa.Table:
    """ALFALFA alpha.40 -- SDSS DR7 cross-match table (``a40.datafile3.csv``).

    Published columns used: ``AGCNr``, ``PhotoObjID`` (SDSS DR7 objID; empty when there is no
    photometric match), optionally ``SpecObjID``.

    Returns: ``agc`` int64, ``photo_objid`` int64 (0 where empty), ``photo_key`` int64 (see
    :func:`photo_key_from_objid`; -1 where empty).
    """
    # 64-bit ids: read as text, never through float64 (which keeps only 53 bits)
    ids = ("PhotoObjID", "PhotoObjId", "photoObjID", "SpecObjID", "SpectObjID")
    cols = _pick(_read_any(path, ids), path,
                 "ALFALFA a.40 SDSS cross-match (datafile3)",
                 {"agc": ("AGCNr",), "photo_objid": ("PhotoObjID", "PhotoObjId", "photoObjID")})
    raw = cols["photo_objid"]
    try:
        objid = np.array([0 if v is None or str(v).strip() == "" else int(str(v).strip())
                          for v in raw], dtype=np.int64)
    except ValueError as exc:
        raise CatalogFormatError(f"{path}: column 'PhotoObjID' is not an integer id: {exc}") \
            from None
    key = np.where(objid > 0, photo_key_from_objid(objid), -1)
    return _table({"agc": _int(cols["agc"], path, "AGCNr"), "photo_objid": objid, "photo_key": key})


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
    cols = _pick(_read_any(path, ("Name",)), path, "ALFALFA a.100 (table2)", _A100)
    ra_oc, dec_oc = _float(cols["ra_oc"]), _float(cols["dec_oc"])
    none = (ra_oc == 0) & (dec_oc == 0)
    ra_oc[none] = np.nan
    dec_oc[none] = np.nan
    out = {
        "agc": _int(cols["agc"], path, "AGCNr"),
        "ra_hi": _float(cols["ra_hi"]), "dec_hi": _float(cols["dec_hi"]),
        "ra_oc": ra_oc, "dec_oc": dec_oc,
        **{k: _float(cols[k]) for k in ("vhelio", "w50", "hi_flux", "dist_mpc")},
        "log_mhi": _float(cols["log_mhi"], "log_mhi"),
        "hi_code": _int(cols["hi_code"], path, "HIcode"),
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
    :func:`photo_key_from_objid`), ``specobjid`` string, ``log_mstar``, ``log_sfr``, ``oh``
    float64 (NaN where invalid or the file was not given).

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
    objid = sdss_objid(*(photoid[:, k] for k in range(5)))
    out = {
        "mpa_index": np.arange(n, dtype=np.int64),
        "ra": _float(info["ra"]), "dec": _float(info["dec"]), "z": _float(info["z"], "z"),
        "z_ok": (np.asarray(info["z_warning"]) == 0) if "z_warning" in info else np.ones(n, bool),
        "photo_key": photo_key_from_objid(objid),
        "specobjid": _str(info["specobjid"]) if "specobjid" in info
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
        out[canon] = _float(col, canon)
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
        upper = _int(cols["hisrc"], path, "HIsrc") == 4
    elif "hi_flag" in cols:
        upper = _int(cols["hi_flag"], path, "HI_FLAG") == 99
    else:
        raise CatalogFormatError(
            f"{path} is not a valid xGASS representative sample: missing column 'HIsrc' or "
            "'HI_FLAG' (which rows are upper limits)"
        )
    return _table({
        "xgass_id": np.array([str(v).strip() for v in cols["gass"]], dtype=object),
        "ra": _float(cols["ra"]), "dec": _float(cols["dec"]), "z": _float(cols["z"], "z"),
        "log_mstar": _float(cols["log_mstar"], "log_mstar"),
        "log_mhi": _float(cols["log_mhi"], "log_mhi"),
        "upper_limit": upper,
    })


def read_nibles(path: str) -> pa.Table:
    """NIBLES H I detections (van Driel et al. 2016) with SDSS/MPA-JHU stellar masses, as the
    paper's code tabulates them: columns ``nibles_id, ra, dec, z, logMstar, logMHI``
    (CSV or FITS; ``NIBLES``/``RAJ2000``/``DEJ2000`` spellings accepted).

    Returns: ``nibles_id`` string, ``ra, dec`` deg, ``z``, ``log_mstar``, ``log_mhi`` float64.
    """
    cols = _pick(_read_any(path, ("nibles_id", "NIBLES")), path, "NIBLES",
                 {"nibles_id": ("nibles_id", "NIBLES"), "ra": ("ra", "RAJ2000"),
                  "dec": ("dec", "DEJ2000"), "z": ("z",), "log_mstar": ("logMstar",),
                  "log_mhi": ("logMHI",)})
    return _table({
        "nibles_id": np.array([str(v).strip() for v in cols["nibles_id"]], dtype=object),
        "ra": _float(cols["ra"]), "dec": _float(cols["dec"]), "z": _float(cols["z"], "z"),
        "log_mstar": _float(cols["log_mstar"], "log_mstar"),
        "log_mhi": _float(cols["log_mhi"], "log_mhi"),
    })


def read_nsa(path: str) -> pa.Table:
    """NASA-Sloan Atlas v1.0.1 (``nsa_v1_0_1.fits``) as a ``tracers`` table.

    Published columns used: ``NSAID``, ``RA``, ``DEC``, ``Z``. Rows without a finite position
    or redshift are dropped (they cannot be environment tracers); the result validates as the
    ``tracers`` contract: ``object_id`` (``"NSA<NSAID>"``), ``ra``, ``dec``, ``z``.
    """
    from hicatalog.schemas import conform_table, validate_table

    cols = _pick(_read_any(path), path, "NASA-Sloan Atlas",
                 {"nsaid": ("NSAID",), "ra": ("RA",), "dec": ("DEC",), "z": ("Z",)})
    ra, dec, z = _float(cols["ra"]), _float(cols["dec"]), _float(cols["z"])
    keep = np.isfinite(ra) & np.isfinite(dec) & np.isfinite(z)
    ids = _int(cols["nsaid"], path, "NSAID")[keep]
    table = pa.table({
        "object_id": pa.array([f"NSA{i}" for i in ids], pa.string()),
        "ra": ra[keep], "dec": dec[keep], "z": z[keep],
    })
    validate_table(table, "tracers", path)
    return conform_table(table, "tracers", path)
