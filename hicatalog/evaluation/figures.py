"""The paper's figures as PNG files (matplotlib, no pyplot state, no display needed).

Each function takes arrays, writes one PNG and returns its path:

- :func:`plot_pred_vs_true`: M_pred against M_true with the one-to-one line, RMSE and slope per
  panel (Figures 2, 4 and 12).
- :func:`plot_pcnn_histograms`: p_CNN distributions per sample (Figure 5).
- :func:`plot_residuals`: Delta M = M_pred - M_true against M_true, z, log M*, log(1+delta5)
  (Figure 3).
- :func:`plot_roc`: the PR classifier's ROC curve.
- :func:`plot_pit_histograms`: PIT histograms of the uncertainties per sample.
- :func:`plot_reliability`: reliability diagram of p_CNN, with the counts per bin.
- :func:`plot_uncertainty`: actual error against the error bar, and the error bar against
  log(1+delta5).
- :func:`plot_quintiles`: coverage, mean bias and Spearman(interval width, |error|) per
  quintile of p_CNN, 1+delta5, z and log M*, for all galaxies and for detections.
- :func:`plot_environment_windows`: normalized RMSE per sliding 20% delta5 validation window
  (Figure 10).
- :func:`plot_gradcam_panels`: cutout, gas-poor and gas-rich heat maps (Figure 11).
- :func:`plot_robustness`: injected-source examples and prediction histograms (Figure 13).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from hicatalog.metrics import regression_metrics
from hicatalog.storage import write_figure_atomic

__all__ = [
    "plot_pred_vs_true",
    "plot_pcnn_histograms",
    "plot_residuals",
    "plot_roc",
    "plot_pit_histograms",
    "plot_reliability",
    "plot_uncertainty",
    "plot_quintiles",
    "plot_environment_windows",
    "plot_gradcam_panels",
    "plot_robustness",
]

_DPI = 110


def _save(fig: Figure, path: str) -> str:
    return write_figure_atomic(fig, path, _DPI)


def _grid(n: int, max_cols: int = 4) -> tuple[int, int]:
    cols = min(max(n, 1), max_cols)
    return (n + cols - 1) // cols, cols


def plot_pred_vs_true(
    panels: Sequence[tuple[str, np.ndarray, np.ndarray]], path: str, max_points: int = 20000
) -> str:
    """One scatter panel per ``(title, m_true, m_pred)`` (dex), with the one-to-one line and
    the panel's N, RMSE and slope. Large samples are drawn as a 2-D histogram."""
    rows, cols = _grid(len(panels))
    fig = Figure(figsize=(3.6 * cols, 3.5 * rows), layout="constrained")
    all_vals = np.concatenate([np.r_[np.asarray(t, float), np.asarray(p, float)] for _, t, p in panels] or [np.r_[0.0]])
    all_vals = all_vals[np.isfinite(all_vals)]
    lo, hi = (np.percentile(all_vals, [0.5, 99.5]) if all_vals.size else (-2.0, 2.0))
    pad = 0.1 * max(hi - lo, 0.5)
    lim = (lo - pad, hi + pad)
    for i, (title, m_true, m_pred) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        t = np.asarray(m_true, float)
        p = np.asarray(m_pred, float)
        good = np.isfinite(t) & np.isfinite(p)
        t, p = t[good], p[good]
        if t.size > max_points:
            ax.hist2d(t, p, bins=80, range=[lim, lim], cmap="Blues", cmin=1)
        else:
            ax.scatter(t, p, s=4, alpha=0.5, color="C0", edgecolors="none")
        ax.plot(lim, lim, color="k", lw=1, ls="--", label="one-to-one")
        m = regression_metrics(t, p)
        ax.text(
            0.04, 0.96,
            f"N = {m['n']}\nRMSE = {m['rmse']:.3f} dex\nslope = {m['slope']:.3f}",
            transform=ax.transAxes, va="top", fontsize=8,
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"},
        )
        ax.set_xlim(lim)
        ax.set_ylim(lim)
        ax.set_aspect("equal")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(r"$M_{\rm true}$ = log($M_{\rm HI}/M_\star$)")
        ax.set_ylabel(r"$M_{\rm pred}$")
    return _save(fig, path)


