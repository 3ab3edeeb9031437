"""Self-describing model artifacts: ``weights.pt`` (a plain state_dict) + ``model_card.json``.

A model directory holds everything needed to rebuild and use a trained network without
running any code from the artifact: the card names the architecture (built from this
package), the task, the input geometry, the survey, the pixel normalisation, the training
data fingerprint, the hyperparameters, the final metrics and the code version. Weights are
read with ``torch.load(weights_only=True)`` and checked against the card's SHA-256.

Output conventions: regression networks output ``(N, 1)`` M = log10(M_HI/M*) in dex;
classifiers (``pr``, ``gasclass``) output ``(N, 2)`` logits, class order in ``card.classes``
(``pr``: ``["nondetection", "detection"]``, so ``p_cnn = softmax(logits)[:, 1]``).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hicatalog.models.dihedral import tta_predict
from hicatalog.models.shallow import shallow_cnn
from hicatalog.models.xresnet import xresnet18, xresnet34, xresnet50
from hicatalog.storage import write_atomic

__all__ = [
    "predict_views",
    "ARCHITECTURES",
    "TASK_CLASSES",
    "WEIGHTS_FILE",
    "CARD_FILE",
    "ModelCard",
    "build_model",
    "save_model",
    "load_model",
    "load_card",
    "preprocess",
    "compute_normalization",
]

WEIGHTS_FILE = "weights.pt"
CARD_FILE = "model_card.json"

#: Architecture name -> factory ``(n_out, *, width, in_channels, sa) -> nn.Module``.
ARCHITECTURES = {
    "xresnet18": xresnet18,
    "xresnet34": xresnet34,
    "xresnet50": xresnet50,
    "shallow": lambda n_out, *, width, in_channels, sa: shallow_cnn(
        n_out, width=width, in_channels=in_channels
    ),
}

#: Output classes of each task (``None``: regression, one output).
TASK_CLASSES: dict[str, list[str] | None] = {
    "regression": None,
    "pr": ["nondetection", "detection"],
    "gasclass": ["gas_poor", "gas_rich"],
}


@dataclass
class ModelCard:
    """Description of a trained model (stored as ``model_card.json``).

    ``image_size``: network input side (px); ``cutout_size``: side of the stored JPEG cutouts
    (px) the model was trained from; ``normalization``: ``{"mean": [3 floats], "std": [3
    floats]}`` per channel, on pixels scaled to 0-1; ``weights_sha256``: hex digest of
    ``weights.pt`` (filled by :func:`save_model`).
    """

    model_id: str
    task: str
    arch: str
    width: float
    n_outputs: int
    image_size: int
    cutout_size: int | None
    survey: str
    normalization: dict[str, list[float]]
    data_fingerprint: str = ""
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    code_version: str = ""
    created: str = ""
    weights_sha256: str = ""
    in_channels: int = 3
    self_attention: bool = True
    classes: list[str] | None = None

    def __post_init__(self) -> None:
        if self.task not in TASK_CLASSES:
            raise ValueError(f"model card task must be one of {sorted(TASK_CLASSES)}, got {self.task!r}")
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"model card arch must be one of {sorted(ARCHITECTURES)}, got {self.arch!r}")
        if self.survey not in ("sdss", "legacy"):
            raise ValueError(f"model card survey must be 'sdss' or 'legacy', got {self.survey!r}")
        norm = self.normalization
        if (
            not isinstance(norm, dict)
            or set(norm) != {"mean", "std"}
            or any(len(norm[k]) != self.in_channels for k in ("mean", "std"))
            or any(float(s) <= 0 for s in norm["std"])
        ):
            raise ValueError(
                "model card normalization must be {'mean': [..], 'std': [..]} with "
                f"{self.in_channels} values each and std > 0, got {norm!r}"
            )
        if self.classes is None:
            self.classes = TASK_CLASSES[self.task]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "<string>") -> ModelCard:
        """Parse a card; a malformed document is a ValueError naming ``source``."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{source}: model card is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{source}: model card must be a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{source}: unknown model card keys {unknown}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ValueError(f"{source}: incomplete model card: {exc}") from None
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None


