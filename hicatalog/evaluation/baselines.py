"""``hicatalog evaluate baselines``: simpler estimators of M beside the CNN (paper Appendix A,
Figure 12), on the CNN's own train/validation split.

Models (fit on the training rows, scored on the validation rows):

- ``linear_blocks``: ordinary least squares on 7x7 block-reduced images (3 x 32 x 32 = 3072
  features at 224 px).
- ``pca_linear``: PCA with 16 components of the full-resolution images (incremental PCA, so
  the training images never sit in memory as floats at once), then least squares.
- ``pca_forest``: a random forest of 100 trees (mean squared error) on the same 16 components.
- ``zhang2009``: the photometric gas-fraction form of Zhang et al. (2009),
  ``M = a (g - r) + b mu_i + c``, with g - r and mu_i measured on the cutout
  (:func:`photometry`) and a, b, c refit by least squares on the training rows.
- ``cnn``: the regression CNN (``--model``, or one trained here with the same seed and data).

The split is :func:`hicatalog.training.data.select_rows` with the run's seed: exactly the
rows ``hicatalog train`` validates on. scikit-learn is optional for the package and needed
here; it is imported inside the functions that use it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hicatalog.errors import DependencyError, InputError
from hicatalog.evaluation import figures
from hicatalog.evaluation.report import Report, Section, write_report
from hicatalog.metrics import regression_metrics
from hicatalog.storage import join, write_json_atomic

__all__ = [
    "require_sklearn",
    "block_reduce",
    "photometry",
    "fit_baselines",
    "run_baselines",
    "BASELINES",
]

log = logging.getLogger("hicatalog.evaluation")

BASELINES = ("linear_blocks", "pca_linear", "pca_forest", "zhang2009")


def require_sklearn() -> Any:
    """Import scikit-learn or raise a clear error saying how to install it."""
    try:
        import sklearn  # noqa: F401
    except ImportError:  # pragma: no cover - scikit-learn is in the dev environment
        raise DependencyError(
            "the baselines need scikit-learn, an optional dependency of hicatalog: "
            "pip install 'hicatalog[ml]' (or pip install scikit-learn)"
        ) from None
    return sklearn


def block_reduce(images: np.ndarray, block: int = 7) -> np.ndarray:
    """Average ``uint8``/float ``(N, C, S, S)`` images over ``block`` x ``block`` pixel blocks.

    A border of ``S % block`` px is cropped evenly first. Returns float32
    ``(N, C, S // block, S // block)``.
    """
    n, c, h, w = images.shape
    hb, wb = h // block, w // block
    if hb == 0 or wb == 0:
        raise InputError(f"images of {h}x{w} px are smaller than one {block}x{block} block")
    y0, x0 = (h - hb * block) // 2, (w - wb * block) // 2
    x = images[:, :, y0 : y0 + hb * block, x0 : x0 + wb * block].astype(np.float32)
    return x.reshape(n, c, hb, block, wb, block).mean(axis=(3, 5))


def photometry(images: np.ndarray, max_radius_frac: float = 0.45) -> dict[str, np.ndarray]:
    """Colour and surface brightness measured on RGB cutouts, for the Zhang et al. (2009) form.

    The JPEG channels are used as flux proxies: R ~ i, G ~ r, B ~ g (SDSS gri, reddest first).
    Per image: the background is the median of the outer 5% border per channel; fluxes are
    summed inside a circle of radius ``max_radius_frac * S`` about the centre.

    Returns float64 arrays of shape (N,):

    - ``g_r``: -2.5 log10(F_B / F_G) (colour proxy; the asinh stretch of SDSS JPEGs keeps
      channel ratios, so this tracks g - r up to a constant);
    - ``mu_i``: -2.5 log10(F_R(< R50) / (pi R50^2)), surface brightness within the half-light
      radius of the R channel (pixel units, in 8-bit counts per px^2);
    - ``r50_px``: that half-light radius (px).
    NaN where a flux is not positive.
    """
    x = images.astype(np.float64)
    n, _, h, w = x.shape
    border = max(1, int(0.05 * min(h, w)))
    edge = np.concatenate([
        x[:, :, :border, :].reshape(n, 3, -1), x[:, :, -border:, :].reshape(n, 3, -1),
        x[:, :, :, :border].reshape(n, 3, -1), x[:, :, :, -border:].reshape(n, 3, -1),
    ], axis=2)
    x = x - np.median(edge, axis=2)[:, :, None, None]
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot(yy - (h - 1) / 2.0, xx - (w - 1) / 2.0)
    rmax = max_radius_frac * min(h, w)
    inside = r <= rmax
    flux = x[:, :, inside].sum(axis=2)  # (N, 3)
    # curve of growth of the R (i-like) channel in 1-px annuli
    r_int = np.minimum(r.astype(int), int(rmax))
    radii = np.arange(int(rmax) + 1)
    growth = np.stack([
        np.cumsum(np.bincount(r_int[inside], weights=x[k, 0][inside], minlength=radii.size))
        for k in range(n)
    ])
    total = growth[:, -1]
    with np.errstate(divide="ignore", invalid="ignore"):
        half_idx = np.argmax(growth >= 0.5 * total[:, None], axis=1)
        r50 = radii[half_idx] + 0.5
        f50 = growth[np.arange(n), half_idx]
        g_r = -2.5 * np.log10(flux[:, 2] / flux[:, 1])
        mu_i = -2.5 * np.log10(f50 / (np.pi * r50**2))
    bad = (flux[:, 1] <= 0) | (flux[:, 2] <= 0) | (total <= 0) | (f50 <= 0)
    g_r[bad] = np.nan
    mu_i[bad] = np.nan
    return {"g_r": g_r, "mu_i": mu_i, "r50_px": r50.astype(np.float64)}


def _pca_fit_transform(train: np.ndarray, others: list[np.ndarray], n_components: int, seed: int,
                       batch: int = 256) -> tuple[np.ndarray, list[np.ndarray]]:
    from sklearn.decomposition import IncrementalPCA

    n_components = min(n_components, train.shape[0])
    pca = IncrementalPCA(n_components=n_components)
    flat = train.reshape(train.shape[0], -1)
    step = max(batch, n_components)
    for i in range(0, flat.shape[0], step):
        chunk = flat[i : i + step]
        if chunk.shape[0] < n_components:  # IncrementalPCA needs >= n_components rows per call
            chunk = flat[max(0, flat.shape[0] - step):]
        pca.partial_fit(chunk.astype(np.float32) / 255.0)

    def transform(a: np.ndarray) -> np.ndarray:
        f = a.reshape(a.shape[0], -1)
        return np.concatenate([
            pca.transform(f[i : i + step].astype(np.float32) / 255.0) for i in range(0, f.shape[0], step)
        ]) if f.shape[0] else np.zeros((0, n_components))

    return transform(train), [transform(o) for o in others]


def fit_baselines(
    train_images: np.ndarray, train_m: np.ndarray, val_images: np.ndarray, seed: int = 0,
    block: int = 7, n_components: int = 16, n_trees: int = 100,
) -> dict[str, np.ndarray]:
    """Fit every baseline on ``train_images`` (``uint8`` (N, 3, S, S)) and ``train_m`` (dex)
    and predict ``val_images``; returns name -> predictions ``(N_val,)`` in dex."""
    require_sklearn()
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import LinearRegression

    preds: dict[str, np.ndarray] = {}
    xb_tr = block_reduce(train_images, block).reshape(train_images.shape[0], -1)
    xb_va = block_reduce(val_images, block).reshape(val_images.shape[0], -1)
    preds["linear_blocks"] = LinearRegression().fit(xb_tr, train_m).predict(xb_va)

    p_tr, (p_va,) = _pca_fit_transform(train_images, [val_images], n_components, seed)
    preds["pca_linear"] = LinearRegression().fit(p_tr, train_m).predict(p_va)
    forest = RandomForestRegressor(n_estimators=n_trees, random_state=seed, n_jobs=1)
    preds["pca_forest"] = forest.fit(p_tr, train_m).predict(p_va)

    ph_tr, ph_va = photometry(train_images), photometry(val_images)
    a_tr = np.c_[ph_tr["g_r"], ph_tr["mu_i"]]
    a_va = np.c_[ph_va["g_r"], ph_va["mu_i"]]
    ok = np.isfinite(a_tr).all(axis=1) & np.isfinite(train_m)
    if ok.sum() < 3:
        raise InputError(f"only {int(ok.sum())} training cutouts have measurable photometry")
    zhang = LinearRegression().fit(a_tr[ok], train_m[ok])
    # cutouts without measurable photometry get the training mean (no information)
    fill = np.nanmean(a_tr[ok], axis=0)
    a_va = np.where(np.isfinite(a_va), a_va, fill)
    preds["zhang2009"] = zhang.predict(a_va)
    log.info("Zhang et al. (2009) form refit: M = %.3f (g-r) + %.3f mu_i + %.3f",
             zhang.coef_[0], zhang.coef_[1], zhang.intercept_)
    preds["_zhang_coef"] = np.r_[zhang.coef_, zhang.intercept_]
    return preds


def _training_rows(is_val: np.ndarray, max_rows: int | None, seed: int) -> np.ndarray:
    """The rows (bool mask) the baselines fit on: the training rows, at most ``max_rows`` of
    them drawn with ``seed``."""
    if max_rows is None or (~is_val).sum() <= max_rows:
        return ~is_val
    tr = np.zeros_like(is_val)
    tr[np.random.default_rng(seed).choice(np.flatnonzero(~is_val), max_rows, replace=False)] = True
    return tr


def _cnn_predictions(model: Any, card: Any, data: list[str], ids: np.ndarray) -> np.ndarray:
    """The CNN's M (dex) for the cutouts ``ids``, in that order. They are decoded exactly as in
    training and in the catalog build (JPEG DCT scaling straight to the network's input size),
    not downsampled from the full-size arrays the classic baselines use: that difference
    alone shifted M_pred by ~-0.07 dex."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from hicatalog.evaluation.data import load_cutouts
    from hicatalog.evaluation.predict import predict_cutouts

    cut = load_cutouts(data, columns=("object_id",), image_size=card.image_size,
                       filter_expr=pc.field("object_id").isin(pa.array(ids.tolist(), pa.string())))
    row = {o: i for i, o in enumerate(cut.columns["object_id"].tolist())}
    return predict_cutouts(model, card, cut.images[[row[o] for o in ids]])


def run_baselines(data: Sequence[str], out: str, *, model: str | None = None, seed: int = 0,
                  max_rows: int | None = None,
                  training: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Appendix A on the shards ``data``: baselines and the CNN on the same validation rows
    (the split of ``seed``).

    Uses the model directory ``model`` as the CNN when given (it should have been trained on
    the same data with the same seed, so that its validation rows are these), otherwise trains
    one into ``OUT/cnn`` with ``training`` (keyword arguments of
    :func:`hicatalog.training.trainer.train`: preset, epochs, ...). The baselines fit on at
    most ``max_rows`` training cutouts. Writes ``OUT/baselines.json``
    (per model: n, rmse, slope, sigma, offset), ``OUT/baselines.md``, ``OUT/baselines.png``
    (Figure 12) and ``OUT/index.html``.
    """
    require_sklearn()
    from hicatalog.cutouts.shards import list_shards
    from hicatalog.evaluation.data import load_cutouts
    from hicatalog.models import load_model
    from hicatalog.training.data import select_rows
    from hicatalog.training.trainer import train

    data = list(data)
    files = list_shards(data, contract="cutouts")
    sel = select_rows(files, "regression", seed=seed)
    ids = np.asarray(sel.table.column("object_id").to_pylist(), dtype=object)
    is_val = sel.table.column("is_val").to_numpy(zero_copy_only=False)
    model_dir = model
    if model_dir is None:
        model_dir = join(out, "cnn")
        train(data, model_dir, task="regression", seed=seed, **(training or {}))
    model, card = load_model(model_dir)

    import pyarrow as pa
    import pyarrow.compute as pc

    cut = load_cutouts(data, columns=("object_id", "m_true"), image_size=card.cutout_size,
                       filter_expr=pc.field("object_id").isin(pa.array(ids.tolist(), pa.string())))
    val_ids = set(ids[is_val].tolist())
    oid = cut.columns["object_id"]
    v = np.fromiter((o in val_ids for o in oid), bool, count=oid.size)
    m = cut.columns["m_true"]
    tr = _training_rows(v, max_rows, seed)
    preds = fit_baselines(cut.images[tr], m[tr], cut.images[v], seed=seed)
    zhang_coef = preds.pop("_zhang_coef")
    preds["cnn"] = _cnn_predictions(model, card, data, oid[v])
    metrics = {name: regression_metrics(m[v], p) for name, p in preds.items()}
    labels = {
        "linear_blocks": "linear, 7x7 blocks", "pca_linear": "PCA(16) + linear",
        "pca_forest": "PCA(16) + random forest", "zhang2009": "Zhang+09 form (g-r, mu_i)",
        "cnn": "CNN",
    }
    fig = figures.plot_pred_vs_true(
        [(labels[k], m[v], preds[k]) for k in ("linear_blocks", "pca_linear", "pca_forest", "zhang2009", "cnn")],
        join(out, "baselines.png"),
    )
    headers = ("Model", "N", "RMSE (dex)", "Slope", "σ (dex)", "Offset (dex)")
    rows = [[labels[k], str(x["n"]), x["rmse"], x["slope"], x["sigma"], x["offset"]] for k, x in metrics.items()]
    best_baseline = min(metrics[k]["rmse"] for k in BASELINES)
    result = {
        "inputs": {"data": data, "model": model_dir, "seed": seed},
        "split": sel.summary, "n_train": int(tr.sum()), "n_val": int(v.sum()),
        "metrics": metrics,
        "zhang2009_coefficients": {"a_g_r": zhang_coef[0], "b_mu_i": zhang_coef[1], "c": zhang_coef[2]},
        "cnn_beats_every_baseline": bool(metrics["cnn"]["rmse"] < best_baseline),
    }
    write_json_atomic(join(out, "baselines.json"), result)
    sec = Section("Baselines against the CNN's validation split (Appendix A, Figure 12)",
                  figures=[fig]).add_table(headers, rows)
    sec.add_text(f"same validation rows for every model: {sel.summary.get('split')}; "
                 f"{int(tr.sum())} training, {int(v.sum())} validation cutouts")
    write_report(Report("hicatalog evaluation: baselines", [sec], inputs=result["inputs"]),
                 out, markdown="baselines.md")
    return result
