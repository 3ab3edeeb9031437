"""The tests' images: JPEG bytes, labelled cutout shards, and an independent TTA reference.

Every test that needs a JPEG takes it from here (``import imagefixtures``: pytest's default
``rootdir`` import mode puts ``tests/`` on ``sys.path``; ``tests/fakeserver.py`` run as a script
has it there too).

- :func:`encode_jpeg`, :func:`solid_jpeg`, :func:`noise_jpeg`: JPEG bytes made by Pillow.
- :func:`make_blob_shards`: each cutout is a blurred elliptical blob on a noisy dark sky whose
  colour runs from red (gas-poor) to blue (gas-rich) with a latent ``t`` in [0, 1]:
  ``m_true = 2 t - 1 + noise``, and ``detected = t + noise > 0.15``. A CNN can learn both from
  the pixels, so training tests can check that the loss goes down and metrics beat chance.
- :func:`make_blue_excess_shards`: a round galaxy whose blue excess is ``m_true`` (for the
  evaluation analyses), with an optional ``one_plus_delta5`` column.
- :func:`dihedral_views_reference`: a model's outputs on the 8 symmetries of the square,
  written without :mod:`hicatalog.models.dihedral`, to check test-time augmentation against.
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
from PIL import Image

from hicatalog.cutouts.shards import write_shard


def encode_jpeg(pixels: np.ndarray, quality: int = 75) -> bytes:
    """JPEG bytes of ``uint8`` pixels, ``(H, W, 3)`` RGB or ``(H, W)`` grayscale (Pillow)."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def solid_jpeg(
    size: int = 32, mode: str = "RGB", color: int | tuple[int, ...] | None = None,
    height: int | None = None,
) -> bytes:
    """A uniform JPEG ``size`` px wide and ``height`` (default ``size``) px high, in a Pillow
    mode that JPEG stores (``RGB``, ``L``, ``CMYK``); ``color`` defaults to (200, 40, 10) in
    ``RGB``, 128 in ``L`` and 0 otherwise."""
    if color is None:
        color = {"RGB": (200, 40, 10), "L": 128}.get(mode, 0)
    buf = io.BytesIO()
    Image.new(mode, (size, height or size), color).save(buf, format="JPEG")
    return buf.getvalue()


