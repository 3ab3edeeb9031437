"""Model artifacts on disk: ``weights.pt`` (a plain state_dict) + ``model_card.json``.

A model directory holds everything needed to rebuild and use a trained network without
running any code from the artifact: the card (:class:`~hicatalog.models.card.ModelCard`)
names the architecture, which :func:`~hicatalog.models.registry.build_model` builds from this
package. Weights are read with ``torch.load(weights_only=True)`` after their SHA-256 is
checked against the card's ``weights_sha256``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import io
import os
from pathlib import Path

import torch
from torch import nn

from hicatalog.models.card import ModelCard
from hicatalog.models.registry import build_model
from hicatalog.storage import write_atomic

__all__ = ["WEIGHTS_FILE", "CARD_FILE", "file_sha256", "save_model", "load_card", "load_model"]

WEIGHTS_FILE = "weights.pt"
CARD_FILE = "model_card.json"


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 digest (64 characters) of the file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_model(model_dir: str | os.PathLike, model: nn.Module, card: ModelCard) -> ModelCard:
    """Write ``model_dir/weights.pt`` (CPU state_dict) and ``model_dir/model_card.json``.

    A DDP/compiled wrapper is unwrapped. Fills ``weights_sha256`` (of the bytes written),
    ``created`` (UTC, ISO 8601, when empty) and returns the card as written; ``card`` itself
    is not modified. Both files appear atomically.
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
    write_atomic(out / CARD_FILE, card.to_json().encode())
    return card


def load_card(model_dir: str | os.PathLike) -> ModelCard:
    """Read ``model_dir/model_card.json``; missing or malformed is a ValueError naming it."""
    path = Path(model_dir) / CARD_FILE
    if not path.is_file():
        raise ValueError(f"{path}: model card not found (expected a model directory from `hicatalog train`)")
    return ModelCard.from_json(path.read_text(), source=str(path))


def load_model(model_dir: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[nn.Module, ModelCard]:
    """Rebuild a saved model: ``(model in eval mode on map_location, card)``.

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
    digest = file_sha256(weights)
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
