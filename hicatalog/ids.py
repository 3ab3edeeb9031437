"""Identifiers: the one rule for reading an id column exactly.

Survey ids are 64-bit integers (an SDSS objID such as 587722981741363294 needs 60 bits) or
text. A float64 keeps 53 bits, so an id that once went through floating point is silently
another id (587722981741363294 -> 5.877229817413633e+17). Every reader of an id column (the
catalog readers of :mod:`hicatalog.surveys.readers`, CSV and FITS alike, and the fetch's
target list) therefore goes through :func:`int_ids` or :func:`text_ids`:

- integer columns are taken as they are (``uint64`` values above the int64 range are errors);
- text is stripped of blanks; an empty field (or a null) is a missing id;
- digits-only text is an integer id, read exactly (``"0587722981741363294"`` too);
- a floating-point *column* is accepted only where every value is a whole number below
  2**53, i.e. exactly representable, so that nothing was lost on the way; otherwise it is an
  error, as is text in floating-point notation (``"5.888489723677253e+17"``, ``"12.0"``):
  the digits are already gone, and guessing them would match the wrong galaxy.

A missing id is an error unless the caller allows it (e.g. an a.40 source with no SDSS
photometric match has an empty ``PhotoObjID``).
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa

from hicatalog.errors import IdError

__all__ = ["IdError", "FLOAT_EXACT_LIMIT", "int_ids", "text_ids"]

#: Whole numbers below this are exact in float64 (53-bit significand).
FLOAT_EXACT_LIMIT = 2**53

_INT_TEXT = re.compile(r"[+-]?\d+")
_FLOAT_TEXT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?|[+-]?(nan|inf|infinity)",
                         re.IGNORECASE)
_INT64_MAX = np.iinfo(np.int64).max


def _as_numpy(values) -> np.ndarray:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        if pa.types.is_integer(values.type) and values.null_count == 0:
            return values.to_numpy(zero_copy_only=False)
        return np.asarray(values.to_pylist(), dtype=object)  # nulls stay None, ints stay int
    return np.asarray(values)


def _float_value(v: float, where: str) -> int | None:
    """A float id value: None if NaN (missing), the whole number if exact, else an error."""
    if np.isnan(v):
        return None
    if not np.isfinite(v) or v != np.floor(v) or abs(v) >= FLOAT_EXACT_LIMIT:
        raise IdError(
            f"{where}: holds {v!r}, an id stored as floating point that cannot be exact "
            f"(float64 keeps whole numbers exactly only below 2**53); write the ids as text or "
            "as 64-bit integers")
    return int(v)


def _parse(values, where: str) -> list[int | str | None]:
    """Each value as an int (integers, digits-only text, exact floats), str (other text) or
    None (missing)."""
    arr = _as_numpy(values)
    if arr.dtype.kind in "iu":
        if arr.dtype.kind == "u" and arr.size and int(arr.max()) > _INT64_MAX:
            raise IdError(f"{where}: id {int(arr.max())} does not fit in a signed 64-bit integer")
        return [int(v) for v in arr.tolist()]
    if arr.dtype.kind == "f":
        return [_float_value(float(v), where) for v in arr.tolist()]
    if arr.dtype.kind == "b":
        raise IdError(f"{where}: is a boolean column, not an id")
    out: list[int | str | None] = []
    for v in arr.tolist():
        if v is None:
            out.append(None)
            continue
        if isinstance(v, (bytes, np.bytes_)):
            v = v.decode("ascii", errors="replace")
        if isinstance(v, bool):
            raise IdError(f"{where}: holds {v!r}, not an id")
        if isinstance(v, (int, np.integer)):
            out.append(int(v))
            continue
        if isinstance(v, (float, np.floating)):
            out.append(_float_value(float(v), where))
            continue
        s = str(v).strip()
        if s == "":
            out.append(None)
        elif _INT_TEXT.fullmatch(s):
            out.append(int(s))
        elif _FLOAT_TEXT.fullmatch(s):
            raise IdError(
                f"{where}: holds {s!r}, an id written in floating-point notation: its digits "
                "were lost before this file was written (float64 keeps 53 bits; a 64-bit id "
                "needs up to 63); re-export the ids as text or integers")
        else:
            out.append(s)
    return out


def int_ids(values, where: str, allow_missing: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Integer ids read exactly.

    Parameters
    ----------
    values: a numpy array (integer, float, text or object) or a pyarrow array, shape ``(N,)``.
    where: ``"<file>: column '<name>'"``, for the error message.
    allow_missing: empty fields / nulls are allowed (else an error).

    Returns
    -------
    ``(ids, present)``: int64 ``(N,)`` (0 where missing) and bool ``(N,)``.

    Raises
    ------
    IdError: a value is not an integer id, or was stored through floating point, or is
        outside int64, or missing while ``allow_missing`` is false.
    """
    parsed = _parse(values, where)
    present = np.array([v is not None for v in parsed], dtype=bool)
    if not allow_missing and not present.all():
        raise IdError(f"{where}: {int((~present).sum())} row(s) have no id (empty field)")
    bad = [v for v in parsed if isinstance(v, str)]
    if bad:
        raise IdError(f"{where}: holds {bad[0]!r}, not an integer id")
    too_big = [v for v in parsed if v is not None and not -_INT64_MAX - 1 <= v <= _INT64_MAX]
    if too_big:
        raise IdError(f"{where}: id {too_big[0]} does not fit in a signed 64-bit integer")
    ids = np.array([0 if v is None else v for v in parsed], dtype=np.int64)
    return ids, present


def text_ids(values, where: str, allow_missing: bool = False) -> np.ndarray:
    """Ids as text, exactly: integers written in decimal, text stripped (leading zeros kept).

    ``values``, ``where``, ``allow_missing`` as in :func:`int_ids`. Returns an object array
    ``(N,)`` of ``str`` (``None`` where missing).

    Raises
    ------
    IdError: as :func:`int_ids`, except that non-numeric text is a valid id.
    """
    arr = _as_numpy(values)
    parsed = _parse(arr, where)  # rejects floating-point ids, as int_ids does
    out: list[str | None] = []
    for raw, v in zip(arr.tolist(), parsed, strict=True):
        if v is None:
            out.append(None)
        elif isinstance(raw, (str, bytes, np.str_, np.bytes_)):
            text = raw.decode("ascii", errors="replace") if isinstance(raw, bytes) else raw
            out.append(str(text).strip())  # as written: "0001" stays "0001"
        else:
            out.append(str(v))
    res = np.array(out, dtype=object)
    missing = np.array([v is None for v in out], dtype=bool)
    if not allow_missing and missing.any():
        raise IdError(f"{where}: {int(missing.sum())} row(s) have no id (empty field)")
    return res
