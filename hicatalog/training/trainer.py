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
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow.compute as pc

from hicatalog import __version__, storage
from hicatalog.config import TrainConfig
from hicatalog.cutouts.shards import fingerprint_shards, list_shards, probe_cutouts
from hicatalog.models.artifact import save_model
from hicatalog.models.card import ModelCard
from hicatalog.models.preprocessing import compute_normalization
from hicatalog.models.registry import REGRESSION_HEADS, TASK_CLASSES, build_model
from hicatalog.samples import SAMPLE_COLUMN
from hicatalog.storage import write_atomic
from hicatalog.training.calibration import fit_calibration, validation_outputs
from hicatalog.training.data import decode_rows, select_rows
from hicatalog.training.loop import STATE_FILE, load_state, steps_per_epoch, train_loop_per_worker
from hicatalog.training.metrics import epoch_classification_metrics, epoch_regression_metrics
from hicatalog.training.presets import resolve_hyperparameters

__all__ = ["train", "planned_model_id", "main", "METRICS_FILE"]

log = logging.getLogger("hicatalog.training")

METRICS_FILE = "metrics.jsonl"
#: Decoded training data is cached in the object store when it takes at most this fraction.
CACHE_FRACTION = 0.4
#: Rows per Ray Data decode task batch.
DECODE_BATCH_ROWS = 256
#: Images used to estimate the per-channel normalisation.
NORMALIZATION_SAMPLE = 1024


def _write_jsonl(path: str, rows: list[dict[str, Any]]) -> None:
    write_atomic(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode())


def _metrics_callback(path: str):
    from ray.train import UserCallback

    class MetricsJsonl(UserCallback):
        """Writes rank 0's metrics of every epoch so far to ``MODEL_DIR/metrics.jsonl`` as
        they come, the whole file each time (no appending: the model directory may be on
        object storage; runs in the Ray Train controller; the driver rewrites the file from
        the checkpointed history at the end)."""

        def __init__(self):
            self.rows: list[dict[str, Any]] = []

        def after_report(self, run_context, metrics, checkpoint):  # noqa: D401
            if metrics:
                self.rows.append(metrics[0])
                _write_jsonl(path, self.rows)

    return MetricsJsonl()


def _run_name(cfg: TrainConfig, hp: dict[str, Any], fingerprint: str, samples: dict[str, Any]) -> str:
    """The Ray run's name: the same configuration, data and sample selection resume the same
    run; any change starts another. ``hp`` is one network's (its own ``seed``; the ensemble's
    size is not part of it, so member 0 of an ensemble is the single network)."""
    key = json.dumps({"hp": {k: v for k, v in hp.items() if k != "ensemble"}, "data": fingerprint,
                      "label_smoothing": cfg.label_smoothing, "samples": samples}, sort_keys=True)
    return f"train-{cfg.task}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def member_seeds(cfg: TrainConfig) -> list[int]:
    """The seeds of the networks ``cfg`` trains: ``[seed]``, or ``seed + k`` for member k of
    an ensemble (initial weights, data order and augmentation; the split keeps ``seed``)."""
    return [int(cfg.seed) + k for k in range(int(cfg.ensemble))]


def _plan(cfg: TrainConfig):
    """What ``train(cfg)`` decides before Ray starts: ``(hyperparameters, shard files, data
    fingerprint, row selection, samples, Ray run names (one per member), model id)``. Raises
    as :func:`train` does for a set too small or degenerate."""
    hp = resolve_hyperparameters(cfg)
    files = list_shards(cfg.data)
    fingerprint = fingerprint_shards(files)
    selection = select_rows(
        files, cfg.task, seed=cfg.seed, val_fraction=cfg.val_fraction,
        split_by=cfg.split_by, val_quantiles=cfg.val_quantiles,
        train_samples=cfg.train_samples, negatives=cfg.negatives,
        upper_limits_as_negatives=cfg.upper_limits_as_negatives,
        min_rows=cfg.min_rows, min_class_rows=cfg.min_class_rows,
    )
    summary = selection.summary
    samples = {k: summary[k] for k in ("train_samples", "negatives", "upper_limits_as_negatives")}
    names = [_run_name(cfg, {**hp, "seed": seed}, fingerprint, samples) for seed in member_seeds(cfg)]
    key = names[0] if len(names) == 1 else hashlib.sha256(" ".join(names).encode()).hexdigest()
    model_id = f"{cfg.task}-{key.rsplit('-', 1)[-1][:10]}" + (f"-x{len(names)}" if len(names) > 1 else "")
    return hp, files, fingerprint, selection, samples, names, model_id