def plot_pcnn_histograms(groups: dict[str, np.ndarray], path: str, bins: int = 20) -> str:
    """Stacked histograms (fraction per bin) of ``p_cnn`` in [0, 1], one row per sample."""
    n = max(len(groups), 1)
    fig = Figure(figsize=(5.0, 1.4 * n + 0.6), layout="constrained")
    edges = np.linspace(0.0, 1.0, bins + 1)
    axes = [fig.add_subplot(n, 1, i + 1) for i in range(n)]
    for i, (ax, (name, p)) in enumerate(zip(axes, groups.items(), strict=False)):
        p = np.asarray(p, float)
        p = p[np.isfinite(p)]
        w = np.full(p.size, 1.0 / p.size) if p.size else None
        ax.hist(p, bins=edges, weights=w, color=f"C{i % 10}", alpha=0.8)
        ax.text(0.02, 0.85, f"{name} (N = {p.size})", transform=ax.transAxes, fontsize=8, va="top")
        ax.set_xlim(0, 1)
        ax.set_ylabel("Fraction")
        if i < n - 1:
            ax.set_xticklabels([])
    axes[-1].set_xlabel(r"$p_{\rm CNN}$")
    return _save(fig, path)


def plot_residuals(
    m_true: np.ndarray, m_pred: np.ndarray, properties: dict[str, np.ndarray], path: str,
    title: str = "",
) -> str:
    """Delta M = M_pred - M_true against M_true and each of ``properties`` (label -> values,
    same length), with the running median in 10 quantile bins."""
    t = np.asarray(m_true, float)
    resid = np.asarray(m_pred, float) - t
    xs = {r"$M_{\rm true}$": t, **{k: np.asarray(v, float) for k, v in properties.items()}}
    rows, cols = _grid(len(xs), max_cols=4)
    fig = Figure(figsize=(3.4 * cols, 3.0 * rows), layout="constrained")
    for i, (label, x) in enumerate(xs.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        good = np.isfinite(x) & np.isfinite(resid)
        ax.scatter(x[good], resid[good], s=3, alpha=0.4, color="C0", edgecolors="none")
        ax.axhline(0.0, color="k", lw=1, ls="--")
        if good.sum() >= 20:
            qs = np.quantile(x[good], np.linspace(0, 1, 11))
            idx = np.clip(np.searchsorted(qs, x[good], side="right") - 1, 0, 9)
            centers = [np.median(x[good][idx == b]) for b in range(10) if (idx == b).any()]
            meds = [np.median(resid[good][idx == b]) for b in range(10) if (idx == b).any()]
            ax.plot(centers, meds, color="C3", lw=2, label="running median")
        else:
            ax.text(0.5, 0.5, f"N = {int(good.sum())}", transform=ax.transAxes, ha="center")
        ax.set_xlabel(label)
        ax.set_ylabel(r"$\Delta M$ (dex)")
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], path: str) -> str:
    """ROC curves: label -> (false-positive rate, true-positive rate, AUC)."""
    fig = Figure(figsize=(4.2, 4.0), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    for i, (label, (fpr, tpr, auc)) in enumerate(curves.items()):
        ax.plot(fpr, tpr, color=f"C{i}", label=f"{label} (AUC = {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="0.6", ls=":")
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def plot_pit_histograms(hists: dict[str, Sequence[int]], path: str) -> str:
    """One panel per sample (label -> PIT counts in equal bins of [0, 1]) as a density, with
    the flat line a calibrated Gaussian error bar gives (U-shaped: error bars too small;
    hump-shaped: too large)."""
    rows, cols = _grid(len(hists), max_cols=3)
    fig = Figure(figsize=(3.4 * cols, 2.7 * rows), layout="constrained")
    for i, (label, counts) in enumerate(hists.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        c = np.asarray(counts, float)
        n, k = c.sum(), c.size
        edges = np.linspace(0.0, 1.0, k + 1)
        dens = c * k / n if n else c
        ax.bar(edges[:-1], dens, width=1.0 / k, align="edge", color=f"C{i % 10}", alpha=0.8,
               edgecolor="white")
        ax.axhline(1.0, color="k", lw=1, ls="--", label="calibrated")
        ax.set_xlim(0, 1)
        ax.set_title(f"{label} (N = {int(n)})", fontsize=9)
        ax.set_xlabel(r"PIT = $\Phi((M_{\rm true} - M_{\rm pred}) / \sigma_{\rm pred})$")
        ax.set_ylabel("density")
    return _save(fig, path)


def plot_reliability(curves: dict[str, dict], path: str) -> str:
    """Reliability diagram: per label, the observed fraction of positives against the mean
    probability in each bin (``curves[label]`` from :func:`hicatalog.metrics.reliability_curve`,
    plus ``ece``), with the diagonal; below, the number of rows per bin (log scale)."""
    fig = Figure(figsize=(4.6, 5.4), layout="constrained")
    gs = fig.add_gridspec(2, 1, height_ratios=[3, 1])
    ax, axn = fig.add_subplot(gs[0]), fig.add_subplot(gs[1])
    ax.plot([0, 1], [0, 1], color="0.6", ls=":", label="calibrated")
    for i, (label, c) in enumerate(curves.items()):
        edges = np.asarray(c["edges"], float)
        mp = np.asarray(c["mean_prob"], float)
        ob = np.asarray(c["observed"], float)
        good = np.isfinite(mp) & np.isfinite(ob)
        ece = c.get("ece")
        tag = f" (ECE = {ece:.3f})" if ece is not None and np.isfinite(ece) else ""
        ax.plot(mp[good], ob[good], "o-", color=f"C{i}", ms=4, label=label + tag)
        axn.stairs(np.asarray(c["count"], float), edges, color=f"C{i}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel(r"mean $p_{\rm CNN}$ in bin")
    ax.set_ylabel("observed fraction detected")
    ax.legend(fontsize=7, loc="upper left")
    axn.set_xlim(0, 1)
    axn.set_yscale("log")
    axn.set_xlabel(r"$p_{\rm CNN}$")
    axn.set_ylabel("N per bin")
    return _save(fig, path)


def plot_uncertainty(
    binned: dict[str, Sequence[dict]], environment: dict[str, Sequence[dict]] | None, path: str,
) -> str:
    """Left: the rms actual error against the median error bar in quantile bins of
    ``m_pred_err`` (``binned[label]`` = the ``bins`` of
    :func:`hicatalog.metrics.error_vs_uncertainty`), with y = x (calibrated). Right (when
    ``environment`` is given): the median error bar against log(1+delta5)
    (``environment[label]`` = list of ``{"x", "median_err"}``)."""
    ncols = 2 if environment else 1
    fig = Figure(figsize=(4.2 * ncols, 3.8), layout="constrained")
    ax = fig.add_subplot(1, ncols, 1)
    top = 0.0
    for i, (label, bins) in enumerate(binned.items()):
        x = np.array([b["median_err"] for b in bins], float)
        y = np.array([b["rms_error"] for b in bins], float)
        if x.size:
            ax.plot(x, y, "o-", color=f"C{i}", ms=4, label=label)
            top = max(top, np.nanmax(np.r_[x, y]))
    top = 1.1 * top if top > 0 else 1.0
    ax.plot([0, top], [0, top], color="k", lw=1, ls="--", label="y = x")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel(r"median $\sigma_{\rm pred}$ in bin (dex)")
    ax.set_ylabel(r"rms $(M_{\rm pred} - M_{\rm true})$ (dex)")
    ax.legend(fontsize=7)
    if environment:
        ax2 = fig.add_subplot(1, ncols, 2)
        for i, (label, bins) in enumerate(environment.items()):
            x = np.array([b["x"] for b in bins], float)
            y = np.array([b["median_err"] for b in bins], float)
            ax2.plot(x, y, "o-", color=f"C{i}", ms=4, label=label)
        ax2.set_xlabel(r"log$(1+\delta_5)$")
        ax2.set_ylabel(r"median $\sigma_{\rm pred}$ (dex)")
        ax2.legend(fontsize=7)
    return _save(fig, path)


#: The columns of :func:`plot_quintiles`: (metric key, title, target, band half width).
QUINTILE_PANELS = (
    ("coverage_68", "68% coverage", 0.6827, 0.03),
    ("coverage_95", "95% coverage", 0.95, 0.02),
    ("bias", r"mean $M_{\rm pred} - M_{\rm true}$ (dex)", 0.0, 0.05),
    ("spearman_width_abs_error", r"Spearman(width, $|$error$|$)", 0.0, None),
)


def plot_quintiles(variables: dict[str, dict | None], labels: dict[str, str], path: str) -> str:
    """One row per grouping variable, one column per :data:`QUINTILE_PANELS` metric, against
    the quintile (1-5, its range in the tick labels): ``variables[name]`` = the entry of
    :func:`hicatalog.evaluation.catalog.quintile_block` (``{"edges", "all": [...],
    "detections": [...]}``; ``None``: the row says the variable is missing); ``labels[name]``
    names the variable. ``all`` solid, ``detections`` dashed; the nominal value as a line and
    the goal as a grey band (coverage +-0.03 / +-0.02, bias +-0.05; Spearman: the 0.2 goal of
    the overall correlation dotted)."""
    names = list(variables)
    ncols = len(QUINTILE_PANELS)
    fig = Figure(figsize=(3.1 * ncols, 2.3 * max(len(names), 1)), layout="constrained")
    for r, name in enumerate(names):
        entry = variables[name]
        for c, (key, title, target, band) in enumerate(QUINTILE_PANELS):
            ax = fig.add_subplot(max(len(names), 1), ncols, r * ncols + c + 1)
            if band is not None:
                ax.axhspan(target - band, target + band, color="0.85", lw=0)
            ax.axhline(target, color="k", lw=0.8)
            if key == "spearman_width_abs_error":
                ax.axhline(0.2, color="k", lw=0.8, ls=":")
            if r == 0:
                ax.set_title(title, fontsize=9)
            if c == 0:
                ax.set_ylabel(labels.get(name, name), fontsize=9)
            if entry is None:
                ax.text(0.5, 0.5, "not in the inputs", ha="center", va="center",
                        transform=ax.transAxes, fontsize=8)
                continue
            for sub, ls in (("all", "-"), ("detections", "--")):
                qs = entry.get(sub) or []
                y = np.array([q[key] if q[key] is not None else np.nan for q in qs], float)
                ax.plot(np.arange(1, y.size + 1), y, "o" + ls, color="C0" if sub == "all" else "C1",
                        ms=3, label=sub)
            e = entry["edges"]
            ax.set_xticks(range(1, len(e)))
            ax.set_xticklabels([f"{e[i]:.3g}-\n{e[i + 1]:.3g}" for i in range(len(e) - 1)],
                               fontsize=6)
            if r == 0 and c == 0:
                ax.legend(fontsize=7)
    return _save(fig, path)


def plot_environment_windows(
    centers: Sequence[float], means: Sequence[float], stds: Sequence[float], path: str,
    random: tuple[float, float] | None = None,
    log10_one_plus_delta5_at_center: Sequence[float] | None = None,
) -> str:
    """Figure 10: normalized RMSE (mean +- std over repeats) against the central delta5
    quantile of each 20% validation window; the random split as a red band; the top axis
    gives log10(1+delta5) at each window's centre."""
    fig = Figure(figsize=(5.2, 3.6), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    ax.errorbar(centers, means, yerr=stds, fmt="o", color="k", capsize=3, label="delta5 windows")
    if random is not None:
        m, s = random
        ax.axhspan(m - s, m + s, color="C3", alpha=0.2)
        ax.axhline(m, color="C3", lw=1, label="random split")
    ax.set_xlim(0, 1)
    ax.set_xlabel(r"Validation $\delta_5$ central quantile")
    ax.set_ylabel("Normalized RMSE")
    ax.legend(fontsize=8)
    if log10_one_plus_delta5_at_center is not None:
        top = ax.twiny()
        top.set_xlim(ax.get_xlim())
        top.set_xticks(list(centers))
        top.set_xticklabels([f"{v:.2f}" for v in log10_one_plus_delta5_at_center], fontsize=7)
        top.set_xlabel(r"log$(1+\delta_5)$")
    return _save(fig, path)


def plot_gradcam_panels(
    images: np.ndarray, cams: np.ndarray, titles: Sequence[str], class_names: Sequence[str],
    path: str,
) -> str:
    """Figure 11: per row, the cutout (``uint8`` (N, 3, S, S)) and one heat map per class
    (``cams`` float (N, C, S, S) in [0, 1]) overlaid on the grey image."""
    n, n_cls = cams.shape[0], cams.shape[1]
    fig = Figure(figsize=(2.2 * (n_cls + 1), 2.2 * n), layout="constrained")
    for i in range(n):
        rgb = images[i].transpose(1, 2, 0)
        grey = rgb.astype(float).mean(axis=2)
        ax = fig.add_subplot(n, n_cls + 1, i * (n_cls + 1) + 1)
        ax.imshow(rgb)
        ax.set_title(titles[i], fontsize=7)
        ax.axis("off")
        for c in range(n_cls):
            ax = fig.add_subplot(n, n_cls + 1, i * (n_cls + 1) + 2 + c)
            ax.imshow(grey, cmap="gray")
            ax.imshow(cams[i, c], cmap="jet", alpha=0.5, vmin=0.0, vmax=1.0)
            ax.set_title(class_names[c], fontsize=7)
            ax.axis("off")
    return _save(fig, path)


def plot_robustness(
    examples: np.ndarray, preds: dict[str, np.ndarray], m_pred0: float, m_true: float, path: str,
    title: str = "",
) -> str:
    """Figure 13 row: example injected images (``uint8`` (K, 3, S, S)) and histograms of the
    perturbed predictions per colour, with the original M_pred (dashed) and M_true (solid)."""
    k = examples.shape[0]
    fig = Figure(figsize=(2.4 * (k + 1.6), 2.4), layout="constrained")
    for i in range(k):
        ax = fig.add_subplot(1, k + 1, i + 1)
        ax.imshow(examples[i].transpose(1, 2, 0))
        ax.axis("off")
    ax = fig.add_subplot(1, k + 1, k + 1)
    for color, p in preds.items():
        ax.hist(np.asarray(p, float), bins=15, histtype="step", color=color, lw=1.5, label=color)
    ax.axvline(m_pred0, color="k", ls="--", lw=1)
    if np.isfinite(m_true):
        ax.axvline(m_true, color="k", lw=1)
    ax.set_xlabel(r"$M_{\rm pred}$")
    ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)
