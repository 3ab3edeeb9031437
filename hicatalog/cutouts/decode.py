"""JPEG decoding of cutouts, per row, with a status instead of an exception.

Every consumer of cutout bytes (training, the catalog build, evaluation, the fetch's response
check) reads headers with :func:`read_jpeg_header` and decodes with :func:`decode_jpeg` /
:func:`decode_batch`, so a corrupt, empty, truncated, grayscale or wrongly-sized image gets the
same status string everywhere. (The catalog build's optional GPU path decodes the pixels with
torchvision but takes its statuses from these functions.)

Status values (the ``status`` column of the H I catalog uses them verbatim):

``ok``, ``empty_image`` (no bytes), ``not_jpeg`` (bytes are not a JPEG), ``corrupt_image``
(JPEG header or data cannot be decoded), ``truncated_image`` (data ends early),
``wrong_size`` (not ``expected_size`` x ``expected_size``), ``grayscale`` (one channel),
``bad_mode`` (not RGB, e.g. CMYK).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from hicatalog.errors import ImageDecodeError

__all__ = [
    "ImageDecodeError", "DecodedBatch", "read_jpeg_header", "decode_jpeg", "decode_batch",
    "ends_with_eoi", "IMAGE_STATUSES",
]

IMAGE_STATUSES = (
    "ok", "empty_image", "not_jpeg", "corrupt_image", "truncated_image", "wrong_size",
    "grayscale", "bad_mode",
)
_JPEG_MAGIC = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"


def _status_for(exc: Exception) -> str:
    return "truncated_image" if "truncated" in str(exc).lower() else "corrupt_image"


def _open_checked(data: bytes | None, expected_size: int | None) -> Image.Image:
    """Open a JPEG lazily (header only) and check marker, size and mode; see
    :func:`read_jpeg_header`."""
    if not data:
        raise ImageDecodeError("empty_image", "image is empty (0 bytes)")
    if not bytes(data[:2]) == _JPEG_MAGIC:
        raise ImageDecodeError("not_jpeg", f"image does not start with the JPEG marker ({len(data)} bytes)")
    try:
        im = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageDecodeError(_status_for(exc), f"cannot read JPEG header: {exc}") from None
    w, h = im.size
    if expected_size is not None and (w, h) != (expected_size, expected_size):
        raise ImageDecodeError(
            "wrong_size", f"image is {w}x{h} px, expected {expected_size}x{expected_size}"
        )
    if im.mode == "L":
        raise ImageDecodeError("grayscale", "image has one channel (grayscale), expected RGB")
    if im.mode != "RGB":
        raise ImageDecodeError("bad_mode", f"image mode is {im.mode}, expected RGB")
    return im


def read_jpeg_header(data: bytes | None, expected_size: int | None = None) -> tuple[int, int]:
    """``(width, height)`` in px of an RGB JPEG, read from its header without decoding pixels.

    The same checks, in the same order and with the same statuses, as :func:`decode_jpeg`
    before it decodes: ``empty_image``, ``not_jpeg``, ``corrupt_image``/``truncated_image``
    (unreadable header), ``wrong_size`` (with ``expected_size``), ``grayscale``, ``bad_mode``.
    Damage in the entropy-coded data is only found by :func:`decode_jpeg`.

    Raises
    ------
    ImageDecodeError: with a status from :data:`IMAGE_STATUSES`.
    """
    return _open_checked(data, expected_size).size


def ends_with_eoi(data: bytes | None) -> bool:
    """Whether JPEG bytes end with the end-of-image marker (``FF D9``).

    A cutout cut short in transfer lacks it. Pillow reports such data as ``truncated_image``
    when it decodes the pixels; torchvision's GPU decoder (nvJPEG) decodes it without an error
    and fills the missing part, so the GPU path sends every row without the marker through
    :func:`decode_jpeg` for its status (measured on an H200: a half file came back ``ok``).
    """
    return bool(data) and bytes(data[-2:]) == _JPEG_EOI


def decode_jpeg(
    data: bytes | None, expected_size: int | None = None, out_size: int | None = None
) -> np.ndarray:
    """Decode one JPEG cutout to an RGB array.

    Parameters
    ----------
    data: the JPEG bytes as served.
    expected_size: required side length of the stored image in px (``None``: any size).
    out_size: side of the returned image in px; smaller sizes use the JPEG decoder's DCT
        scaling (``Image.draft``) and then a bilinear resize, which is several times faster
        than decoding at full size.

    Returns
    -------
    ``uint8`` array of shape ``(out_size or H, out_size or W, 3)``.

    Raises
    ------
    ImageDecodeError: with a status from :data:`IMAGE_STATUSES`.
    """
    im = _open_checked(data, expected_size)
    w, h = im.size
    if out_size is not None and out_size < min(w, h):
        im.draft("RGB", (out_size, out_size))
    try:
        im.load()
    except OSError as exc:
        raise ImageDecodeError(_status_for(exc), f"cannot decode JPEG data: {exc}") from None
    except (ValueError, SyntaxError) as exc:  # pragma: no cover - Pillow edge cases
        raise ImageDecodeError("corrupt_image", f"cannot decode JPEG data: {exc}") from None
    if out_size is not None and im.size != (out_size, out_size):
        im = im.resize((out_size, out_size), Image.Resampling.BILINEAR)
    return np.asarray(im, dtype=np.uint8)


@dataclass
class DecodedBatch:
    """A decoded batch: images of the good rows and a status per input row.

    ``images``: ``uint8`` array ``(N, 3, S, S)`` (channels first), zeros for bad rows;
    ``ok``: bool ``(N,)``; ``status``: list of N status strings; ``error``: list of N messages
    (``None`` for good rows).
    """

    images: np.ndarray
    ok: np.ndarray
    status: list[str]
    error: list[str | None]


def decode_batch(
    images: list[bytes | None], expected_size: int | None, out_size: int
) -> DecodedBatch:
    """Decode a list of JPEGs to a channels-first ``uint8`` batch ``(N, 3, out_size, out_size)``."""
    n = len(images)
    out = np.zeros((n, 3, out_size, out_size), dtype=np.uint8)
    ok = np.zeros(n, dtype=bool)
    status: list[str] = ["ok"] * n
    error: list[str | None] = [None] * n
    for i, data in enumerate(images):
        try:
            arr = decode_jpeg(data, expected_size, out_size)
        except ImageDecodeError as exc:
            status[i], error[i] = exc.status, str(exc)
            continue
        out[i] = arr.transpose(2, 0, 1)
        ok[i] = True
    return DecodedBatch(out, ok, status, error)
