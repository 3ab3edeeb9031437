"""Model artifacts: ``weights.pt`` (a plain state_dict) + ``model_card.json``.

A model directory holds everything needed to rebuild and use a trained network without
running any code from the artifact: the card (:class:`~hicatalog.models.card.ModelCard`)
names the architecture, which :func:`~hicatalog.models.registry.build_model` builds from this
package. Weights are read with ``torch.load(weights_only=True)`` after their SHA-256 is
checked against the card's ``weights_sha256``.

A model directory may be a local path or a URL (``s3://bucket/models/regression``). A remote
one is downloaded once per machine into a local cache keyed by the card's ``weights_sha256``
(:func:`local_model_dir`: ``$HICATALOG_MODEL_CACHE``, default
``~/.cache/hicatalog/models/<sha256>/``), its hash verified; a remote card without a hash is
refused. Every process that loads the model (the driver, each inference actor) is handed the
URL, never a pickled model.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import io
import os
from pathlib import Path

import torch
from torch import nn

from hicatalog import storage
from hicatalog.errors import InputNotFoundError, ModelError
from hicatalog.models.card import ModelCard
from hicatalog.models.registry import build_model
from hicatalog.storage import write_atomic

__all__ = [
    "WEIGHTS_FILE", "CARD_FILE", "MODEL_CACHE_ENV", "file_sha256", "save_model", "load_card",
    "load_model", "local_model_dir", "model_cache_dir",
]

WEIGHTS_FILE = "weights.pt"
CARD_FILE = "model_card.json"
#: Environment variable naming the local cache of models downloaded from object storage.
MODEL_CACHE_ENV = "HICATALOG_MODEL_CACHE"


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
    out = os.fspath(model_dir)
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    model = getattr(model, "_orig_mod", model)
    state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    write_atomic(storage.join(out, WEIGHTS_FILE), data)
    card = dataclasses.replace(card, weights_sha256=hashlib.sha256(data).hexdigest())
    if not card.created:
        card.created = storage.utc_timestamp()
    write_atomic(storage.join(out, CARD_FILE), card.to_json().encode())
    return card


def load_card(model_dir: str | os.PathLike) -> ModelCard:
    """Read ``model_dir/model_card.json`` (a local path or a URL); missing or malformed is a
    ValueError naming it."""
    return _read_card(storage.join(model_dir, CARD_FILE))[0]


def _read_card(path: str) -> tuple[ModelCard, bytes]:
    try:
        data = storage.read_bytes(path)
    except FileNotFoundError:
        raise InputNotFoundError(f"{path}: model card not found (expected a model directory from "
                         "`hicatalog train`)") from None
    return ModelCard.from_json(data.decode(), source=path), data


def model_cache_dir() -> str:
    """The local cache of models downloaded from object storage: ``$HICATALOG_MODEL_CACHE``,
    else ``$XDG_CACHE_HOME/hicatalog/models`` (``~/.cache/hicatalog/models``)."""
    if os.environ.get(MODEL_CACHE_ENV):
        return os.path.abspath(os.environ[MODEL_CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "hicatalog", "models")


def local_model_dir(model_dir: str | os.PathLike) -> str:
    """A local directory holding the model ``model_dir``: the directory itself when it is
    local; for a URL, ``model_cache_dir()/<weights_sha256>``, downloaded on first use.

    The download is checked against the card's ``weights_sha256`` before it enters the cache
    (a cached copy is checked again on every use, and fetched again when it does not match);
    processes of one machine share it (a lock file: one downloads, the others wait).

    Raises
    ------
    ValueError: the remote card is missing or malformed, has no ``weights_sha256``, or the
        weights are missing or do not match it; the message names the URL.
    """
    model_dir = os.fspath(model_dir)
    if not storage.is_url(model_dir):
        return model_dir
    return _cache_remote(model_dir)[0]


def _cache_remote(model_dir: str) -> tuple[str, ModelCard]:
    """:func:`local_model_dir` of a URL, and the URL's own card (read once): the cached
    weights have been checked against it."""
    card_url = storage.join(model_dir, CARD_FILE)
    card, card_bytes = _read_card(card_url)
    sha = card.weights_sha256
    if not sha:
        raise ModelError(f"{card_url}: the model card has no weights_sha256; a model on object "
                         "storage is loaded only when its card names its weights' SHA-256 "
                         "(cards written by `hicatalog train` do)")
    local = os.path.join(model_cache_dir(), sha)
    os.makedirs(model_cache_dir(), exist_ok=True)
    weights = os.path.join(local, WEIGHTS_FILE)
    with open(os.path.join(model_cache_dir(), f".{sha}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (os.path.isfile(weights) and file_sha256(weights) == sha):
            weights_url = storage.join(model_dir, WEIGHTS_FILE)
            try:
                data = storage.read_bytes(weights_url)
            except FileNotFoundError:
                raise InputNotFoundError(f"{weights_url}: weights file not found") from None
            digest = hashlib.sha256(data).hexdigest()
            if digest != sha:
                raise ModelError(
                    f"{weights_url}: SHA-256 {digest[:16]}... does not match the model card's "
                    f"{sha[:16]}... (file changed or corrupt); nothing was cached"
                )
            write_atomic(weights, data)
        # the card of this URL, so that the directory is a complete model directory (another
        # card may describe the same weights: load_model reads the URL's card itself)
        card_path = os.path.join(local, CARD_FILE)
        if not (os.path.isfile(card_path) and Path(card_path).read_bytes() == card_bytes):
            write_atomic(card_path, card_bytes)
    return local, card


def load_model(model_dir: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[nn.Module, ModelCard]:
    """Rebuild a saved model: ``(model in eval mode on map_location, card)``.

    The architecture comes from the card (no code is unpickled); weights are read with
    ``torch.load(weights_only=True)`` after checking their SHA-256 against the card. A URL is
    read from the local cache (:func:`local_model_dir`).

    Raises
    ------
    ValueError: missing or malformed card, missing/corrupt weights, hash mismatch, or weights
        that do not fit the architecture; the message names the file.
    """
    model_dir = os.fspath(model_dir)
    if storage.is_url(model_dir):
        # the URL's own card (the cache is keyed by the weights only); the cached weights
        # were checked against it under the cache's lock
        local, card = _cache_remote(model_dir)
        weights, digest = Path(local) / WEIGHTS_FILE, card.weights_sha256
    else:
        card = load_card(model_dir)
        weights = Path(model_dir) / WEIGHTS_FILE
        if not weights.is_file():
            raise InputNotFoundError(f"{weights}: weights file not found")
        digest = file_sha256(weights)
    if card.weights_sha256 and digest != card.weights_sha256:
        raise ModelError(
            f"{weights}: SHA-256 {digest[:16]}... does not match the model card's "
            f"{card.weights_sha256[:16]}... (file changed or corrupt)"
        )
    try:
        state = torch.load(weights, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise ModelError(f"{weights}: cannot read weights: {exc}") from None
    if not isinstance(state, dict):
        raise ModelError(f"{weights}: expected a state_dict, got {type(state).__name__}")
    model = build_model(card)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelError(f"{weights}: weights do not fit {card.arch} ({card.n_outputs} outputs): {exc}") from None
    model.to(map_location)
    model.eval()
    return model, card
