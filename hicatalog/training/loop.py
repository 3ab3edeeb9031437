"""The per-worker training loop (paper Section 3), independent of where batches come from.

:func:`fit` runs epochs of: random dihedral augmentation per sample, forward (bf16 autocast
and channels_last on GPU, or anywhere with ``precision="bf16"``), RMSE or label-smoothed
cross-entropy (or, for a regression card with the ``gaussian`` head, the Gaussian negative
log-likelihood of its mean and variance), RAdam+Lookahead step, one one-cycle scheduler step
per batch; then 8-view TTA validation and the epoch's metrics, and hands a complete training
state (model, optimizer, scheduler, epoch, RNG, metric history, the epochs after which the run
was resumed) to a callback that checkpoints it. Its steps are separate functions: ``_start``
(network, optimizer, schedule, restored state), :func:`loss_function`, ``_train_epoch``,
``_predict_validation``, ``_validation_metrics``. What it trains with is one typed value, a
:class:`~hicatalog.training.loop_config.LoopConfig`. :func:`train_loop_per_worker` wires it to
Ray Train (dataset shards, DDP, ``ray.train.report`` with checkpoints, resuming from
``get_checkpoint``).

Data order and augmentation are derived from ``(seed, epoch, rank)``, and everything else that
changes during training is in the checkpoint, so a run resumed after epoch k ends with the
same weights as an uninterrupted one (given the same batches).

No train/serve skew: the loop config carries the model card the trained weights will be
saved with, and the loop builds its network with :func:`hicatalog.models.build_model`,
normalises pixels with :func:`hicatalog.models.preprocess` and scores validation views with
:func:`hicatalog.models.average_views`: the functions the catalog build and the evaluation
use on the saved model.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hicatalog import storage
from hicatalog.errors import InputError
from hicatalog.models.card import ModelCard
from hicatalog.models.dihedral import random_dihedral, tta_predict
from hicatalog.models.optim import build_optimizer, one_cycle
from hicatalog.models.predict import average_views, censored_gaussian_nll, gaussian_variance
from hicatalog.models.preprocessing import preprocess
from hicatalog.models.registry import build_model
from hicatalog.runtime import use_bf16
from hicatalog.training.loop_config import LoopConfig
from hicatalog.training.metrics import epoch_classification_metrics, epoch_regression_metrics

__all__ = [
    "STATE_FILE",
    "LoopConfig",
    "fit",
    "loss_function",
    "save_state",
    "load_state",
    "train_loop_per_worker",
    "unwrap",
    "steps_per_epoch",
]

log = logging.getLogger("hicatalog.training.loop")

#: File name of the training state inside a checkpoint directory.
STATE_FILE = "train_state.pt"

Batch = tuple[Tensor, Tensor]  # (uint8 images (N, C, S, S), targets (N,))


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside a DDP wrapper."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _epoch_generator(seed: int, epoch: int, rank: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + epoch * 1009 + rank)


def save_state(path: str, state: dict[str, Any]) -> None:
    """Write a training state (tensors, numbers, strings only) to ``path``."""
    torch.save(state, path)


def load_state(path: str) -> dict[str, Any]:
    """Read a training state written by :func:`save_state` (``weights_only=True``) from a
    local path or a URL; FileNotFoundError when there is none, InputError when it cannot be
    read."""
    data = storage.read_bytes(path)
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a corrupt checkpoint is a clear error
        raise InputError(f"{path}: cannot read training checkpoint: {exc}; move the run's "
                         "directory away to train afresh") from None


def newest_checkpoint(run_dir: str, after_epoch: int) -> str | None:
    """The newest training state in Ray Train's run directory ``run_dir`` (the storage path
    joined with the run's name) saved after epoch ``after_epoch``: the path of its
    ``checkpoint_epoch_NNNN/`` :data:`STATE_FILE`, or None.

    Ray Train resumes from the last checkpoint its controller registered, and the controller
    registers a report when it next polls the workers (every 2 s). A worker that dies within
    that window (its node lost just after an epoch) has uploaded the epoch's checkpoint, but
    the report is lost with it, and Ray Train alone would train that epoch again (or, after
    the first epoch, the whole run). The upload is complete before the report (each file one
    object on a bucket), so the loop resumes from it; a state that cannot be read is skipped.
    """
    epochs = sorted((int(m.group(1)), d) for d in storage.list_dirs(run_dir)
                    if (m := re.fullmatch(r"checkpoint_epoch_(\d+)", d)))
    for epoch, d in reversed(epochs):
        if epoch <= after_epoch:
            break
        path = storage.join(run_dir, d, STATE_FILE)
        try:
            if int(load_state(path)["epoch"]) == epoch:
                return path
        except (FileNotFoundError, ValueError, KeyError):
            log.warning("checkpoint %s cannot be read: skipped", path)
    return None


@dataclass
class _Run:
    """What :func:`fit` trains and carries from epoch to epoch: the network, its optimizer and
    schedule, the first epoch to train, the metric history and the epochs after which the run
    was resumed from a checkpoint (a worker or node lost, or the job re-run)."""

    model: nn.Module
    optimizer: Any
    scheduler: Any
    start_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_after: list[int] = field(default_factory=list)

    def state(self, epoch: int, device: torch.device) -> dict[str, Any]:
        """The training state after ``epoch`` epochs, as :func:`save_state` writes it."""
        return {
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": epoch,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "history": self.history,
            "resumed_after_epochs": self.resumed_after,
        }


def _start(lc: LoopConfig, device: torch.device, mixed: bool,
           start_state: dict[str, Any] | None) -> _Run:
    """The network (initial weights from ``lc.seed``, identical on every worker), optimizer
    and schedule; restored from ``start_state`` (model, optimizer, schedule, epoch, history,
    torch RNG) when given."""
    torch.manual_seed(lc.seed)
    model = build_model(lc.card).to(device)
    if mixed:
        model = model.to(memory_format=torch.channels_last)
    opt = build_optimizer(model, lr=lc.max_lr, weight_decay=lc.weight_decay,
                          k=lc.lookahead_k, alpha=lc.lookahead_alpha)
    sched = one_cycle(opt, max_lr=lc.max_lr, total_steps=lc.steps_per_epoch * lc.epochs)
    run = _Run(model, opt, sched)
    if start_state is not None:
        model.load_state_dict(start_state["model"])
        opt.load_state_dict(start_state["optimizer"])
        sched.load_state_dict(start_state["scheduler"])
        run.start_epoch = int(start_state["epoch"])
        run.history = list(start_state.get("history", []))
        run.resumed_after = [*start_state.get("resumed_after_epochs", []), run.start_epoch]
        torch.set_rng_state(start_state["torch_rng"])
        if device.type == "cuda" and start_state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(start_state["cuda_rng"], device)
    return run


def loss_function(card: ModelCard, label_smoothing: float) -> Callable[[Tensor, Tensor], Tensor]:
    """The training loss of ``card``'s network, ``loss(outputs (N, n_out), targets (N,))``:
    RMSE of M (dex) for a ``point`` regression head, the Gaussian negative log-likelihood for
    a ``gaussian`` head (the censored one, :func:`~hicatalog.models.predict.censored_gaussian_nll`,
    when the card's ``hyperparameters["likelihood"]`` is ``"censored"``: targets ``(N, 2)``,
    the value or upper limit and 1.0 for a limit), label-smoothed cross-entropy for classifiers (targets 0/1, 1 =
    ``card.positive_class``, read at ``card.positive_index`` like every prediction)."""
    if card.task == "regression" and card.head == "gaussian":
        if card.hyperparameters.get("likelihood") == "censored":
            def censored_nll(out: Tensor, y: Tensor) -> Tensor:
                out = out.float()
                return censored_gaussian_nll(out[:, 0], gaussian_variance(out[:, 1]), y[:, 0],
                                             y[:, 1] > 0.5)
            return censored_nll

        def gaussian_nll(out: Tensor, y: Tensor) -> Tensor:
            out = out.float()
            return F.gaussian_nll_loss(out[:, 0], y.float(), gaussian_variance(out[:, 1]), full=True)
        return gaussian_nll
    if card.task == "regression":
        def rmse(out: Tensor, y: Tensor) -> Tensor:
            return torch.sqrt(F.mse_loss(out.float().squeeze(1), y.float()))
        return rmse
    ce = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    pos = card.positive_index

    def cross_entropy(out: Tensor, y: Tensor) -> Tensor:
        y = y.long()
        return ce(out.float(), y if pos == 1 else 1 - y)
    return cross_entropy


def _autocast(device: torch.device, mixed: bool) -> Callable[[], contextlib.AbstractContextManager]:
    return (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if mixed else contextlib.nullcontext


def _train_epoch(run: _Run, net: nn.Module, batches: Iterable[Batch], card: ModelCard,
                 loss_fn: Callable[[Tensor, Tensor], Tensor], gen: torch.Generator,
                 device: torch.device, mixed: bool) -> tuple[Tensor, int]:
    """One pass over ``batches``: augment, forward, step, one schedule step per batch;
    ``(sum of loss x batch size (float64, on the device), rows seen)``."""
    net.train()
    autocast = _autocast(device, mixed)
    total_steps = run.scheduler.total_steps
    # Summed on the device: reading the loss every step would make the host wait for the GPU
    # after each step, so it could not queue the next batch meanwhile.
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    n_seen = 0
    for x_u8, y in batches:
        if x_u8.shape[0] < 2:  # BatchNorm needs two samples; every worker skips alike
            continue
        x = random_dihedral(preprocess(x_u8.to(device, non_blocking=True), card), gen)
        if mixed:
            x = x.contiguous(memory_format=torch.channels_last)
        y = y.to(device, non_blocking=True)
        with autocast():
            out = net(x)
        loss = loss_fn(out, y)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        if run.scheduler.last_epoch < total_steps:
            run.scheduler.step()
        loss_sum += loss.detach().double() * x.shape[0]
        n_seen += x.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # the queued steps are part of the epoch's time
    return loss_sum, n_seen


def _predict_validation(net: nn.Module, batches: Iterable[Batch], card: ModelCard,
                        device: torch.device, mixed: bool) -> tuple[np.ndarray, np.ndarray]:
    """This worker's validation rows with 8-view TTA: ``(prediction (n,), target (n,))``, the
    prediction M (dex) or the positive-class probability, as inference averages views."""
    autocast = _autocast(device, mixed)
    preds, targets = [], []
    for x_u8, y in batches:
        x = preprocess(x_u8.to(device, non_blocking=True), card)
        if mixed:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast():
            views = tta_predict(unwrap(net), x).float()  # (N, V, n_out)
        preds.append(average_views(views[:, None], card).cpu().numpy())
        targets.append(y.cpu().numpy())
    return (np.concatenate(preds) if preds else np.zeros(0),
            np.concatenate(targets) if targets else np.zeros(0))


def _validation_metrics(task: str, parts: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """The epoch's validation metrics over every worker's ``(prediction, target)``."""
    pred = np.concatenate([p[0] for p in parts])
    true = np.concatenate([p[1] for p in parts])
    if task == "regression":
        return epoch_regression_metrics(true, pred)
    return epoch_classification_metrics(true, pred)


def fit(
    lc: LoopConfig,
    train_batches: Callable[[int], Iterable[Batch]],
    val_batches: Callable[[], Iterable[Batch]],
    *,
    device: torch.device | str = "cpu",
    rank: int = 0,
    wrap_model: Callable[[nn.Module], nn.Module] | None = None,
    start_state: dict[str, Any] | None = None,
    on_epoch_end: Callable[[dict[str, Any], dict[str, Any]], None] | None = None,
    all_reduce_sum: Callable[[Tensor], Tensor] | None = None,
    all_gather: Callable[[Any], list[Any]] | None = None,
) -> tuple[nn.Module, list[dict[str, Any]]]:
    """Train for ``lc.epochs`` epochs; returns ``(unwrapped model, metric history)``.

    ``lc``: the :class:`~hicatalog.training.loop_config.LoopConfig`. ``train_batches(epoch)``
    and ``val_batches()`` yield ``(uint8 images (N, C, S, S), targets (N,))``: M in dex for
    regression, 0/1 labels (1 = ``card.positive_class``) for classifiers; ``rank`` seeds this
    worker's augmentation. ``wrap_model`` wraps the network for training (DDP).
    ``start_state``: a state from :func:`save_state` to resume from. ``on_epoch_end(state,
    metrics)`` receives the state to checkpoint after each epoch. ``all_reduce_sum`` /
    ``all_gather`` combine numbers across workers (identity for one worker). Sets no thread
    count: the caller does (see :func:`train_loop_per_worker`).
    """
    device = torch.device(device)
    # "bf16" (autocast + channels_last), "fp32", or "auto": bf16 on GPU, fp32 on CPU.
    # Resolved here, where the device is known, by the one rule.
    mixed = use_bf16(lc.precision, device)
    if device.type == "cuda":  # fixed batch shapes: let cuDNN time its kernels once
        torch.backends.cudnn.benchmark = True
    card = lc.card
    run = _start(lc, device, mixed, start_state)
    net = wrap_model(run.model) if wrap_model is not None else run.model
    loss_fn = loss_function(card, lc.label_smoothing)
    reduce_sum = all_reduce_sum or (lambda t: t)
    gather = all_gather or (lambda obj: [obj])
    for epoch in range(run.start_epoch, lc.epochs):
        t0 = time.perf_counter()
        gen = _epoch_generator(lc.seed, epoch, rank)
        loss_sum, n_seen = _train_epoch(run, net, train_batches(epoch), card, loss_fn, gen, device, mixed)
        t_train = time.perf_counter() - t0
        totals = reduce_sum(torch.stack([loss_sum, torch.tensor(float(n_seen), dtype=torch.float64, device=device)]))
        n_train_seen = int(totals[1])
        val = _validation_metrics(card.task, gather(_predict_validation(net, val_batches(), card, device, mixed)))
        metrics = {
            "epoch": epoch + 1,
            "train_loss": float(totals[0] / max(totals[1], 1.0)),
            "n_train_seen": n_train_seen,
            "lr": float(run.optimizer.param_groups[0]["lr"]),
            **val,
            "epoch_s": round(time.perf_counter() - t0, 3),
            "train_images_per_s": round(n_train_seen / max(t_train, 1e-9), 2),
            "torch_threads": torch.get_num_threads(),
        }
        run.history.append(metrics)
        if on_epoch_end is not None:
            on_epoch_end(run.state(epoch + 1, device), metrics)
    return run.model, run.history


def _iter_ray_batches(
    shard: Any, batch_size: int, shuffle_seed: int | None, buffer: int | None
) -> Iterator[Batch]:
    for batch in shard.iter_torch_batches(
        batch_size=batch_size,
        local_shuffle_buffer_size=buffer,
        local_shuffle_seed=shuffle_seed,
        prefetch_batches=2,
        device="cpu",
    ):
        yield batch["image"], batch["target"]


@dataclass(frozen=True)
class _Group:
    """This worker's place in the Ray Train worker group and how it talks to the others
    (torch.distributed when there is more than one worker, identities otherwise)."""

    rank: int
    world: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        import torch.distributed as dist

        return self.world > 1 and dist.is_available() and dist.is_initialized()

    def all_reduce_sum(self, t: Tensor) -> Tensor:
        import torch.distributed as dist

        if self.distributed:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def all_gather(self, obj: Any) -> list[Any]:
        import torch.distributed as dist

        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def broadcast_from_rank0(self, obj: Any) -> Any:
        import torch.distributed as dist

        if not self.distributed:
            return obj
        found = [obj]
        dist.broadcast_object_list(found, src=0, device=self.device)
        return found[0]


def _resume_state(lc: LoopConfig, group: _Group) -> dict[str, Any] | None:
    """The state to resume from: Ray Train's registered checkpoint, or a newer one that rank 0
    finds in ``lc.run_dir`` (:func:`newest_checkpoint` says why) and every rank then loads;
    None for a fresh run."""
    import ray.train

    start_state = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            start_state = load_state(os.path.join(d, STATE_FILE))
    newer = None
    if group.rank == 0 and lc.run_dir:
        newer = newest_checkpoint(lc.run_dir, int(start_state["epoch"]) if start_state else 0)
    newer = group.broadcast_from_rank0(newer)
    if newer is not None:
        start_state = load_state(newer)
        log.info("rank %d: %s is newer than the checkpoint Ray Train registered", group.rank, newer)
    if start_state is not None:
        log.info("rank %d resumes after epoch %d", group.rank, int(start_state["epoch"]))
    return start_state


def _report_epoch(rank: int) -> Callable[[dict[str, Any], dict[str, Any]], None]:
    """``on_epoch_end`` for Ray Train: every rank reports the epoch's metrics; rank 0 with
    the training state as checkpoint ``checkpoint_epoch_NNNN``."""
    import ray.train

    def report(state: dict[str, Any], metrics: dict[str, Any]) -> None:
        if rank != 0:
            ray.train.report(metrics, checkpoint=None)
            return
        with tempfile.TemporaryDirectory() as tmp:
            save_state(os.path.join(tmp, STATE_FILE), state)
            ray.train.report(
                metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp),
                checkpoint_dir_name=f"checkpoint_epoch_{int(state['epoch']):04d}",
            )
    return report


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train entry point: one data-parallel worker (see :func:`fit`).

    ``config``: :meth:`LoopConfig.to_dict`. Sets torch's threads to the CPUs Ray assigned to
    this worker (:func:`hicatalog.runtime.set_torch_threads`), reads the ``train`` and ``val``
    dataset shards, wraps the model in DDP (gloo on CPU, nccl on GPU, set up by
    TorchTrainer), resumes from ``ray.train.get_checkpoint()`` when there is one (or from a
    newer checkpoint in ``lc.run_dir``, :func:`newest_checkpoint`), and after every epoch
    reports the metrics with a checkpoint (rank 0 writes it).
    """
    import ray.train
    import ray.train.torch

    from hicatalog.runtime import set_torch_threads

    lc = LoopConfig.from_dict(config)
    # Ray hands read-only NumPy views to torch.as_tensor; we never write to them.
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    ctx = ray.train.get_context()
    device = ray.train.torch.get_device() if lc.gpu else torch.device("cpu")
    group = _Group(ctx.get_world_rank(), ctx.get_world_size(), device)
    threads = set_torch_threads()
    log.info("rank %d: %d torch thread(s) on %s", group.rank, threads, device)
    train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("val")
    buffer = lc.shuffle_buffer or None

    def train_batches(epoch: int) -> Iterator[Batch]:
        seed = lc.seed * 7919 + epoch * 31 + group.rank if buffer else None
        return _iter_ray_batches(train_shard, lc.batch_size, seed, buffer)

    def val_batches() -> Iterator[Batch]:
        return _iter_ray_batches(val_shard, lc.batch_size * 2, None, None)

    def wrap(model: nn.Module) -> nn.Module:
        return ray.train.torch.prepare_model(model, move_to_device=False) if group.world > 1 else model

    fit(
        lc, train_batches, val_batches, device=device, rank=group.rank, wrap_model=wrap,
        start_state=_resume_state(lc, group), on_epoch_end=_report_epoch(group.rank),
        all_reduce_sum=group.all_reduce_sum, all_gather=group.all_gather,
    )


def steps_per_epoch(n_train: int, world_size: int, batch_size: int) -> int:
    """Optimizer steps per epoch on each worker (equal shards; a last batch of one row is
    skipped)."""
    per_worker = n_train // max(world_size, 1)
    full, rest = divmod(per_worker, batch_size)
    return max(1, full + (1 if rest >= 2 else 0))

