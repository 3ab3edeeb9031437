"""Small labelled JPEG cutout shards for the training tests.

Each cutout is a blurred elliptical blob on a noisy dark sky whose colour runs from red
(gas-poor) to blue (gas-rich) with a latent ``t`` in [0, 1]: ``m_true = 2 t - 1 + noise``, and
``detected = t + noise > 0.15``. A CNN can learn both from the pixels, so training tests can
check that the loss goes down and metrics beat chance.
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
from PIL import Image

from hicatalog.cutouts.shards import write_shard


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
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


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
