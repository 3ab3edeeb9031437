"""A Figure-9-like gallery of cutouts (Wu 2020, Figure 9): rows ordered by M and by overdensity.

Left panel: one row per target value of M = log10(M_HI/M*) (gas-poor at the top, gas-rich at
the bottom), each row the ``n_cols`` galaxies whose ``m_true`` is closest to it. Right panel:
one row per percentile of log10(1 + delta5) among the ALFALFA-like detections (10th to 90th,
like the paper), each row the galaxies closest to that value. A person should see gas-rich
galaxies blue and clumpy, gas-poor ones red and smooth, and no such trend with overdensity
beyond the morphology-density relation (stripping does not change the stellar image).
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa

from hicatalog.cutouts.decode import ImageDecodeError, decode_jpeg
from hicatalog.cutouts.shards import list_shards
from hicatalog.errors import SchemaError
from hicatalog.storage import read_parquet, read_parquet_schema, write_figure_atomic

log = logging.getLogger("hicatalog.mock.gallery")

__all__ = ["draw_gallery", "M_ROWS", "DELTA5_PERCENTILES"]

#: Target values of M for the rows of the left panel (dex).
M_ROWS = (-1.5, -1.0, -0.5, 0.0, 0.5, 1.0)
#: Percentiles of log10(1+delta5) for the rows of the right panel (the paper: <10th to >90th).
DELTA5_PERCENTILES = (10, 30, 50, 70, 90)


def _closest(values: np.ndarray, target: float, k: int, exclude: set[int]) -> list[int]:
    order = np.argsort(np.abs(values - target), kind="stable")
    out = [int(i) for i in order if np.isfinite(values[i]) and int(i) not in exclude][:k]
    exclude.update(out)
    return out


def draw_gallery(cutouts: str, out_png: str, n_cols: int = 5, max_rows: int = 20000) -> str:
    """Draw the gallery of the cutout shards under ``cutouts`` into ``out_png``.

    Needs the label columns ``m_true`` and ``one_plus_delta5`` (as written by ``hicatalog mock``).
    Reads at most ``max_rows`` rows (the first shards). Returns ``out_png``.

    Raises
    ------
    SchemaError: the shards lack ``m_true``/``one_plus_delta5``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables, n = [], 0
    for f in list_shards(cutouts):
        cols = read_parquet_schema(f).names
        if "m_true" not in cols or "one_plus_delta5" not in cols:
            raise SchemaError(f"{f}: the gallery needs label columns m_true and one_plus_delta5")
        want = [c for c in ("image", "m_true", "one_plus_delta5", "dataset") if c in cols]
        tables.append(read_parquet(f, want))
        n += tables[-1].num_rows
        if n >= max_rows:
            break
    table = pa.concat_tables(tables)
    m = table.column("m_true").to_numpy(zero_copy_only=False).astype(float)
    d5 = table.column("one_plus_delta5").to_numpy(zero_copy_only=False).astype(float)
    x = np.log10(np.where(d5 > 0, d5, np.nan))
    ds = (np.array(table.column("dataset").to_pylist()) if "dataset" in table.column_names
          else np.full(len(m), "alfalfa"))
    images = table.column("image")

    used: set[int] = set()
    left = [(f"M = {t:+.1f}", _closest(m, t, n_cols, used)) for t in M_ROWS]
    xd = np.where(ds == "alfalfa", x, np.nan)
    if not np.isfinite(xd).any():
        xd = x
    used = set()
    right = []
    for q in DELTA5_PERCENTILES:
        target = float(np.nanpercentile(xd, q))
        label = f"p{q}\nlog(1+$\\delta_5$)={target:+.2f}"
        right.append((label, _closest(xd, target, n_cols, used)))

    n_rows = max(len(left), len(right))
    fig, axes = plt.subplots(n_rows, 2 * n_cols + 1, figsize=(2 * n_cols + 1.2, n_rows * 1.08),
                             gridspec_kw={"width_ratios": [1] * n_cols + [0.25] + [1] * n_cols})
    for ax in axes.flat:
        ax.set_axis_off()
    for panel, rows in ((0, left), (n_cols + 1, right)):
        for r, (label, idx) in enumerate(rows):
            for c, i in enumerate(idx):
                ax = axes[r, panel + c]
                try:
                    ax.imshow(decode_jpeg(images[i].as_py()))
                except ImageDecodeError as exc:
                    log.warning("gallery: row %d not shown (%s)", i, exc.status)
                    continue
                ax.set_title(f"M={m[i]:+.2f}", fontsize=6, pad=1)
            axes[r, panel].text(-0.08, 0.5, label, transform=axes[r, panel].transAxes,
                                fontsize=6, rotation=90, va="center", ha="right")
    fig.suptitle("mock cutouts ordered by M (left) and by overdensity, detections (right)",
                 fontsize=9)
    fig.subplots_adjust(left=0.04, right=0.99, top=0.93, bottom=0.01, wspace=0.04,
                        hspace=0.25)
    write_figure_atomic(fig, out_png, dpi=110)
    plt.close(fig)
    return out_png
