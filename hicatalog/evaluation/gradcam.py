"""``hicatalog evaluate gradcam``: Grad-CAM heat maps of the gas-poor / gas-rich classifier
(paper Section 8, Figure 11).

:func:`grad_cam` implements Selvaraju et al. (2017): hook the output ``A`` (``(N, K, h, w)``)
of a convolutional layer and its gradient ``dy_c/dA`` for class ``c``; weight each channel by
its spatially averaged gradient, sum, ReLU, upsample (bilinear) to the input size and scale
each map to [0, 1].

:func:`run_gradcam` trains the shallow CNN (``arch='shallow'``, task ``gasclass``: M < -0.5
gas-poor, M > 0.5 gas-rich) through the same Ray Train code as ``hicatalog train``, once on
the colour cutouts and once on single-band versions (:func:`single_band`), and draws the maps
of both classes for a sample of cutouts.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from hicatalog.cutouts.decode import decode_batch
from hicatalog.cutouts.shards import list_shards, probe_cutouts, write_shard
from hicatalog.errors import InputError
from hicatalog.evaluation import figures
from hicatalog.evaluation.report import Report, Section, write_report
from hicatalog.storage import join, read_parquet, write_atomic, write_json_atomic

__all__ = ["grad_cam", "single_band", "write_single_band_shards", "run_gradcam",
           "GAS_POOR_MAX", "GAS_RICH_MIN"]

log = logging.getLogger("hicatalog.evaluation")

#: Class thresholds of Section 8.1 (dex): gas-poor M < -0.5, gas-rich M > 0.5.
GAS_POOR_MAX = -0.5
GAS_RICH_MIN = 0.5


def grad_cam(
    model: nn.Module, x: Tensor, target: int | Tensor, layer: nn.Module | None = None
) -> Tensor:
    """Grad-CAM maps of ``model`` for class ``target`` on inputs ``x``.

    Parameters
    ----------
    model: a classifier returning logits ``(N, n_classes)``; put in eval mode for the call.
    x: float input ``(N, C, H, W)`` (already normalised).
    target: class index for every image, or a ``(N,)`` integer tensor.
    layer: the convolutional module whose output is attributed (default ``model.cam_layer``).

    Returns
    -------
    float32 ``(N, H, W)`` on ``x``'s device, each map scaled to [0, 1] (all zeros when the
    ReLU of the weighted sum is zero everywhere).
    """
    if layer is None:
        layer = getattr(model, "cam_layer", None)
        if layer is None:
            raise ValueError(f"{type(model).__name__} has no cam_layer; pass layer=")
    if x.ndim != 4:
        raise ValueError(f"grad_cam expects (N, C, H, W) input, got shape {tuple(x.shape)}")
    store: dict[str, Tensor] = {}

    def _forward_hook(_module: nn.Module, _inp: Any, out: Tensor) -> None:
        store["act"] = out
        out.register_hook(lambda g: store.__setitem__("grad", g))

    was_training = model.training
    model.eval()
    handle = layer.register_forward_hook(_forward_hook)
    try:
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)  # gradients flow even for frozen weights
            logits = model(x)
            if logits.ndim != 2:
                raise ValueError(f"grad_cam needs (N, n_classes) logits, got {tuple(logits.shape)}")
            idx = torch.as_tensor(target, device=logits.device).long().expand(logits.shape[0])
            score = logits.gather(1, idx[:, None]).sum()
            model.zero_grad(set_to_none=True)
            score.backward()
    finally:
        handle.remove()
        model.train(was_training)
    act, grad = store["act"].detach(), store["grad"].detach()
    weights = grad.mean(dim=(2, 3), keepdim=True)  # (N, K, 1, 1)
    cam = F.relu((weights * act).sum(dim=1, keepdim=True))  # (N, 1, h, w)
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).amax(dim=1).clamp_min(1e-12)[:, None, None]
    return (cam / peak).float()


def single_band(images: np.ndarray) -> np.ndarray:
    """Monochromatic versions of ``uint8`` ``(N, 3, S, S)`` gri cutouts: the summed channels
    (scaled by 1/3 to stay in 0-255) replicated into all three channels, ``uint8`` same shape."""
    mono = np.rint(images.astype(np.float32).mean(axis=1, keepdims=True)).astype(np.uint8)
    return np.repeat(mono, images.shape[1], axis=1)


def write_single_band_shards(data: str | list[str], out_dir: str, quality: int = 95) -> str:
    """Write single-band copies of cutout shards (every column kept, ``image`` replaced by the
    JPEG of :func:`single_band`; undecodable images are kept as they were, so every row
    survives). Returns ``out_dir``."""
    for i, f in enumerate(list_shards(data, contract="cutouts")):
        table = read_parquet(f)
        images = table.column("image").to_pylist()
        size = probe_cutouts([f]).side_px
        batch = decode_batch(images, expected_size=None, out_size=size)
        mono = single_band(batch.images)
        out = []
        for j, data_j in enumerate(images):
            if not batch.ok[j]:
                out.append(data_j)
                continue
            buf = io.BytesIO()
            Image.fromarray(mono[j].transpose(1, 2, 0)).save(buf, format="JPEG", quality=quality)
            out.append(buf.getvalue())
        idx = table.column_names.index("image")
        table = table.set_column(idx, "image", pa.array(out, pa.binary()))
        write_shard(table, out_dir, "mono", i)
    return out_dir


def _train_classifier(data: list[str], out: str, seed: int,
                      training: Mapping[str, Any]) -> dict[str, Any]:
    """The shallow gas-class network of Section 8.1 on ``data`` into ``out``: ``training``'s
    options (keyword arguments of :func:`hicatalog.training.trainer.train`), with 10 epochs
    unless it gives them."""
    from hicatalog.training.trainer import train

    options = {**training, "arch": "shallow", "epochs": training.get("epochs") or 10}
    return train(data, out, task="gasclass", seed=seed, **options)


def _cams_for(model_dir: str, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The saved classifier's class probabilities ``(N, n_classes)`` (identity view, as
    :func:`hicatalog.models.predict_views` and :func:`hicatalog.models.class_probabilities`
    give them), Grad-CAM maps ``(N, n_classes, S, S)`` in [0, 1] for every class of ``uint8``
    ``(N, 3, S, S)`` ``images``, and the class names in output order."""
    from hicatalog.models import class_probabilities, load_model, predict_views, preprocess

    model, card = load_model(model_dir)
    prob = class_probabilities(predict_views(model, card, images, tta=False)).numpy()
    x = preprocess(images, card)
    cams = np.stack([grad_cam(model, x, c).numpy() for c in range(prob.shape[1])], axis=1)
    if cams.shape[-1] != images.shape[-1]:
        cams = F.interpolate(torch.from_numpy(cams), size=images.shape[-2:], mode="bilinear",
                             align_corners=False).numpy()
    return prob, cams, list(card.classes or [str(c) for c in range(prob.shape[1])])


