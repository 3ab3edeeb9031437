"""Both models on one batch: the Ray Data actor of the catalog build.

:class:`CatalogPredictor` is the callable class that ``Dataset.map_batches`` runs in an actor
pool: each actor loads the regression and the pattern-recognition (PR) models once and
predicts every batch with both. :func:`predict_images` is the same computation as a plain
function (the benchmark times it on already-decoded tensors).

Outputs per good row (``ok``), from :mod:`hicatalog.models.predict` (each model a single
network or a deep ensemble, members run on the same batch): ``m_pred`` (dex), the mean over
members and the 8 dihedral views of the regression output; ``m_pred_err`` (dex), the error bar
(:func:`hicatalog.models.predict.catalog_error`): the total predictive standard deviation
(members' mean variance plus the variance of their means, scaled by the card's calibration)
and ``(1 - p_cnn)`` times the variance of M over the regression's training rows (the chance
that the galaxy is unlike them); NaN for a single ``point`` network, which has no uncertainty;
``m_pred_std`` (dex), the standard deviation over the views of the members' mean (sensitivity
to flips and rotations, not an error bar); ``p_cnn``, the PR model's probability of its
positive class (``detection``): softmax of the logits over the card's calibrated temperature,
averaged over members and views (:func:`hicatalog.models.positive_probability`). With
``tta=False`` only the identity view is used and ``m_pred_std`` is NaN. Rows that are not
``ok`` get NaN (null in the catalog).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from hicatalog.cutouts.decode import ImageDecodeError, decode_jpeg, ends_with_eoi, read_jpeg_header
from hicatalog.models.artifact import load_model
from hicatalog.models.card import ModelCard
from hicatalog.models.predict import (
    catalog_error,
    positive_probability,
    predict_views,
    regression_moments,
)
from hicatalog.runtime import set_torch_threads, use_bf16

__all__ = ["CatalogPredictor", "predict_images", "gpu_decode", "PREDICTION_COLUMNS"]

#: The columns the models add to every row (float32; NaN where ``status != 'ok'``).
PREDICTION_COLUMNS = ("m_pred", "m_pred_err", "m_pred_std", "p_cnn")

log = logging.getLogger("hicatalog.catalog.inference")


@torch.inference_mode()
def predict_images(
    images_uint8: np.ndarray | torch.Tensor,
    regression: torch.nn.Module,
    reg_card: ModelCard,
    pr: torch.nn.Module,
    pr_card: ModelCard,
    tta: bool = True,
    device: str | torch.device = "cpu",
    bf16: bool = False,
) -> dict[str, np.ndarray]:
    """Run both models on decoded cutouts.

    Parameters
    ----------
    images_uint8: ``(N, 3, S, S)`` uint8, channels first (``decode_batch`` layout); resized to
        each model's ``image_size`` by :func:`hicatalog.models.preprocess`.
    pr_card: a classifier card; ``p_cnn`` is the probability of its ``positive_class``.
    bf16: bf16 autocast on channels_last inputs (see :func:`hicatalog.models.predict_views`).

    Returns
    -------
    :data:`PREDICTION_COLUMNS`: ``m_pred`` (dex), ``m_pred_err`` (dex, NaN for a single
    ``point`` network), ``m_pred_std`` (dex, NaN without TTA), ``p_cnn`` (0-1): float32 arrays
    ``(N,)``.
    """
    x = torch.as_tensor(images_uint8).to(device, non_blocking=True)
    moments = regression_moments(predict_views(regression, reg_card, x, tta, bf16=bf16), reg_card)
    p_cnn = positive_probability(predict_views(pr, pr_card, x, tta, bf16=bf16), pr_card)
    # one copy back to the host, not four
    err = catalog_error(moments["std"], p_cnn, reg_card)
    out = torch.stack([moments["mean"], err, moments["view_std"], p_cnn]).cpu().numpy()
    return dict(zip(PREDICTION_COLUMNS, out.astype(np.float32), strict=True))


def gpu_decode(
    images: list[bytes | None], expected_size: int | None, out_size: int, device: str
) -> tuple[torch.Tensor, np.ndarray, list[str], list[str | None]]:
    """Decode JPEGs with torchvision's GPU decoder, as one batch; statuses as
    :func:`hicatalog.cutouts.decode.decode_batch`.

    Returns ``(images uint8 (N, 3, out_size, out_size) on device, ok bool (N,), statuses,
    errors)``. Marker, size and mode are checked from the headers with
    :func:`hicatalog.cutouts.decode.read_jpeg_header` (no pixel decoding), and a file without
    its end marker is decoded on the CPU for its status
    (:func:`hicatalog.cutouts.decode.ends_with_eoi`); the good rows are
    decoded in one batched call; if the decoder rejects that batch, they are decoded one by
    one, and a row it rejects is decoded once more on the CPU to get its exact status.
    """
    import torch.nn.functional as F
    import torchvision.io as tvio  # optional GPU extra

    n = len(images)
    status: list[str] = ["ok"] * n
    error: list[str | None] = [None] * n
    good: list[int] = []
    for i, data in enumerate(images):
        try:
            read_jpeg_header(data, expected_size)  # the CPU path's header checks and statuses
            if not ends_with_eoi(data):  # nvJPEG would decode a truncated file as "ok"
                decode_jpeg(data, expected_size, out_size)
            good.append(i)
        except ImageDecodeError as exc:
            status[i], error[i] = exc.status, str(exc)
    out = torch.zeros((n, 3, out_size, out_size), dtype=torch.uint8, device=device)
    ok = np.zeros(n, dtype=bool)
    if not good:
        return out, ok, status, error
    encoded = [torch.frombuffer(bytearray(images[i]), dtype=torch.uint8) for i in good]
    try:
        decoded: list[torch.Tensor | None] = list(
            tvio.decode_jpeg(encoded, mode=tvio.ImageReadMode.RGB, device=device))
    except RuntimeError:
        decoded = []
        for i, data in zip(good, encoded, strict=True):
            try:
                decoded.append(tvio.decode_jpeg(data, mode=tvio.ImageReadMode.RGB, device=device))
            except RuntimeError:
                decoded.append(None)
                try:
                    decode_jpeg(images[i], expected_size, out_size)
                    status[i], error[i] = "corrupt_image", "GPU JPEG decoder rejected the image"
                except ImageDecodeError as exc:
                    status[i], error[i] = exc.status, str(exc)
    idx = [i for i, img in zip(good, decoded, strict=True) if img is not None]
    if idx:
        batch = torch.stack([img for img in decoded if img is not None])
        if batch.shape[-1] != out_size or batch.shape[-2] != out_size:
            batch = F.interpolate(batch.float(), size=(out_size, out_size), mode="bilinear",
                                  antialias=True).round_().clamp_(0, 255).to(torch.uint8)
        out[torch.as_tensor(idx, device=device)] = batch
        ok[idx] = True
    return out, ok, status, error


class CatalogPredictor:
    """Ray Data actor holding both models; ``__call__`` maps a batch to its predictions.

    On construction it sets torch's threads to the CPUs Ray assigned to the actor
    (:func:`hicatalog.runtime.set_torch_threads`): ask for more threads with ``num_cpus``.
    Input batch (numpy format): ``image`` either decoded ``uint8 (B, 3, S, S)`` with ``status``
    and ``error`` from :func:`hicatalog.cutouts.decode.decode_batch`, or (``gpu_decode``) the
    JPEG bytes, decoded here on the GPU. Output: the input columns without ``image``, plus
    :data:`PREDICTION_COLUMNS` (float32, NaN where ``status != 'ok'``).
    """

    def __init__(
        self,
        regression_dir: str,
        pr_dir: str,
        tta: bool = True,
        device: str = "cpu",
        gpu_decode: bool = False,
        cutout_size: int | None = None,
        decode_size: int | None = None,
        precision: str = "auto",
    ):
        threads = set_torch_threads()
        self.bf16 = use_bf16(precision, device)
        log.info("inference actor: %d torch thread(s) on %s, %s", threads, device,
                 "bf16" if self.bf16 else "fp32")
        self.device = device
        self.regression, self.reg_card = load_model(regression_dir, map_location=device)
        self.pr, self.pr_card = load_model(pr_dir, map_location=device)
        if str(device).startswith("cuda"):
            # batches have one shape (the last of a shard aside): let cuDNN time its kernels
            torch.backends.cudnn.benchmark = True
        if self.bf16:
            fmt = torch.channels_last
            self.regression, self.pr = self.regression.to(memory_format=fmt), self.pr.to(memory_format=fmt)
        self.tta = tta
        self.gpu_decode = gpu_decode
        self.cutout_size = cutout_size
        self.decode_size = decode_size or max(self.reg_card.image_size, self.pr_card.image_size)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        n = len(batch["object_id"])
        status = np.asarray(batch["status"], dtype=object)
        error = np.asarray(batch["error"], dtype=object)
        todo = status == "ok"
        if self.gpu_decode:
            imgs, ok, st, er = gpu_decode(
                [batch["image"][i] if todo[i] else None for i in range(n)],
                self.cutout_size, self.decode_size, self.device,
            )
            for i in np.flatnonzero(todo & ~ok):
                status[i], error[i] = st[i], er[i]
            todo &= ok
            images = imgs[torch.as_tensor(np.flatnonzero(todo), device=self.device)]
        else:
            images = np.asarray(batch["image"])[todo]
        out = {k: v for k, v in batch.items() if k != "image"}
        out["status"], out["error"] = status, error
        for col in PREDICTION_COLUMNS:
            out[col] = np.full(n, np.nan, dtype=np.float32)
        if todo.any():
            pred = predict_images(images, self.regression, self.reg_card, self.pr, self.pr_card,
                                  tta=self.tta, device=self.device, bf16=self.bf16)
            for col, values in pred.items():
                out[col][todo] = values
        return out