def noise_jpeg(rng: np.random.Generator, size: int = 64, mode: str = "RGB", quality: int = 85) -> bytes:
    """A ``size`` x ``size`` JPEG of pixel noise with a uniform square in the middle half
    (mode ``RGB``, or ``L``: the same picture converted to grayscale)."""
    arr = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    arr[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = rng.integers(0, 255, 3)
    if mode == "L":
        arr = np.asarray(Image.fromarray(arr).convert("L"))
    return encode_jpeg(arr, quality)


def blob_image(t: float, rng: np.random.Generator, size: int = 64) -> bytes:
    """JPEG bytes of one ``size`` x ``size`` RGB blob whose colour encodes ``t``."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    cx, cy = size / 2 + rng.normal(0, size / 16, 2)
    r = size / 8 * (1 + 0.5 * rng.random())
    q, ang = 0.5 + 0.5 * rng.random(), rng.uniform(0, np.pi)
    dx, dy = xx - cx, yy - cy
    u = dx * np.cos(ang) + dy * np.sin(ang)
    v = (-dx * np.sin(ang) + dy * np.cos(ang)) / q
    prof = np.exp(-(u**2 + v**2) / (2 * r**2))
    colour = np.array([1.0 - 0.8 * t, 0.5, 0.2 + 0.8 * t])
    img = 20 + 200 * prof[..., None] * colour + rng.normal(0, 6, (size, size, 3))
    return encode_jpeg(np.clip(img, 0, 255).astype(np.uint8), quality=90)


def make_blob_shards(
    out_dir: str,
    n: int,
    *,
    seed: int = 0,
    size: int = 64,
    rows_per_shard: int = 200,
    with_m_true: bool = True,
    with_detected: bool = True,
    corrupt: int = 0,
    extra_columns: dict[str, np.ndarray] | None = None,
) -> list[str]:
    """Write ``n`` labelled blob cutouts as cutout shards in ``out_dir``; returns the paths.

    ``corrupt``: the first ``corrupt`` rows get broken JPEG bytes (truncated / not a JPEG).
    Adds a ``one_plus_delta5`` column (uniform 0-2) for split-by tests.
    """
    rng = np.random.default_rng(seed)
    t = rng.random(n)
    images = [blob_image(float(ti), rng, size) for ti in t]
    for i in range(min(corrupt, n)):
        images[i] = images[i][: len(images[i]) // 3] if i % 2 == 0 else b"not a jpeg at all"
    cols: dict[str, pa.Array] = {
        "object_id": pa.array([f"g{seed}-{i:06d}" for i in range(n)]),
        "ra": pa.array(rng.uniform(0, 360, n)),
        "dec": pa.array(rng.uniform(-10, 60, n)),
        "z": pa.array(rng.uniform(0.002, 0.06, n)),
        "survey": pa.array(["sdss"] * n),
        "image": pa.array(images, pa.binary()),
        "one_plus_delta5": pa.array(rng.uniform(0, 2, n).astype(np.float32)),
    }
    if with_m_true:
        cols["m_true"] = pa.array((2 * t - 1 + rng.normal(0, 0.05, n)).astype(np.float32))
    if with_detected:
        cols["detected"] = pa.array(t + rng.normal(0, 0.05, n) > 0.15)
    for k, v in (extra_columns or {}).items():
        cols[k] = pa.array(v)
    table = pa.table(cols)
    return [
        write_shard(table.slice(i, rows_per_shard), out_dir, "part", i // rows_per_shard)
        for i in range(0, n, rows_per_shard)
    ]


def make_blue_excess_shards(
    path, n: int = 120, size: int = 32, seed: int = 0, with_one_plus_delta5: bool = False
) -> tuple[pa.Table, np.ndarray]:
    """Two cutout shards in ``path`` of ``n`` round galaxies whose blue excess carries
    ``m_true`` (uniform in [-1, 1]), so a CNN (or a colour) can learn it; all ``detected``.

    Returns ``(the table written, the lognormal 1+delta5 drawn for every row)``. With
    ``with_one_plus_delta5`` the shards carry that column, null in the first three rows.
    """
    rng = np.random.default_rng(seed)
    m = rng.uniform(-1.0, 1.0, n)
    yy, xx = np.mgrid[:size, :size]
    prof = np.exp(-((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (2 * 4.0**2))
    imgs = []
    for mi in m:
        rgb = np.stack([20 + 150 * prof, 20 + 150 * prof, 20 + (150 + 90 * mi) * prof], axis=-1)
        rgb += rng.normal(0, 3, rgb.shape)
        imgs.append(encode_jpeg(np.clip(rgb, 0, 255).astype(np.uint8), quality=92))
    one_plus_delta5 = rng.lognormal(0.0, 0.6, n)
    cols = {
        "object_id": [f"o{i:04d}" for i in range(n)], "ra": rng.uniform(150, 160, n),
        "dec": rng.uniform(0, 10, n), "z": rng.uniform(0.01, 0.05, n), "survey": ["sdss"] * n,
        "image": pa.array(imgs, pa.binary()), "m_true": pa.array(m, pa.float32()),
        "detected": [True] * n, "log_mstar": pa.array(rng.uniform(9, 11, n), pa.float32()),
    }
    if with_one_plus_delta5:
        d = one_plus_delta5.copy()
        d[:3] = np.nan
        cols["one_plus_delta5"] = pa.array(d.astype(np.float32), mask=np.isnan(d))
    table = pa.table(cols)
    write_shard(table.slice(0, n // 2), str(path), "part", 0)
    write_shard(table.slice(n // 2), str(path), "part", 1)
    return table, one_plus_delta5


def dihedral_views_reference(model, x):
    """Outputs ``(N, 8, n_out)`` of ``model`` in eval mode on the 8 symmetries of the square
    of ``x`` ``(N, C, S, S)`` (float, normalised): the 4 rotations of the image and of its
    transpose, in that order, which is not the library's order. For means and spreads over
    the views, written without :mod:`hicatalog.models.dihedral`."""
    import torch

    model.eval()
    views = [torch.rot90(im, k, dims=(-2, -1)) for im in (x, x.transpose(-2, -1)) for k in range(4)]
    with torch.no_grad():
        return torch.stack([model(v) for v in views], dim=1)