def run_gradcam(data: Sequence[str], out: str, *, seed: int = 0, n_images: int = 8,
                training: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Train the colour and single-band shallow classifiers on the shards ``data`` (split and
    training seed ``seed``; ``training``: keyword arguments of
    :func:`hicatalog.training.trainer.train`, epochs 10 unless given) and draw Figure 11.

    The maps are drawn for ``n_images`` validation cutouts of the classifier (half of each
    class). Writes ``OUT/gradcam.json``, ``OUT/gradcam_color.png``, ``OUT/gradcam_mono.png`` and
    ``OUT/index.html``; the models go to ``OUT/models/{color,mono}``.
    """
    from hicatalog.cutouts.shards import list_shards
    from hicatalog.evaluation.data import load_cutouts
    from hicatalog.training.data import select_rows

    data = list(data)
    mono_dir = write_single_band_shards(data, join(out, "mono_cutouts"))
    results: dict[str, Any] = {"inputs": {"data": data}, "versions": {}}
    # the cutouts shown are validation rows of the classifier (same selection and seed as the
    # training below), half gas-poor and half gas-rich
    sel = select_rows(list_shards(data, contract="cutouts"), "gasclass", seed=seed)
    val = sel.table.filter(sel.table.column("is_val"))
    target = val.column("target").to_numpy()
    val_ids = np.asarray(val.column("object_id").to_pylist(), dtype=object)
    rng = np.random.default_rng(seed)
    k = n_images
    poor_ids = rng.permutation(val_ids[target == 0])[: k // 2]
    rich_ids = rng.permutation(val_ids[target == 1])[: k - poor_ids.size]
    wanted = [str(i) for i in np.r_[poor_ids, rich_ids]]
    sample = load_cutouts(data, columns=("object_id", "m_true"),
                          filter_expr=pc.field("object_id").isin(pa.array(wanted, pa.string())))
    order = {o: j for j, o in enumerate(sample.columns["object_id"])}
    pick = np.array([order[o] for o in wanted if o in order], dtype=int)
    m = sample.columns["m_true"]
    if pick.size == 0:
        raise InputError(f"{data}: no decodable validation cutout of the gas classes to show")
    images = sample.images[pick]
    sections = []
    for version, version_data, imgs in (
        ("color", data, images), ("mono", [mono_dir], single_band(images)),
    ):
        model_dir = join(out, "models", version)
        train_result = _train_classifier(version_data, model_dir, seed, training or {})
        prob, cams, classes = _cams_for(model_dir, imgs)
        truth = np.where(m[pick] > GAS_RICH_MIN, "gas_rich", "gas_poor")
        pred = np.array(classes)[prob.argmax(axis=1)]
        titles = [
            f"{sample.columns['object_id'][j]} M={m[j]:.2f}\n"
            + " ".join(f"{c}:{p:.2f}" for c, p in zip(classes, prob[i], strict=True))
            for i, j in enumerate(pick)
        ]
        fig = figures.plot_gradcam_panels(
            imgs, cams, titles, [f"{c} map" for c in classes], join(out, f"gradcam_{version}.png")
        )
        npy = io.BytesIO()
        np.save(npy, cams.astype(np.float32))
        write_atomic(join(out, f"gradcam_{version}.npy"), npy.getvalue())
        results["versions"][version] = {
            "model_dir": model_dir,
            "train_metrics": train_result.get("metrics", train_result) if isinstance(train_result, dict) else None,
            "sample_accuracy": float(np.mean(pred == truth)),
            "object_ids": [str(sample.columns["object_id"][j]) for j in pick],
            "probabilities": prob.tolist(),
            "classes": classes,
        }
        sec = Section(f"Grad-CAM, {version} cutouts", figures=[fig])
        sec.add_table(
            ("object_id", "M_true", "true class", *[f"p({c})" for c in classes]),
            [[str(sample.columns["object_id"][j]), float(m[j]), truth[i], *prob[i].tolist()]
             for i, j in enumerate(pick)],
        )
        sections.append(sec)
    write_json_atomic(join(out, "gradcam.json"), results)
    write_report(Report("hicatalog evaluation: Grad-CAM (Figure 11)", sections,
                        inputs=results["inputs"]), out)
    return results
