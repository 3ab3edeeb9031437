"""``hicatalog train``: data-parallel training with Ray Train, from Parquet cutout shards.

Steps: choose the task's rows by sample (the paper's design, :mod:`hicatalog.samples`) and the
split on the driver, refusing a set too small or degenerate (:mod:`hicatalog.training.data`);
Ray Data reads the shards and decodes the JPEGs in parallel (undecodable rows dropped and
counted); when the decoded images fit in the object store they are materialised once and
reused every epoch. A :class:`ray.train.torch.TorchTrainer` runs
:func:`~hicatalog.training.loop.train_loop_per_worker` on ``workers`` workers (DDP over gloo on
CPU, nccl on GPU), checkpointing every epoch to ``storage_path`` (default
``MODEL_DIR/ray``). The Ray run's name is derived from the configuration and the data
fingerprint, so re-running the same command after the job died resumes from the latest
checkpoint, while a changed command starts afresh. The final model is written with
:func:`~hicatalog.models.artifact.save_model`; ``MODEL_DIR/metrics.jsonl`` has one line per epoch.

The model card is made before training and handed to the workers: they build the network
from it and normalise pixels with its statistics, exactly as inference will.

A deep ensemble (``--ensemble K``) is K such runs, one per member (seed ``seed + k``, the same
rows and validation split), started together from threads of the driver: Ray schedules them
concurrently as far as the cluster's resources allow (each CPU worker reserves ``1/K`` of its
share) and queues the rest. Each member has its own Ray run, checkpoints and resume; member 0
is the single network the same command without ``--ensemble`` trains (it resumes from that
run's checkpoints). The model directory holds one ``weights.pt`` with every member
(:class:`~hicatalog.models.ensemble.Ensemble`) and one card.

After training, the model predicts the validation split once
(:func:`~hicatalog.training.calibration.validation_outputs`) and the card records the
calibration fitted on it (:mod:`hicatalog.training.calibration`: a classifier's temperature, a
regression model's variance scale and the variance of M over the training rows, the
out-of-distribution term of the catalog's error bar) and, for an ensemble, the ensemble's
validation metrics.

CPUs: each CPU worker reserves its share of the cluster's CPUs
(:func:`hicatalog.runtime.cpus_per_worker`; one CPU per node is left to Ray Data when the
decoded data is streamed rather than cached) and runs that many torch threads; a GPU worker
reserves one CPU.

The library's entry is :func:`train`, whose keyword parameters are the options of
``hicatalog train`` (same names, same defaults; the command line passes its config's fields).
:func:`train_arguments` turns them into one value (``args``, checked before any data is read),
which only the adapters read (:func:`plan_training`, :func:`member_seeds`, :func:`run_spec`,
:func:`~hicatalog.training.presets.resolve_hyperparameters`); :func:`make_plan` and every step
after them take plain values:

1. :func:`plan_training` -> :class:`TrainPlan` (hyperparameters, shards and their fingerprint,
   the row selection, one :class:`Member` per network with its seed and Ray run name, the
   model id); no Ray;
2. :func:`decode_data` -> :class:`DecodedData` (the Ray datasets, counts, cutout geometry,
   normalisation);
3. :func:`network_card` and :func:`loop_config`: the card of one network and the validated
   :class:`~hicatalog.training.loop_config.LoopConfig`, before any worker starts;
4. :func:`fit_members` -> one :class:`MemberResult` per network (a single network is an
   ensemble of one);
5. :func:`assemble_model`, :func:`calibrate`, then the card and ``metrics.jsonl`` are written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, TypeVar

import numpy as np
import pyarrow.compute as pc
from torch import nn

from hicatalog import __version__, storage
from hicatalog.cutouts.shards import fingerprint_shards, list_shards, probe_cutouts
from hicatalog.errors import ClusterError, HicatalogError, InputError
from hicatalog.models.artifact import save_model
from hicatalog.models.card import ModelCard
from hicatalog.models.ensemble import Ensemble
from hicatalog.models.preprocessing import compute_normalization
from hicatalog.models.registry import build_model
from hicatalog.samples import SAMPLE_COLUMN
from hicatalog.storage import write_atomic
from hicatalog.tasks import REGRESSION_HEADS, TASK_CLASSES
from hicatalog.training.calibration import fit_calibration, validation_outputs
from hicatalog.training.data import Selection, decode_rows, select_rows
from hicatalog.training.loop import STATE_FILE, load_state, steps_per_epoch, train_loop_per_worker
from hicatalog.training.loop_config import LoopConfig
from hicatalog.training.metrics import epoch_classification_metrics, epoch_regression_metrics
from hicatalog.training.options import check_split, check_task_options
from hicatalog.training.presets import resolve_hyperparameters

__all__ = [
    "train", "train_arguments", "planned_model_id", "show_result", "METRICS_FILE", "member_seeds", "TrainPlan", "Member",
    "RunSpec", "DecodedData", "MemberResult", "plan_training", "make_plan", "run_spec",
    "decode_data", "network_card", "loop_config", "fit_members", "assemble_model", "calibrate",
    "run_training",
]

log = logging.getLogger("hicatalog.training")

METRICS_FILE = "metrics.jsonl"
#: Decoded training data is cached in the object store when it takes at most this fraction.
CACHE_FRACTION = 0.4
#: Rows per Ray Data decode task batch.
DECODE_BATCH_ROWS = 256
#: Images used to estimate the per-channel normalisation.
NORMALIZATION_SAMPLE = 1024
#: Keys of the selection summary that say which samples a run trains on (in the run's name
#: and on the card).
SAMPLE_KEYS = ("train_samples", "negatives", "upper_limits_as_negatives")

T = TypeVar("T")
#: The function each Ray Train worker runs, given :meth:`LoopConfig.to_dict`.
WorkerLoop = Callable[[dict[str, Any]], None]


# --- typed values between the steps ---------------------------------------------------------

@dataclass(frozen=True)
class Member:
    """One network of a run: its index ``k``, its seed (``seed + k``: initial weights, data
    order, augmentation) and the name of its Ray Train run (its checkpoints)."""

    index: int
    seed: int
    run_name: str


@dataclass(frozen=True)
class TrainPlan:
    """What a training run is, decided on the driver before Ray starts.

    ``hyperparameters``: the run's record (:func:`~hicatalog.training.presets.resolve_hyperparameters`,
    the card's ``hyperparameters``); ``files``: the cutout shards; ``fingerprint``: theirs;
    ``selection``: the rows, targets and split; ``members``: one per network (a single network
    is an ensemble of one); ``model_id``: the id the card will carry.
    """

    task: str
    head: str
    hyperparameters: dict[str, Any]
    files: list[str]
    fingerprint: str
    selection: Selection
    members: tuple[Member, ...]
    model_id: str

    @property
    def samples(self) -> dict[str, Any]:
        """Which samples the run trains on (:data:`SAMPLE_KEYS` of the selection summary)."""
        return {k: self.selection.summary[k] for k in SAMPLE_KEYS}

    @property
    def image_size(self) -> int:
        return int(self.hyperparameters["image_size"])

    @property
    def batch_size(self) -> int:
        return int(self.hyperparameters["batch_size"])


@dataclass(frozen=True)
class RunSpec:
    """Where and on what the members train: ``out`` (model directory, absolute path or URL),
    ``storage_path`` (Ray Train's checkpoints), ``workers`` per network, ``gpu``,
    ``max_failures`` (worker-group restarts Ray Train allows each run)."""

    out: str
    storage_path: str
    workers: int
    gpu: bool
    max_failures: int

    @property
    def metrics_path(self) -> str:
        return storage.join(self.out, METRICS_FILE)


@dataclass(frozen=True)
class DecodedData:
    """The decoded training data: Ray datasets ``train`` and ``val`` (``image`` uint8 ``(3,
    S, S)``, ``target``), their row counts, ``dropped`` (undecodable selected rows; None when
    streamed, so not counted), ``cached`` (materialised in the object store), the cutouts'
    ``cutout_size`` and ``survey``, and the pixel ``normalization`` estimated from ``train``."""

    train: Any
    val: Any
    n_train: int
    n_val: int
    dropped: int | None
    cached: bool
    cutout_size: int | None
    survey: str
    normalization: dict[str, list[float]]


@dataclass(frozen=True)
class MemberResult:
    """One trained network: its ``state`` (state_dict), epoch ``history``, the epochs after
    which its run resumed from a checkpoint, and its Ray run's directory."""

    member: Member
    state: dict[str, Any]
    history: list[dict[str, Any]]
    resumed_after_epochs: list[int]
    run_path: str

    @property
    def final(self) -> dict[str, Any]:
        """The last epoch's metrics ({} for a run without epochs)."""
        return self.history[-1] if self.history else {}


# --- 1. the plan (driver, no Ray) ------------------------------------------------------------

def run_name(task: str, hyperparameters: dict[str, Any], fingerprint: str,
             samples: dict[str, Any], label_smoothing: float) -> str:
    """A Ray run's name: the same configuration, data and sample selection resume the same
    run; any change starts another. ``hyperparameters`` are one network's (its own ``seed``;
    the ensemble's size is not part of it, so member 0 of an ensemble is the single network)."""
    key = json.dumps({"hp": {k: v for k, v in hyperparameters.items() if k != "ensemble"},
                      "data": fingerprint, "label_smoothing": label_smoothing,
                      "samples": samples}, sort_keys=True)
    return f"train-{task}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def model_id_for(task: str, run_names: Sequence[str]) -> str:
    """The model id of networks trained by the Ray runs ``run_names``: a single network's is
    its run's hash (the ids of models written before stay valid); an ensemble's hashes its
    members' run names and ends in ``-xK``."""
    if len(run_names) == 1:
        return f"{task}-{run_names[0].rsplit('-', 1)[-1][:10]}"
    digest = hashlib.sha256(" ".join(run_names).encode()).hexdigest()
    return f"{task}-{digest[:10]}-x{len(run_names)}"


def make_plan(*, task: str, head: str, hyperparameters: dict[str, Any], files: list[str],
              fingerprint: str, selection: Selection, seeds: Sequence[int],
              label_smoothing: float) -> TrainPlan:
    """The :class:`TrainPlan` of networks with ``seeds`` (one per member) on ``selection``."""
    samples = {k: selection.summary[k] for k in SAMPLE_KEYS}
    members = tuple(
        Member(k, int(seed), run_name(task, {**hyperparameters, "seed": int(seed)}, fingerprint,
                                      samples, label_smoothing))
        for k, seed in enumerate(seeds))
    return TrainPlan(task=task, head=head, hyperparameters=hyperparameters, files=files,
                     fingerprint=fingerprint, selection=selection, members=members,
                     model_id=model_id_for(task, [m.run_name for m in members]))


def member_seeds(args: SimpleNamespace) -> list[int]:
    """The seeds of the networks :func:`train_arguments` ``args`` train: ``[seed]``, or
    ``seed + k`` for member k of an ensemble (initial weights, data order and augmentation;
    the split keeps ``seed``)."""
    return [int(args.seed) + k for k in range(int(args.ensemble))]


def plan_training(args: SimpleNamespace) -> TrainPlan:
    """What :func:`train` with :func:`train_arguments` ``args`` decides before Ray starts
    (reads only the shards' small columns). Raises as :func:`train` does for bad shards or a
    set too small or degenerate."""
    hp = resolve_hyperparameters(args)
    files = list_shards(args.data)
    fingerprint = fingerprint_shards(files)
    selection = select_rows(
        files, args.task, seed=args.seed, val_fraction=args.val_fraction,
        split_by=args.split_by, val_quantiles=args.val_quantiles,
        train_samples=args.train_samples, negatives=args.negatives,
        upper_limits_as_negatives=args.upper_limits_as_negatives,
        min_rows=args.min_rows, min_class_rows=args.min_class_rows,
        likelihood=args.likelihood,
    )
    return make_plan(task=args.task, head=args.head, hyperparameters=hp, files=files,
                     fingerprint=fingerprint, selection=selection, seeds=member_seeds(args),
                     label_smoothing=args.label_smoothing)


def planned_model_id(**params: Any) -> str:
    """The ``model_id`` that ``train(**params)`` would write (``params``: keyword parameters
    of :func:`train`): it names the options, the data (shard fingerprint) and the sample
    selection, like the Ray run's name. A model directory whose card has this id already
    holds what this call trains (``hicatalog workflow`` skips the training then). Reads only
    the shards' small columns; raises as :func:`train` for a bad or degenerate set."""
    return plan_training(train_arguments(**params)).model_id


def run_spec(args: SimpleNamespace) -> RunSpec:
    """Where and on what :func:`train_arguments` ``args`` train (``storage_path`` defaults to
    ``OUT/ray``)."""
    out = storage.absolute(args.out)  # a local path or a URL (s3://...)
    return RunSpec(out=out, storage_path=storage.absolute(args.storage_path or storage.join(out, "ray")),
                   workers=int(args.workers), gpu=bool(args.gpu), max_failures=int(args.max_failures))


# --- 2. the data (Ray Data) ----------------------------------------------------------------

def _read_source(files: list[str], summary: dict[str, Any]) -> Any:
    """The shards' ``object_id`` and ``image`` as a Ray dataset; rows of samples not selected
    are filtered in the Parquet scan (pushed down by Ray Data), so their images never enter
    the pipeline."""
    import ray.data

    if summary["train_samples"] is None:  # shards without samples
        return ray.data.read_parquet(files, columns=["object_id", "image"])
    from ray.data.expressions import col

    return ray.data.read_parquet(files, columns=["object_id", "image", SAMPLE_COLUMN]).filter(
        expr=col(SAMPLE_COLUMN).is_in(sorted(summary["sample_counts"])))


def _decoded(source: Any, selection: Selection, want_val: bool | None, cutout_size: int | None,
             image_size: int) -> Any:
    """``source`` decoded by :func:`~hicatalog.training.data.decode_rows` (the split
    ``want_val`` selects, or both with ``is_val``)."""
    return source.map_batches(
        decode_rows,
        fn_kwargs={"selection": selection.table, "want_val": want_val,
                   "cutout_size": cutout_size, "image_size": image_size},
        batch_format="pyarrow",
        batch_size=DECODE_BATCH_ROWS,
    )


def _materialise(everything: Any, n_expected: int) -> tuple[Any, Any, int, int, int]:
    """Decode once (one pass over the shards) and keep the images in the object store:
    ``(train, val, n_train, n_val, dropped)``; InputError when too few rows decode."""
    everything = everything.materialize()
    keep = ["image", "target"]
    train_ds = everything.filter(expr="is_val == False").select_columns(keep).materialize()
    val_ds = everything.filter(expr="is_val == True").select_columns(keep).materialize()
    n_train, n_val = train_ds.count(), val_ds.count()
    dropped = n_expected - n_train - n_val
    if dropped:
        log.warning("dropped %d of %d selected cutouts that could not be decoded (see the decode "
                    "log lines for their statuses)", dropped, n_expected)
    if n_train < 2 or n_val < 1:
        raise InputError(
            f"after dropping {dropped} undecodable cutouts, {n_train} training and {n_val} "
            "validation rows are left; need at least 2 and 1")
    return train_ds, val_ds, n_train, n_val, dropped


def decode_data(plan: TrainPlan) -> DecodedData:
    """Read and decode the selected rows with Ray Data; materialised when the decoded images
    take at most :data:`CACHE_FRACTION` of the object store, streamed each epoch otherwise.
    Needs Ray started. Raises SchemaError (bad shards) or InputError (too few decodable)."""
    import ray

    selection, summary = plan.selection, plan.selection.summary
    geometry = probe_cutouts(plan.files)
    log.info(
        "task %s: %d rows selected of %d (%d train, %d val; %s); per sample and class %s; "
        "cutouts %d px -> %d px", plan.task, summary["n_selected"], summary["n_rows"],
        selection.n_train, selection.n_val, summary["split"], summary["sample_counts"],
        geometry.side_px, plan.image_size,
    )
    source = _read_source(plan.files, summary)
    n_expected = selection.n_train + selection.n_val
    decoded_bytes = n_expected * 3 * plan.image_size**2
    store = float(ray.available_resources().get("object_store_memory", 0.0))
    cached = decoded_bytes <= CACHE_FRACTION * store
    if cached:
        train_ds, val_ds, n_train, n_val, dropped = _materialise(
            _decoded(source, selection, None, geometry.side_px, plan.image_size), n_expected)
    else:
        train_ds, val_ds = (_decoded(source, selection, want, geometry.side_px, plan.image_size)
                            for want in (False, True))
        n_train, n_val, dropped = selection.n_train, selection.n_val, None
        log.info("decoded data (%.1f GB) is streamed each epoch, not cached", decoded_bytes / 1e9)
    sample = train_ds.take_batch(min(NORMALIZATION_SAMPLE, n_train), batch_format="numpy")["image"]
    return DecodedData(train=train_ds, val=val_ds, n_train=n_train, n_val=n_val, dropped=dropped,
                       cached=cached, cutout_size=geometry.side_px, survey=geometry.survey,
                       normalization=compute_normalization(sample))


# --- 3. the card and the loop config (driver, before any worker) -----------------------------

def network_card(plan: TrainPlan, data: DecodedData, workers: int) -> ModelCard:
    """The card of one network of ``plan`` (the workers build it and normalise pixels from it;
    the ensemble's card is made from it after training)."""
    hp = plan.hyperparameters
    n_steps = steps_per_epoch(data.n_train, workers, plan.batch_size)
    return ModelCard(
        model_id=plan.model_id,
        task=plan.task,
        arch=hp["arch"],
        width=float(hp["width"]),
        n_outputs=REGRESSION_HEADS[plan.head] if plan.task == "regression" else len(TASK_CLASSES[plan.task] or ()),
        image_size=plan.image_size,
        cutout_size=data.cutout_size,
        survey=data.survey,
        normalization=data.normalization,
        data_fingerprint=plan.fingerprint,
        hyperparameters={**hp, "steps_per_epoch": n_steps},
        code_version=__version__,
        in_channels=3,
        self_attention=True,
        classes=TASK_CLASSES[plan.task],
        **plan.samples,
        sample_counts=plan.selection.summary["sample_counts"],
        head=plan.head,
    )


def loop_config(plan: TrainPlan, card: ModelCard, data: DecodedData, spec: RunSpec) -> LoopConfig:
    """The validated :class:`LoopConfig` of member 0 (each member replaces ``seed`` and
    ``run_dir``); ValueError naming the field for a bad value, here on the driver."""
    hp = plan.hyperparameters
    return LoopConfig(
        card=card, epochs=int(hp["epochs"]), batch_size=plan.batch_size,
        max_lr=float(hp["max_lr"]), weight_decay=float(hp["weight_decay"]),
        steps_per_epoch=int(card.hyperparameters["steps_per_epoch"]),
        seed=plan.members[0].seed, label_smoothing=float(hp["label_smoothing"]),
        lookahead_k=hp["lookahead_k"], lookahead_alpha=hp["lookahead_alpha"],
        precision=hp["precision"], gpu=spec.gpu,
        shuffle_buffer=min(max(data.n_train // max(spec.workers, 1), 2), 4096),
    )


# --- 4. the members (Ray Train) -----------------------------------------------------------

def _write_jsonl(path: str, rows: list[dict[str, Any]]) -> None:
    write_atomic(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode())


def _metrics_callback(path: str):
    from ray.train import UserCallback

    class MetricsJsonl(UserCallback):
        """Writes rank 0's metrics of every epoch so far to ``path`` as they come, the whole
        file each time (no appending: the model directory may be on object storage; runs in
        the Ray Train controller; the driver rewrites ``metrics.jsonl`` from the checkpointed
        history at the end)."""

        def __init__(self):
            self.rows: list[dict[str, Any]] = []

        def after_report(self, run_context, metrics, checkpoint):  # noqa: D401
            if metrics:
                self.rows.append(metrics[0])
                _write_jsonl(path, self.rows)

    return MetricsJsonl()


def live_metrics_path(spec: RunSpec, member: Member, n_members: int) -> str:
    """Where a member's epochs appear while it trains: ``metrics.jsonl`` for a single network,
    ``metrics.member-K.jsonl`` for the members of an ensemble (merged into ``metrics.jsonl``
    at the end)."""
    return spec.metrics_path if n_members == 1 else storage.join(spec.out, f"metrics.member-{member.index}.jsonl")


def _fit_member(member: Member, n_members: int, lc: LoopConfig, data: DecodedData, spec: RunSpec,
                cpu_per_worker: float, worker_loop: WorkerLoop) -> MemberResult:
    """Train one member (its own seed, Ray run and checkpoints); ClusterError when its Ray
    Train run failed for good (the checkpoints stay, and the same command resumes)."""
    from ray.train import (
        CheckpointConfig,
        FailureConfig,
        RunConfig,
        ScalingConfig,
        TrainingFailedError,
    )
    from ray.train.torch import TorchConfig, TorchTrainer

    name = member.run_name
    # Ray Train's run directory, where the workers look for a checkpoint newer than the one
    # the controller registered (loop.newest_checkpoint)
    run_dir = storage.join(spec.storage_path, name)
    trainer = TorchTrainer(
        worker_loop,
        train_loop_config=dataclasses.replace(lc, seed=member.seed, run_dir=run_dir).to_dict(),
        torch_config=TorchConfig(backend="nccl" if spec.gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=spec.workers, use_gpu=spec.gpu,
                                     resources_per_worker={"CPU": cpu_per_worker}),
        run_config=RunConfig(
            name=name, storage_path=spec.storage_path,
            failure_config=FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            callbacks=[_metrics_callback(live_metrics_path(spec, member, n_members))],
        ),
        datasets={"train": data.train, "val": data.val},
    )
    log.info("network %d of %d (seed %d): Ray Train run %s (storage %s), %d worker(s)",
             member.index + 1, n_members, member.seed, name, spec.storage_path, spec.workers)
    try:
        result = trainer.fit()
    except TrainingFailedError as exc:
        raise ClusterError(
            f"training run {name} failed after {spec.max_failures} restart(s): "
            f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__}. "
            f"Checkpoints are kept in {run_dir}; re-run the same command to resume."
        ) from exc
    if result.checkpoint is None:
        raise RuntimeError(f"training run {name} finished without a checkpoint")
    with result.checkpoint.as_directory() as d:
        state = load_state(os.path.join(d, STATE_FILE))
    resumed_after = [int(e) for e in state.get("resumed_after_epochs", [])]
    if resumed_after:
        log.info("run %s was resumed from its checkpoints after epoch(s) %s: the epochs before "
                 "each were not trained again", name, resumed_after)
    return MemberResult(member=member, state=state["model"], history=list(state["history"]),
                        resumed_after_epochs=resumed_after, run_path=str(result.path))


def _in_this_thread(fn: Callable[..., T], *args: Any) -> Future[T]:
    """``fn(*args)`` run now, its outcome as a completed Future."""
    done: Future[T] = Future()
    try:
        done.set_result(fn(*args))
    except Exception as exc:  # noqa: BLE001 - reported with the other members' outcomes
        done.set_exception(exc)
    return done


def fit_members(plan: TrainPlan, lc: LoopConfig, data: DecodedData, spec: RunSpec,
                worker_loop: WorkerLoop = train_loop_per_worker) -> list[MemberResult]:
    """Train every member of ``plan``, concurrently as far as the cluster allows (each CPU
    worker reserves ``1/K`` of its share; Ray queues the rest). Member 0 runs in this thread,
    so Ray Train's Ctrl-C handler can abort it; members 1.. run in threads.

    Raises the member's own error for a single network; for an ensemble, one error naming
    each failed member (the finished ones keep their runs, and re-running resumes the others):
    a ClusterError when every failure is one the user can fix, a RuntimeError otherwise."""
    from hicatalog.runtime import cpus_per_worker

    members, k = plan.members, len(plan.members)
    # Workers reserve the CPUs they run threads on (set_torch_threads in the loop); streamed
    # data leaves one CPU per node to the Ray Data decode tasks that run during training.
    cpu = 1.0 if spec.gpu else cpus_per_worker(spec.workers * k, keep_free=0.0 if data.cached else 1.0)
    args = (k, lc, data, spec, cpu, worker_loop)
    with ThreadPoolExecutor(max_workers=max(k - 1, 1), thread_name_prefix="member") as pool:
        others = [pool.submit(_fit_member, m, *args) for m in members[1:]]
        outcomes = [_in_this_thread(_fit_member, members[0], *args), *others]
    failed = [(m, f.exception()) for m, f in zip(members, outcomes, strict=True) if f.exception()]
    if failed and k == 1:
        raise failed[0][1]
    if failed:
        kind = ClusterError if all(isinstance(e, HicatalogError) for _, e in failed) else RuntimeError
        raise kind(
            f"{len(failed)} of {k} ensemble members failed ({k - len(failed)} finished; re-running "
            "the same command resumes each from its checkpoints): "
            + "; ".join(f"member {m.index}: {exc}" for m, exc in failed)
        ) from failed[0][1]
    return [f.result() for f in outcomes]


# --- 5. the model, its calibration and card -------------------------------------------------

def _per_member(values: list[T]) -> T | list[T]:
    """A single network's value, or an ensemble's list of one per member: the shape the card
    and :func:`train`'s result have always had for ``resumed_after_epochs`` and ``run_path``."""
    return values[0] if len(values) == 1 else values


def merged_history(results: list[MemberResult]) -> list[dict[str, Any]]:
    """Every member's epochs in member order; an ensemble's rows carry ``member``."""
    tag = len(results) > 1
    return [{**row, "member": r.member.index} if tag else row for r in results for row in r.history]


def assemble_model(card: ModelCard, results: list[MemberResult]) -> tuple[ModelCard, nn.Module]:
    """The ensemble's card (``ensemble_size`` K; ``member_seeds`` for K > 1) and its model,
    built as :func:`~hicatalog.models.registry.build_model` builds it (an
    :class:`~hicatalog.models.ensemble.Ensemble` for K > 1) with each member's weights."""
    k = len(results)
    card = dataclasses.replace(card, ensemble_size=k,
                               member_seeds=[r.member.seed for r in results] if k > 1 else None)
    model = build_model(card)
    networks = list(model.members) if isinstance(model, Ensemble) else [model]
    for net, r in zip(networks, results, strict=True):
        net.load_state_dict(r.state)
    return card, model


def needs_calibration(card: ModelCard) -> bool:
    """Whether ``card``'s model has probabilities or an uncertainty to calibrate: every
    classifier, a ``gaussian`` regression head, an ensemble (a single ``point`` regression
    network has none)."""
    return card.task != "regression" or card.head != "point" or card.ensemble_size > 1


def calibrate(plan: TrainPlan, card: ModelCard, model: nn.Module, data: DecodedData,
              spec: RunSpec) -> tuple[dict[str, Any], np.ndarray | None, np.ndarray | None]:
    """One pass of the trained model over the validation split (a Ray task) and the
    calibration fitted on it: ``(calibration, calibrated validation prediction, targets)``;
    ``({}, None, None)`` when there is nothing to calibrate."""
    from hicatalog.runtime import cpus_per_worker

    if not needs_calibration(card):
        return {}, None, None
    outputs, targets = validation_outputs(
        card, model.state_dict(), data.val, gpu=spec.gpu, batch_size=plan.batch_size * 2,
        num_cpus=1.0 if spec.gpu else cpus_per_worker(1, keep_free=0.0 if data.cached else 1.0))
    table = plan.selection.table
    train_rows = table.filter(pc.invert(table["is_val"]))
    calibration, val_pred = fit_calibration(card, outputs, targets, train_rows["target"].to_numpy())
    log.info("calibration on the validation split: %s",
             {k: round(v, 4) if isinstance(v, float) else v for k, v in calibration.items()})
    return calibration, val_pred, targets


def model_metrics(task: str, results: list[MemberResult], val_pred: np.ndarray | None,
                  targets: np.ndarray | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(metrics, extra)`` of the trained model: a single network's are its last epoch's;
    an ensemble's are computed from its calibrated validation prediction, and ``extra`` lists
    each member's last epoch (``members``)."""
    if len(results) == 1:
        return results[0].final, {}
    metrics = (epoch_regression_metrics(targets, val_pred) if task == "regression"
               else epoch_classification_metrics(targets, val_pred))
    return metrics, {"members": [{"seed": r.member.seed, **r.final,
                                  "resumed_after_epochs": r.resumed_after_epochs} for r in results]}


def run_training(plan: TrainPlan, spec: RunSpec, *,
                 worker_loop: WorkerLoop = train_loop_per_worker) -> dict[str, Any]:
    """Train ``plan`` as ``spec`` says and write the model to ``spec.out``; returns what
    :func:`train` returns. Starts Ray when it is not running."""
    from hicatalog.runtime import init_ray

    init_ray()
    data = decode_data(plan)
    card = network_card(plan, data, spec.workers)
    lc = loop_config(plan, card, data, spec)
    storage.delete_file(spec.metrics_path)
    results = fit_members(plan, lc, data, spec, worker_loop)
    history = merged_history(results)
    _write_jsonl(spec.metrics_path, history)
    for r in results:  # the live per-member files of an ensemble, now in metrics.jsonl
        if (path := live_metrics_path(spec, r.member, len(results))) != spec.metrics_path:
            storage.delete_file(path)
    card, model = assemble_model(card, results)
    calibration, val_pred, targets = calibrate(plan, card, model, data, spec)
    final, extra = model_metrics(plan.task, results, val_pred, targets)
    resumed = _per_member([r.resumed_after_epochs for r in results])
    card = dataclasses.replace(card, calibration=calibration, metrics={
        **final, **extra, "n_train": data.n_train, "n_val": data.n_val,
        "dropped_rows": data.dropped, "selection": plan.selection.summary,
        "resumed_after_epochs": resumed,
    })
    card = save_model(spec.out, model, card)
    log.info("model written to %s: %s", spec.out,
             {k: final.get(k) for k in ("rmse", "accuracy", "auc") if k in final})
    return {
        "model_dir": spec.out, "metrics": final, "history": history,
        "card": json.loads(card.to_json()), "n_train": data.n_train, "n_val": data.n_val,
        "dropped_rows": data.dropped, "resumed_after_epochs": resumed,
        "run_path": _per_member([r.run_path for r in results]),
    }


def train(
    data: Sequence[str],
    out: str,
    *,
    task: str = "regression",
    preset: str = "quick",
    workers: int = 1,
    gpu: bool = False,
    precision: str = "auto",
    arch: str | None = None,
    width: float | None = None,
    image_size: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    max_lr: float | None = None,
    weight_decay: float | None = None,
    label_smoothing: float = 0.05,
    val_fraction: float = 0.2,
    split_by: str | None = None,
    val_quantiles: tuple[float, float] | None = None,
    seed: int = 0,
    max_failures: int = 3,
    train_samples: Sequence[str] | None = None,
    min_rows: int = 20,
    min_class_rows: int = 10,
    ensemble: int = 1,
    head: str = "point",
    likelihood: str = "detections",
    negatives: Sequence[str] | None = None,
    upper_limits_as_negatives: bool = False,
    storage_path: str | None = None,
    worker_loop: WorkerLoop = train_loop_per_worker,
) -> dict[str, Any]:
    """Train one model on the cutout shards ``data`` and write it to ``out``.

    The keyword parameters are the options of ``hicatalog train`` (its ``--help`` says what
    each does); those left ``None`` take the ``preset``'s value. ``worker_loop``: the function
    each Ray Train worker runs (default :func:`~hicatalog.training.loop.train_loop_per_worker`);
    a wrapper around it can, e.g., kill its worker to test recovery.

    Returns ``{"model_dir", "metrics" (final epoch; an ensemble's: its validation metrics),
    "history" (every epoch; an ensemble's rows have ``member``), "card" (dict), "n_train",
    "n_val", "dropped_rows", "resumed_after_epochs" (the epochs after which the run resumed
    from a checkpoint: a worker or node lost, or the command re-run; also in the card's
    metrics; an ensemble: one list per member), "run_path" (an ensemble: one per member)}``.

    Raises
    ------
    ConfigError: options that do not fit together (``head`` for a classifier, ``val_quantiles``
        without ``split_by``), before any data is read.
    SchemaError / InputError: bad shards, a missing label or split column, a requested sample
        absent, a set too small or degenerate (:func:`~hicatalog.training.data.select_rows`),
        all before any training starts.
    ClusterError: the Ray Train run failed for good (re-running the same call resumes it).
    """
    params = dict(locals())
    worker_loop = params.pop("worker_loop")
    args = train_arguments(**params)
    return run_training(plan_training(args), run_spec(args), worker_loop=worker_loop)


def train_arguments(**params: Any) -> SimpleNamespace:
    """The keyword parameters ``params`` of :func:`train`, its defaults filled in, as one value
    whose attributes the adapters read (:func:`plan_training`, :func:`run_spec`,
    :func:`member_seeds`, :func:`~hicatalog.training.presets.resolve_hyperparameters`).

    Raises
    ------
    TypeError: a name :func:`train` does not take, or ``data`` / ``out`` missing.
    ConfigError: options that do not fit together (:mod:`hicatalog.training.options`).
    """
    bound = inspect.signature(train).bind(**params)
    bound.apply_defaults()
    args = SimpleNamespace(**{k: v for k, v in bound.arguments.items() if k != "worker_loop"})
    check_split(args.split_by, args.val_quantiles)
    check_task_options(args.task, head=args.head, negatives=args.negatives,
                       upper_limits_as_negatives=args.upper_limits_as_negatives,
                       likelihood=args.likelihood)
    return args


def summary_line(result: dict[str, Any]) -> str:
    """One line on what :func:`train` returned: the model, its rows, resumes, calibration and
    final metrics (the ``hicatalog train`` output)."""
    card, final = result["card"], result["metrics"]
    task, k = card["task"], card["ensemble_size"]
    keys = ("rmse", "slope", "sigma", "offset", "rmse_over_std") if task == "regression" else ("accuracy", "auc")
    metrics = ", ".join(f"{key}={final[key]:.4f}" for key in keys if isinstance(final.get(key), float))
    counts = "; ".join(f"{s} {c}" for s, c in card["sample_counts"].items())
    resumed = result["resumed_after_epochs"] if k > 1 else [result["resumed_after_epochs"]]
    who = [f"member {i} " if k > 1 else "" for i in range(k)]
    resumes = "".join(f"; {who[i]}resumed from its checkpoint after epoch {', '.join(map(str, r))}"
                      for i, r in enumerate(resumed) if r)
    what = f"ensemble of {k} {task} networks" if k > 1 else f"{task} model"
    cal = card["calibration"]
    calibrated = (f"; calibrated on {cal['n_val']} validation rows: {cal['method']} "
                  f"{cal[cal['method']]:.3g}" if cal else "")
    if "ood_variance" in cal:
        calibrated += f", out-of-distribution variance {cal['ood_variance']:.3g} dex^2"
    return (f"trained {what} in {result['model_dir']} ({result['n_train']} train / "
            f"{result['n_val']} val; rows per sample: {counts}{resumes}{calibrated}): {metrics}")


def show_result(result: dict[str, Any], params: dict[str, Any]) -> None:
    """What ``hicatalog train`` prints: :func:`summary_line` of :func:`train`'s result."""
    print(summary_line(result))