def build_model(card: ModelCard) -> nn.Module:
    """The (untrained) network a card describes."""
    return ARCHITECTURES[card.arch](
        card.n_outputs, width=card.width, in_channels=card.in_channels, sa=card.self_attention
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_model(model_dir: str | os.PathLike, model: nn.Module, card: ModelCard) -> ModelCard:
    """Write ``model_dir/weights.pt`` (CPU state_dict) and ``model_dir/model_card.json``.

    A DDP/compiled wrapper is unwrapped. Fills ``weights_sha256``, ``created`` (UTC, ISO 8601,
    when empty) and returns the card as written. Both files appear atomically.
    """
    out = Path(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    model = getattr(model, "_orig_mod", model)
    state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    write_atomic(out / WEIGHTS_FILE, data)
    card = dataclasses.replace(card, weights_sha256=hashlib.sha256(data).hexdigest())
    if not card.created:
        card.created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    text = card.to_json()
    write_atomic(out / CARD_FILE, text.encode())
    return card


def load_card(model_dir: str | os.PathLike) -> ModelCard:
    """Read ``model_dir/model_card.json``; missing or malformed is a ValueError naming it."""
    path = Path(model_dir) / CARD_FILE
    if not path.is_file():
        raise ValueError(f"{path}: model card not found (expected a model directory from `hicatalog train`)")
    return ModelCard.from_json(path.read_text(), source=str(path))


def load_model(model_dir: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[nn.Module, ModelCard]:
    """Rebuild a saved model: ``(model in eval mode, card)``.

    The architecture comes from the card (no code is unpickled); weights are read with
    ``torch.load(weights_only=True)`` after checking their SHA-256 against the card.

    Raises
    ------
    ValueError: missing or malformed card, missing/corrupt weights, hash mismatch, or weights
        that do not fit the architecture; the message names the file.
    """
    card = load_card(model_dir)
    weights = Path(model_dir) / WEIGHTS_FILE
    if not weights.is_file():
        raise ValueError(f"{weights}: weights file not found")
    digest = _sha256(weights)
    if card.weights_sha256 and digest != card.weights_sha256:
        raise ValueError(
            f"{weights}: SHA-256 {digest[:16]}... does not match the model card's "
            f"{card.weights_sha256[:16]}... (file changed or corrupt)"
        )
    try:
        state = torch.load(weights, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise ValueError(f"{weights}: cannot read weights: {exc}") from None
    if not isinstance(state, dict):
        raise ValueError(f"{weights}: expected a state_dict, got {type(state).__name__}")
    model = build_model(card)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{weights}: weights do not fit {card.arch} ({card.n_outputs} outputs): {exc}") from None
    model.to(map_location)
    model.eval()
    return model, card


def preprocess(images_uint8: np.ndarray | Tensor, card: ModelCard) -> Tensor:
    """Decoded cutouts -> normalised network input.

    ``images_uint8``: ``(N, C, S, S)`` ``uint8`` (channels first, as
    :func:`hicatalog.cutouts.decode.decode_batch` returns). Returns ``float32``
    ``(N, C, card.image_size, card.image_size)`` = ``(pixel/255 - mean) / std``, resized
    (bilinear, antialiased) when ``S != card.image_size``. Stays on the input's device.
    """
    x = torch.as_tensor(images_uint8)
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != card.in_channels:
        raise ValueError(
            f"preprocess expects uint8 images (N, {card.in_channels}, S, S), got "
            f"{x.dtype} {tuple(x.shape)}"
        )
    x = x.float().div_(255.0)
    if x.shape[-1] != card.image_size or x.shape[-2] != card.image_size:
        x = F.interpolate(
            x, size=(card.image_size, card.image_size), mode="bilinear", antialias=True,
            align_corners=False,
        )
    mean = torch.tensor(card.normalization["mean"], dtype=torch.float32, device=x.device)
    std = torch.tensor(card.normalization["std"], dtype=torch.float32, device=x.device)
    return (x - mean[:, None, None]) / std[:, None, None]


@torch.inference_mode()
def predict_views(
    model: nn.Module, card: ModelCard, images_uint8: np.ndarray | Tensor, tta: bool = True
) -> Tensor:
    """Raw outputs of ``model`` on decoded cutouts, one row per view.

    ``images_uint8``: ``(N, 3, S, S)`` uint8 (moved to the model's device and prepared with
    :func:`preprocess`). Returns float32 ``(N, V, n_out)``: ``V = 8`` dihedral views with
    ``tta``, else ``V = 1`` (the image as stored). Average over axis 1 for the prediction
    (after a softmax for classifiers). The one place the catalog build and the evaluation
    turn pixels into model outputs.
    """
    device = next(model.parameters()).device
    x = preprocess(torch.as_tensor(images_uint8).to(device), card)
    if tta:
        return tta_predict(model, x).float()
    model.eval()
    return model(x)[:, None, :].float()


def compute_normalization(images_uint8: np.ndarray | Tensor) -> dict[str, list[float]]:
    """Per-channel mean and std of ``uint8`` images ``(N, C, H, W)`` on the 0-1 scale."""
    x = torch.as_tensor(np.array(images_uint8, copy=True)).double().div(255.0)
    if x.ndim != 4 or x.shape[0] == 0:
        raise ValueError(f"compute_normalization needs a non-empty (N, C, H, W) batch, got {tuple(x.shape)}")
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}