def planned_model_id(cfg: TrainConfig) -> str:
    """The ``model_id`` that ``train(cfg)`` would write: it names the configuration, the data
    (shard fingerprint) and the sample selection, like the Ray run's name. A model directory
    whose card has this id already holds what this command trains (``hicatalog workflow``
    skips the training then). Reads only the shards' small columns; raises as :func:`train`
    for a bad or degenerate set."""
    return _plan(cfg)[-1]


def train(cfg: TrainConfig, *, loop_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train one model as ``cfg`` says and write it to ``cfg.out``.

    ``loop_overrides``: extra keys for the per-worker loop config (tests use it for fault
    injection: ``fail_after_epoch`` and ``fail_marker``).

    Returns ``{"model_dir", "metrics" (final epoch; an ensemble's: its validation metrics),
    "history" (every epoch; an ensemble's rows have ``member``), "card" (dict), "n_train",
    "n_val", "dropped_rows", "resumed_after_epochs" (the epochs after which the run resumed
    from a checkpoint: a worker or node lost, or the command re-run; also in the card's
    metrics; an ensemble: one list per member), "run_path" (an ensemble: one per member)}``.

    Raises
    ------
    ValueError / SchemaError: bad shards, a missing label or split column, a requested sample
        absent, a set too small or degenerate (:func:`~hicatalog.training.data.select_rows`),
        all before any training starts; RuntimeError: the Ray Train run failed for good.
    """
    import ray
    import ray.data
    from ray.train import (
        CheckpointConfig,
        FailureConfig,
        RunConfig,
        ScalingConfig,
        TrainingFailedError,
    )
    from ray.train.torch import TorchConfig, TorchTrainer

    from hicatalog.runtime import cpus_per_worker, init_ray

    hp, files, fingerprint, selection, samples, names, model_id = _plan(cfg)
    summary = selection.summary
    geometry = probe_cutouts(files)
    cutout_size, survey = geometry.side_px, geometry.survey
    image_size = int(hp["image_size"])
    log.info(
        "task %s: %d rows selected of %d (%d train, %d val; %s); per sample and class %s; "
        "cutouts %d px -> %d px", cfg.task, summary["n_selected"], summary["n_rows"],
        selection.n_train, selection.n_val, summary["split"], summary["sample_counts"],
        cutout_size, image_size,
    )

    init_ray()
    if summary["train_samples"] is None:  # shards without samples
        source = ray.data.read_parquet(files, columns=["object_id", "image"])
    else:
        # Rows of samples not selected are filtered in the Parquet scan (pushed down by Ray
        # Data): their images never enter the pipeline. decode_rows keeps the selected ids.
        from ray.data.expressions import col

        source = ray.data.read_parquet(files, columns=["object_id", "image", SAMPLE_COLUMN]).filter(
            expr=col(SAMPLE_COLUMN).is_in(sorted(summary["sample_counts"]))
        )

    def decoded(want_val: bool | None):
        return source.map_batches(
            decode_rows,
            fn_kwargs={
                "selection": selection.table, "want_val": want_val,
                "cutout_size": cutout_size, "image_size": image_size,
            },
            batch_format="pyarrow",
            batch_size=DECODE_BATCH_ROWS,
        )

    n_expected = selection.n_train + selection.n_val
    decoded_bytes = n_expected * 3 * image_size**2
    store = float(ray.available_resources().get("object_store_memory", 0.0))
    cached = decoded_bytes <= CACHE_FRACTION * store
    if cached:
        # Decode once (one pass over the shards), keep the images in the object store.
        everything = decoded(None).materialize()
        keep = ["image", "target"]
        train_ds = everything.filter(expr="is_val == False").select_columns(keep).materialize()
        val_ds = everything.filter(expr="is_val == True").select_columns(keep).materialize()
        del everything
        n_train, n_val = train_ds.count(), val_ds.count()
        dropped = n_expected - n_train - n_val
        if dropped:
            log.warning(
                "dropped %d of %d selected cutouts that could not be decoded (see the decode "
                "log lines for their statuses)", dropped, n_expected,
            )
        if n_train < 2 or n_val < 1:
            raise ValueError(
                f"after dropping {dropped} undecodable cutouts, {n_train} training and {n_val} "
                "validation rows are left; need at least 2 and 1"
            )
    else:
        train_ds, val_ds = decoded(False), decoded(True)
        n_train, n_val, dropped = selection.n_train, selection.n_val, None
        log.info("decoded data (%.1f GB) is streamed each epoch, not cached", decoded_bytes / 1e9)
    sample = train_ds.take_batch(min(NORMALIZATION_SAMPLE, n_train), batch_format="numpy")["image"]
    normalization = compute_normalization(sample)

    workers, k_members = int(cfg.workers), int(cfg.ensemble)
    # Workers reserve the CPUs they run threads on (set_torch_threads in the loop); streamed
    # data leaves one CPU per node to the Ray Data decode tasks that run during training. The
    # members of an ensemble share the cluster: K runs of `workers` workers each.
    cpu_per_worker = 1.0 if cfg.gpu else cpus_per_worker(workers * k_members, keep_free=0.0 if cached else 1.0)
    n_steps = steps_per_epoch(n_train, workers, int(hp["batch_size"]))
    # The card the weights will be saved with (one network's; the ensemble's is made from it
    # after training); the workers build and normalise from it.
    card = ModelCard(
        model_id=model_id,
        task=cfg.task,
        arch=hp["arch"],
        width=float(hp["width"]),
        n_outputs=REGRESSION_HEADS[cfg.head] if cfg.task == "regression" else len(TASK_CLASSES[cfg.task] or ()),
        image_size=image_size,
        cutout_size=cutout_size,
        survey=survey,
        normalization=normalization,
        data_fingerprint=fingerprint,
        hyperparameters={**hp, "steps_per_epoch": n_steps},
        code_version=__version__,
        in_channels=3,
        self_attention=True,
        classes=TASK_CLASSES[cfg.task],
        **samples,
        sample_counts=summary["sample_counts"],
        head=cfg.head,
    )
    lc: dict[str, Any] = {
        "card": card.to_dict(), "epochs": int(hp["epochs"]),
        "batch_size": int(hp["batch_size"]), "max_lr": float(hp["max_lr"]),
        "weight_decay": float(hp["weight_decay"]), "label_smoothing": float(hp["label_smoothing"]),
        "lookahead_k": hp["lookahead_k"], "lookahead_alpha": hp["lookahead_alpha"],
        "seed": int(cfg.seed), "steps_per_epoch": n_steps,
        "gpu": bool(cfg.gpu), "precision": hp["precision"],
        "shuffle_buffer": min(max(n_train // max(workers, 1), 2), 4096),
    }
    out = storage.absolute(cfg.out)  # a local path or a URL (s3://...)
    storage_path = storage.absolute(cfg.storage_path or storage.join(out, "ray"))
    metrics_path = storage.join(out, METRICS_FILE)
    storage.delete_file(metrics_path)
    seeds = member_seeds(cfg)

    def member_metrics_path(k: int) -> str:
        return metrics_path if k_members == 1 else storage.join(out, f"metrics.member-{k}.jsonl")

    def fit_member(k: int) -> dict[str, Any]:
        """Train member k (its own seed, Ray run and checkpoints); its final training state."""
        name = names[k]
        lc_k = {**lc, "seed": seeds[k],
                # Ray Train's run directory, where the workers look for a checkpoint newer
                # than the one the controller registered (loop.newest_checkpoint)
                "run_dir": storage.join(storage_path, name), **(loop_overrides or {})}
        trainer = TorchTrainer(
            train_loop_per_worker,
            train_loop_config=lc_k,
            torch_config=TorchConfig(backend="nccl" if cfg.gpu else "gloo"),
            scaling_config=ScalingConfig(
                num_workers=workers, use_gpu=bool(cfg.gpu), resources_per_worker={"CPU": cpu_per_worker},
            ),
            run_config=RunConfig(
                name=name,
                storage_path=storage_path,
                failure_config=FailureConfig(max_failures=int(cfg.max_failures)),
                checkpoint_config=CheckpointConfig(num_to_keep=2),
                callbacks=[_metrics_callback(member_metrics_path(k))],
            ),
            datasets={"train": train_ds, "val": val_ds},
        )
        member = f"member {k} (seed {seeds[k]}) " if k_members > 1 else ""
        log.info("%sRay Train run %s (storage %s), %d worker(s)", member, name, storage_path, workers)
        try:
            result = trainer.fit()
        except TrainingFailedError as exc:
            raise RuntimeError(
                f"training run {name} failed after {cfg.max_failures} restart(s): "
                f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__}. "
                f"Checkpoints are kept in {storage.join(storage_path, name)}; re-run the same "
                "command to resume."
            ) from exc
        if result.checkpoint is None:
            raise RuntimeError(f"training run {name} finished without a checkpoint")
        with result.checkpoint.as_directory() as d:
            state = load_state(os.path.join(d, STATE_FILE))
        resumed_after = [int(e) for e in state.get("resumed_after_epochs", [])]
        if resumed_after:
            log.info("run %s was resumed from its checkpoints after epoch(s) %s: the epochs before "
                     "each were not trained again", name, resumed_after)
        return {"model": state["model"], "history": list(state["history"]),
                "resumed_after_epochs": resumed_after, "run_path": str(result.path)}

    if k_members == 1:
        members = [fit_member(0)]
    else:
        with ThreadPoolExecutor(max_workers=k_members, thread_name_prefix="member") as pool:
            futures = [pool.submit(fit_member, k) for k in range(k_members)]
            outcomes = [(k, f.exception()) for k, f in enumerate(futures)]
        failed = [(k, exc) for k, exc in outcomes if exc is not None]
        if failed:
            done = k_members - len(failed)
            raise RuntimeError(
                f"{len(failed)} of {k_members} ensemble members failed ({done} finished; re-running "
                "the same command resumes each from its checkpoints): "
                + "; ".join(f"member {k}: {exc}" for k, exc in failed)
            ) from failed[0][1]
        members = [f.result() for f in futures]

    history = [{**row, "member": k} if k_members > 1 else row
               for k, m in enumerate(members) for row in m["history"]]
    _write_jsonl(metrics_path, history)
    if k_members > 1:  # the live per-member files, now in metrics.jsonl
        for k in range(k_members):
            storage.delete_file(member_metrics_path(k))
    finals = [m["history"][-1] if m["history"] else {} for m in members]
    resumed = [m["resumed_after_epochs"] for m in members]

    if k_members == 1:
        state_dict = members[0]["model"]
    else:
        state_dict = {f"members.{k}.{key}": v for k, m in enumerate(members) for key, v in m["model"].items()}
    card = dataclasses.replace(card, ensemble_size=k_members,
                               member_seeds=seeds if k_members > 1 else None)

    # One pass over the validation split with the trained model: its calibration, and for an
    # ensemble its own validation metrics (the members' are in their histories). A single
    # point regression network has nothing to calibrate.
    calibration: dict[str, Any] = {}
    if k_members > 1 or cfg.task != "regression" or cfg.head != "point":
        outputs, targets = validation_outputs(
            card, state_dict, val_ds, gpu=bool(cfg.gpu), batch_size=int(hp["batch_size"]) * 2,
            num_cpus=1.0 if cfg.gpu else cpus_per_worker(1, keep_free=0.0 if cached else 1.0))
        train_rows = selection.table.filter(pc.invert(selection.table["is_val"]))
        calibration, val_pred = fit_calibration(card, outputs, targets,
                                                train_rows["target"].to_numpy())
        log.info("calibration on the validation split: %s",
                 {k: round(v, 4) if isinstance(v, float) else v for k, v in calibration.items()})
    final = finals[0]
    extra: dict[str, Any] = {}
    if k_members > 1:
        final = (epoch_regression_metrics(targets, val_pred) if cfg.task == "regression"
                 else epoch_classification_metrics(targets, val_pred))
        extra["members"] = [{"seed": s, **f, "resumed_after_epochs": r}
                            for s, f, r in zip(seeds, finals, resumed, strict=True)]
    card = dataclasses.replace(card, calibration=calibration, metrics={
        **final, **extra, "n_train": n_train, "n_val": n_val, "dropped_rows": dropped,
        "selection": selection.summary,
        "resumed_after_epochs": resumed[0] if k_members == 1 else resumed,
    })
    model = build_model(card)
    model.load_state_dict(state_dict)
    card = save_model(out, model, card)
    log.info("model written to %s: %s", out, {k: final.get(k) for k in ("rmse", "accuracy", "auc") if k in final})
    return {
        "model_dir": out,
        "metrics": final,
        "history": history,
        "card": json.loads(card.to_json()),
        "n_train": n_train,
        "n_val": n_val,
        "dropped_rows": dropped,
        "resumed_after_epochs": resumed[0] if k_members == 1 else resumed,
        "run_path": members[0]["run_path"] if k_members == 1 else [m["run_path"] for m in members],
    }


def main(cfg: TrainConfig) -> int:
    """CLI entry point (``hicatalog train``): train, print the final metrics; exit 0, or 1 with
    one line on stderr when the Ray Train run failed for good."""
    try:
        result = train(cfg)
    except RuntimeError as exc:
        log.debug("training failed", exc_info=True)
        print(f"hicatalog train: error: {exc}", file=sys.stderr)
        return 1
    final = result["metrics"]
    keys = ("rmse", "slope", "sigma", "offset", "rmse_over_std") if cfg.task == "regression" else ("accuracy", "auc")
    summary = ", ".join(f"{k}={final[k]:.4f}" for k in keys if isinstance(final.get(k), float))
    card = result["card"]
    counts = "; ".join(f"{s} {c}" for s, c in card["sample_counts"].items())
    resumed = result["resumed_after_epochs"]
    if cfg.ensemble > 1:
        resumes = "".join(f"; member {k} resumed from its checkpoint after epoch {', '.join(map(str, r))}"
                          for k, r in enumerate(resumed) if r)
    else:
        resumes = f"; resumed from its checkpoint after epoch {', '.join(map(str, resumed))}" if resumed else ""
    what = f"ensemble of {cfg.ensemble} {cfg.task} networks" if cfg.ensemble > 1 else f"{cfg.task} model"
    cal = card["calibration"]
    calibrated = (f"; calibrated on {cal['n_val']} validation rows: {cal['method']} "
                  f"{cal[cal['method']]:.3g}" if cal else "")
    if "ood_variance" in cal:
        calibrated += f", out-of-distribution variance {cal['ood_variance']:.3g} dex^2"
    print(f"trained {what} in {result['model_dir']} "
          f"({result['n_train']} train / {result['n_val']} val; rows per sample: {counts}{resumes}"
          f"{calibrated}): {summary}")
    return 0
