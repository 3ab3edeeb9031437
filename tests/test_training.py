"""Training: row selection and splits, decoding, the loop config, the trainer's steps, resume
determinism, Ray Train runs (two DDP workers; dead workers and a re-run), and the torch threads
of every Ray worker that runs torch (training workers, catalog predictor)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from imagefixtures import dihedral_views_reference, make_blob_shards
from sklearn.metrics import roc_auc_score

from hicatalog.cli import main as cli_main
from hicatalog.config import TrainConfig
from hicatalog.cutouts.shards import list_shards
from hicatalog.models import ModelCard, load_model
from hicatalog.runtime import cpus_per_worker, set_torch_threads, torch_threads
from hicatalog.training.data import decode_rows, select_rows
from hicatalog.training.loop import (
    fit,
    load_state,
    newest_checkpoint,
    save_state,
    train_loop_per_worker,
)
from hicatalog.training.loop_config import LOOKAHEAD_ALPHA, LOOKAHEAD_K, LoopConfig
from hicatalog.training.metrics import epoch_classification_metrics, epoch_regression_metrics
from hicatalog.training.presets import resolve_hyperparameters
from hicatalog.training.trainer import (
    DecodedData,
    Member,
    MemberResult,
    assemble_model,
    loop_config,
    merged_history,
    model_id_for,
    network_card,
    plan_training,
    planned_model_id,
    run_name,
    run_spec,
    summary_line,
    train,
)


@pytest.fixture(scope="module")
def blobs(tmp_path_factory) -> list[str]:
    out = tmp_path_factory.mktemp("blobs")
    return make_blob_shards(str(out), 400, seed=3, size=48, rows_per_shard=150, corrupt=4)


# --- selection and splits ---------------------------------------------------------------------

def _labels(files: list[str]) -> pa.Table:
    return pa.concat_tables(pq.read_table(f) for f in files)


def test_regression_selects_finite_detections(blobs):
    sel = select_rows(blobs, "regression", seed=0)
    t = _labels(blobs)
    want = {oid for oid, d, m in zip(t["object_id"].to_pylist(), t["detected"].to_pylist(),
                                     t["m_true"].to_pylist(), strict=True) if d and m is not None}
    assert set(sel.table["object_id"].to_pylist()) == want
    assert sel.n_val == round(0.2 * len(want))
    assert sel.table["target"].type == pa.float32()


def test_pr_is_balanced_and_seeded(blobs):
    a = select_rows(blobs, "pr", seed=5)
    b = select_rows(blobs, "pr", seed=5)
    c = select_rows(blobs, "pr", seed=6)
    assert a.table.equals(b.table)
    assert not a.table.equals(c.table)
    y = a.table["target"].to_numpy()
    assert y.sum() * 2 == len(y)  # equal numbers of detections and non-detections


def test_gasclass_uses_m_cuts(blobs):
    sel = select_rows(blobs, "gasclass", seed=0)
    t = _labels(blobs).to_pandas().set_index("object_id")
    m = t.loc[sel.table["object_id"].to_pylist(), "m_true"].to_numpy()
    y = sel.table["target"].to_numpy()
    assert np.all(m[y == 1] > 0.5) and np.all(m[y == 0] < -0.5)


def test_split_by_quantile_range(blobs):
    sel = select_rows(blobs, "regression", split_by="one_plus_delta5", val_quantiles=(0.8, 1.0))
    t = _labels(blobs).to_pandas().set_index("object_id")
    d = t.loc[sel.table["object_id"].to_pylist(), "one_plus_delta5"].to_numpy()
    val = sel.table["is_val"].to_numpy(zero_copy_only=False)
    assert d[val].min() >= d[~val].max()
    assert abs(val.mean() - 0.2) < 0.02
    low = select_rows(blobs, "regression", split_by="one_plus_delta5", val_quantiles=(0.0, 0.2))
    val = low.table["is_val"].to_numpy(zero_copy_only=False)
    assert d[val].max() <= d[~val].min()


def test_missing_label_or_split_column_is_a_clear_error(tmp_path):
    files = make_blob_shards(str(tmp_path / "nolabel"), 20, with_m_true=False, with_detected=False)
    with pytest.raises(ValueError, match=r"part-00000\.parquet: has no column 'm_true'"):
        select_rows(files, "regression")
    with pytest.raises(ValueError, match=r"has no column 'detected'"):
        select_rows(files, "pr")
    labelled = make_blob_shards(str(tmp_path / "lab"), 20)
    with pytest.raises(ValueError, match=r"has no column 'sfr'.*split column"):
        select_rows(labelled, "regression", split_by="sfr", val_quantiles=(0.8, 1.0))
    with pytest.raises(ValueError, match=r"split column 'survey' must be numeric"):
        select_rows(labelled, "regression", split_by="survey", val_quantiles=(0.8, 1.0))


def test_cli_reports_missing_label_in_one_line(tmp_path, capsys):
    make_blob_shards(str(tmp_path / "nolabel"), 20, with_m_true=False)
    rc = cli_main(["train", "--data", str(tmp_path / "nolabel"), "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert rc != 0
    assert "has no column 'm_true'" in err and "Traceback" not in err


def test_empty_shard_directory_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no Parquet shards"):
        list_shards(str(tmp_path / "empty"))


def test_decode_rows_drops_corrupt_rows_with_a_logged_count(blobs, caplog):
    sel = select_rows(blobs, "pr", seed=0, val_fraction=0.5)
    batch = pq.read_table(blobs[0], columns=["object_id", "image"])
    with caplog.at_level(logging.WARNING, logger="hicatalog.training.data"):
        tr = decode_rows(batch, sel.table, False, 48, 24)
        va = decode_rows(batch, sel.table, True, 48, 24)
    ids = set(batch["object_id"].to_pylist()) & set(sel.table["object_id"].to_pylist())
    corrupt = ids & {f"g3-{i:06d}" for i in range(4)}
    assert len(corrupt) == 4  # this seed selects all four broken rows (two train, two val)
    assert len(tr["image"]) + len(va["image"]) == len(ids) - len(corrupt)
    assert tr["image"].shape[1:] == (3, 24, 24) and tr["image"].dtype == np.uint8
    logged = [re.search(r"dropped (\d+) undecodable", r.getMessage()) for r in caplog.records]
    assert sum(int(m.group(1)) for m in logged if m) == len(corrupt)


def test_presets_and_overrides():
    cfg = TrainConfig(data=["x"], out="y", preset="paper", epochs=10, max_lr=0.03,
                      batch_size=32, weight_decay=1e-4)
    hp = resolve_hyperparameters(cfg)
    assert (hp["arch"], hp["image_size"], hp["width"]) == ("xresnet34", 224, 1.0)
    assert (hp["epochs"], hp["max_lr"], hp["batch_size"], hp["weight_decay"]) == (10, 0.03, 32, 1e-4)
    quick = resolve_hyperparameters(TrainConfig(data=["x"], out="y", task="pr"))
    assert quick["label_smoothing"] == 0.05 and quick["image_size"] < 224
    gas = resolve_hyperparameters(TrainConfig(data=["x"], out="y", task="gasclass", preset="paper"))
    assert (gas["arch"], gas["epochs"]) == ("shallow", 10)


def test_architecture_and_precision_choices_are_the_registries(monkeypatch):
    """A config accepts the architectures the model registry has and the precisions the
    runtime knows, nothing else; reading a config imports no torch."""
    from hicatalog.config import ConfigError, EvaluateConfig, WorkflowConfig, load_config
    from hicatalog.models import registry
    from hicatalog.runtime import PRECISIONS

    monkeypatch.setitem(registry.ARCHITECTURES, "tiny", registry.ARCHITECTURES["shallow"])
    assert TrainConfig(data=["x"], out="y", arch="tiny").arch == "tiny"
    catalogs = {k: "f" for k in ("a40", "a40_sdss", "mpa_info", "mpa_mass", "targets")}
    assert EvaluateConfig(out="y", arch="tiny").arch == WorkflowConfig(
        out="y", train={"arch": "tiny"}, **catalogs).train.arch
    with pytest.raises(ConfigError, match=r"'arch'.*registered architectures: xresnet18, .*tiny"):
        load_config(TrainConfig, overrides={"data": ["x"], "out": "y", "arch": "resnet9"})
    for p in PRECISIONS:
        assert TrainConfig(data=["x"], out="y", precision=p).precision == p
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(data=["x"], out="y", precision="fp16")
    import subprocess
    import sys

    code = "import sys, hicatalog.config; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


def test_metrics_definitions():
    true = np.array([0.0, 1.0, 2.0, 3.0])
    # truth first, as scikit-learn: swapped, the slope would be 2 and std_true sqrt(0.3125)
    m = epoch_regression_metrics(true, 0.5 * true + 1.0)
    # residuals 1, 0.5, 0, -0.5: offset 1/4, rmse sqrt(1.5/4), sigma sqrt(1.25/4);
    # std(true) = sqrt(1.25)
    assert m["n_val"] == 4 and m["slope"] == pytest.approx(0.5)
    assert m["offset"] == pytest.approx(0.25) and m["rmse"] == pytest.approx(np.sqrt(0.375))
    assert m["sigma"] == pytest.approx(np.sqrt(0.3125)) and m["std_true"] == pytest.approx(np.sqrt(1.25))
    assert m["rmse_over_std"] == pytest.approx(np.sqrt(0.3))
    c = epoch_classification_metrics(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    # 3 of the 4 (positive, negative) pairs are ordered; p > 0.5 is right for 3 of 4 rows
    assert c["auc"] == pytest.approx(0.75) and c["accuracy"] == pytest.approx(0.75)
    assert (c["n_val"], c["n_val_pos"]) == (4, 2)


# --- resume determinism on the per-worker loop ------------------------------------------------

def _toy_data(n=48, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    y = x.float().mean(dim=(1, 2, 3)) / 128.0 - 1.0
    return x, y


def _loop_config(task="regression", epochs=3, size=16):
    card = ModelCard(
        model_id="toy", task=task, arch="xresnet18", width=0.125,
        n_outputs=1 if task == "regression" else 2, image_size=size, cutout_size=size,
        survey="sdss", normalization={"mean": [0.5] * 3, "std": [0.29] * 3},
    )
    return LoopConfig(card=card, epochs=epochs, batch_size=16, max_lr=0.01, weight_decay=0.01,
                      label_smoothing=0.05, seed=7, steps_per_epoch=3)


def _batches(x, y, bs=16):
    def train_batches(epoch):
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(100 + epoch))
        for i in range(0, len(x), bs):
            idx = perm[i : i + bs]
            yield x[idx], y[idx]

    def val_batches():
        yield x[:20], y[:20]

    return train_batches, val_batches


class _Stop(Exception):
    pass


def test_resumed_run_ends_with_identical_weights(tmp_path):
    torch.set_num_threads(1)
    x, y = _toy_data()
    tb, vb = _batches(x, y)
    lc = _loop_config(epochs=3)
    full, hist_full = fit(lc, tb, vb)

    ckpt = tmp_path / "state.pt"

    def stop_after_first(state, metrics):
        save_state(str(ckpt), state)
        if state["epoch"] == 1:
            raise _Stop

    with pytest.raises(_Stop):
        fit(lc, tb, vb, on_epoch_end=stop_after_first)
    torch.manual_seed(12345)  # the resumed process has other RNG state: the checkpoint restores it
    resumes = []
    resumed, hist_res = fit(lc, tb, vb, start_state=load_state(str(ckpt)),
                            on_epoch_end=lambda st, _: resumes.append(st["resumed_after_epochs"]))
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    assert [h["epoch"] for h in hist_res] == [1, 2, 3]
    assert hist_res[-1]["rmse"] == hist_full[-1]["rmse"]
    assert hist_full[-1]["train_loss"] < hist_full[0]["train_loss"]
    # the states of epochs 2 and 3 record the resume; the first run's did not
    assert resumes == [[1], [1]] and load_state(str(ckpt))["resumed_after_epochs"] == []


def test_newest_checkpoint_in_the_run_directory(tmp_path):
    """The newest readable checkpoint_epoch_NNNN/train_state.pt after the given epoch: a
    checkpoint that was uploaded but never registered with Ray Train (its worker died first)."""
    run = tmp_path / "run"
    for epoch in (1, 2, 3):
        (run / f"checkpoint_epoch_{epoch:04d}").mkdir(parents=True)
        save_state(str(run / f"checkpoint_epoch_{epoch:04d}" / "train_state.pt"), {"epoch": epoch})
    (run / "checkpoint_epoch_0003" / "train_state.pt").write_bytes(b"cut short")
    (run / "checkpoint_epoch_0004").mkdir()  # an upload that never started
    assert newest_checkpoint(str(run), after_epoch=0) == str(run / "checkpoint_epoch_0002" / "train_state.pt")
    assert newest_checkpoint(f"file://{run}", after_epoch=1) == f"file://{run}/checkpoint_epoch_0002/train_state.pt"
    assert newest_checkpoint(str(run), after_epoch=2) is None
    assert newest_checkpoint(str(tmp_path / "nothing"), after_epoch=0) is None


def test_classifier_loop_reports_accuracy_and_auc():
    x, y = _toy_data()
    tb, vb = _batches(x, (y > y.median()).long())
    lc = _loop_config(task="pr", epochs=1)
    model, hist = fit(lc, tb, vb)
    # the reported numbers are those of the trained model on the validation batch: p(class 1)
    # averaged over the 8 views of the square, scored with scikit-learn and numpy
    x_val, y_val = next(vb())
    mean, std = (torch.tensor(lc.card.normalization[k])[:, None, None] for k in ("mean", "std"))
    x_val = (x_val.float() / 255 - mean) / std
    p = torch.softmax(dihedral_views_reference(model, x_val), dim=-1).mean(dim=1)[:, 1].numpy()
    y_val = y_val.numpy()
    assert 0 < y_val.sum() < len(y_val) and hist[0]["n_val"] == len(y_val) == 20
    assert hist[0]["auc"] == pytest.approx(roc_auc_score(y_val, p), abs=1e-6)
    assert hist[0]["accuracy"] == pytest.approx(np.mean((p > 0.5) == y_val.astype(bool)))


@pytest.mark.parametrize("task", ["regression", "pr"])
def test_bf16_channels_last_path_runs_and_learns(task):
    """The GPU recipe (bf16 autocast + channels_last) is device-independent code: run it on
    CPU so that a dtype or memory-format slip fails here, not first on a GPU cluster.

    32 px, not 16: at 16 px the last stage's feature maps are 1 x 1, where torch 2.13's CPU
    bf16 convolution backward returns non-finite weight gradients in most runs (measured:
    7 of 8 runs; none in 18 at 32 px) -- a torch kernel's fault, not this recipe's. 5 epochs
    at max_lr 0.05: enough for the loss of both tasks to fall (3 at 0.01 are not, at 32 px)."""
    torch.set_num_threads(1)
    x, y = _toy_data(size=32)
    y = y if task == "regression" else (y > y.median()).long()
    tb, vb = _batches(x, y)
    lc = dataclasses.replace(_loop_config(task=task, epochs=5, size=32), precision="bf16", max_lr=0.05)
    model, hist = fit(lc, tb, vb)
    assert all(np.isfinite(h["train_loss"]) for h in hist)
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    key = "rmse" if task == "regression" else "auc"
    assert np.isfinite(hist[-1][key])
    # weights stay float32 (autocast casts per op), in channels_last layout
    w = next(p for p in model.parameters() if p.dim() == 4)
    assert w.dtype == torch.float32 and w.is_contiguous(memory_format=torch.channels_last)


# --- torch threads per Ray worker ----------------------------------------------------------

def test_torch_threads_and_cpu_shares_by_hand():
    assert [torch_threads(c) for c in (0.0, 0.5, 1.0, 1.5, 2.0, 7.99)] == [1, 1, 1, 1, 2, 7]
    assert torch_threads(None) == len(os.sched_getaffinity(0))  # not in Ray: this process's CPUs
    assert cpus_per_worker(1, node_cpus=[2]) == 2
    assert cpus_per_worker(2, node_cpus=[2]) == 1
    assert cpus_per_worker(1, keep_free=1, node_cpus=[2]) == 1
    assert cpus_per_worker(2, keep_free=1, node_cpus=[2]) == 0.5  # more workers than CPUs
    assert cpus_per_worker(3, node_cpus=[16]) == 5  # 16/3 = 5.33: whole CPUs
    assert cpus_per_worker(3, node_cpus=[16, 16]) == 8  # two on one node, one on the other
    assert cpus_per_worker(3, node_cpus=[2, 32]) == 10  # 32/3: all three on the big node
    assert cpus_per_worker(3, keep_free=1, node_cpus=[8, 8]) == 3  # 7 free each: 2 + 2 slots
    with pytest.raises(ValueError, match="n_workers"):
        cpus_per_worker(0, node_cpus=[2])


def test_set_torch_threads_follows_the_cpus_ray_assigned(ray_local):
    """A worker left with the wrong thread count (a library default, a stale setting) gets as
    many threads as the CPUs Ray assigned it, and subprocesses inherit OMP_NUM_THREADS."""

    def threads_after_set(start):
        torch.set_num_threads(start)
        n = set_torch_threads()
        return n, torch.get_num_threads(), os.environ["OMP_NUM_THREADS"]

    one = ray_local.remote(num_cpus=1)(threads_after_set)
    half = ray_local.remote(num_cpus=0.5)(threads_after_set)
    assert ray_local.get(one.remote(2), timeout=120) == (1, 1, "1")
    assert ray_local.get(half.remote(2), timeout=120) == (1, 1, "1")

    class Worker:
        def run(self, start):
            return threads_after_set(start)

    two = ray_local.remote(num_cpus=2)(Worker).remote()
    try:
        assert ray_local.get(two.run.remote(1), timeout=120) == (2, 2, "2")
    finally:
        ray_local.kill(two)


def test_catalog_predictor_actor_runs_as_many_threads_as_its_cpus(ray_local, tmp_path):
    """The catalog build's actor sets its threads itself: ray_local starts every worker with
    OMP_NUM_THREADS=1, so an actor holding 2 CPUs runs 2 threads only if it sets them."""
    from hicatalog.catalog.inference import CatalogPredictor
    from hicatalog.models import build_model, save_model

    dirs = []
    for task, n_out in (("regression", 1), ("pr", 2)):
        card = ModelCard(model_id=task, task=task, arch="xresnet18", width=0.125,
                         n_outputs=n_out, image_size=16, cutout_size=16, survey="sdss",
                         normalization={"mean": [0.5] * 3, "std": [0.25] * 3})
        save_model(tmp_path / task, build_model(card), card)
        dirs.append(str(tmp_path / task))

    class Probe(CatalogPredictor):
        def threads(self):
            return torch.get_num_threads(), os.environ["OMP_NUM_THREADS"]

    actor = ray_local.remote(num_cpus=2)(Probe).remote(*dirs, tta=False)
    try:
        assert ray_local.get(actor.threads.remote(), timeout=120) == (2, "2")
    finally:
        ray_local.kill(actor)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "train_state.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot read training checkpoint"):
        load_state(str(bad))


# --- the typed loop config and the trainer's steps, without Ray ------------------------------

def test_loop_config_refuses_a_bad_or_misspelt_field_by_name():
    lc = _loop_config()
    for name, bad in (("epochs", 0), ("max_lr", -0.1), ("precision", "fp16"), ("seed", 1.5),
                      ("lookahead_alpha", 0.0), ("label_smoothing", 1.0), ("gpu", "yes")):
        with pytest.raises(ValueError, match=f"loop config {name}: expected"):
            dataclasses.replace(lc, **{name: bad})
    with pytest.raises(TypeError, match="lookahed_k"):
        dataclasses.replace(lc, lookahed_k=3)
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['lookahed_k'\]"):
        LoopConfig.from_dict({**lc.to_dict(), "lookahed_k": 3})
    assert LoopConfig.from_dict(lc.to_dict()) == lc  # what each Ray Train worker reads back


def test_the_card_records_the_loop_defaults():
    """Lookahead's k and alpha (paper Section 3) have one home, the loop config's defaults;
    the card's hyperparameters record the same numbers."""
    hp = resolve_hyperparameters(TrainConfig(data=["x"], out="y"))
    default = LoopConfig(card=_loop_config().card, epochs=1, batch_size=1, max_lr=0.1,
                         weight_decay=0.0, steps_per_epoch=1)
    assert (hp["lookahead_k"], hp["lookahead_alpha"]) == (default.lookahead_k, default.lookahead_alpha)
    assert (LOOKAHEAD_K, LOOKAHEAD_ALPHA) == (6, 0.5)


def test_run_names_and_model_ids_are_those_of_earlier_versions():
    """Runs resume and workflows skip by these names: pinned to what the code before the
    training steps were split computed for the same inputs."""
    hp = {"arch": "shallow", "width": 0.25, "epochs": 2, "ensemble": 2, "precision": "auto"}
    samples = {"train_samples": ["alfalfa"], "negatives": ["nondetections"],
               "upper_limits_as_negatives": False}
    names = [run_name("pr", {**hp, "seed": s}, "abc123", samples, 0.05) for s in (0, 1)]
    assert names == ["train-pr-7d3ff0c532", "train-pr-f99ba7bc1d"]
    assert model_id_for("pr", names[:1]) == "pr-7d3ff0c532"
    assert model_id_for("pr", names) == "pr-205afd5264-x2"


def test_plan_gives_each_member_its_seed_and_run_and_member_0_is_the_single_network(blobs):
    cfg = TrainConfig(task="pr", data=[str(Path(blobs[0]).parent)], out="unused", seed=4)
    single = plan_training(cfg)
    ens = plan_training(cfg.model_copy(update={"ensemble": 3}))
    assert [(m.index, m.seed) for m in ens.members] == [(0, 4), (1, 5), (2, 6)]
    assert ens.members[0].run_name == single.members[0].run_name
    assert len({m.run_name for m in ens.members}) == 3
    assert ens.model_id.endswith("-x3") and planned_model_id(**cfg.fields()) == single.model_id
    assert plan_training(cfg.model_copy(update={"epochs": 3})).model_id != single.model_id
    # the same rows and split for every member (the split keeps the run's seed)
    assert ens.selection.table.equals(single.selection.table)


def test_loop_config_is_made_and_checked_on_the_driver(blobs):
    cfg = TrainConfig(task="pr", data=[str(Path(blobs[0]).parent)], out="unused", workers=2,
                      batch_size=32)
    plan, spec = plan_training(cfg), run_spec(cfg)
    data = DecodedData(train=None, val=None, n_train=300, n_val=75, dropped=0, cached=True,
                       cutout_size=48, survey="sdss",
                       normalization={"mean": [0.5] * 3, "std": [0.25] * 3})
    card = network_card(plan, data, spec.workers)
    lc = loop_config(plan, card, data, spec)
    # 150 rows per worker: 4 batches of 32 and one of 22
    assert lc.steps_per_epoch == card.hyperparameters["steps_per_epoch"] == 5
    assert lc.shuffle_buffer == 150 and lc.card == card and lc.label_smoothing == 0.05
    bad = dataclasses.replace(plan, hyperparameters={**plan.hyperparameters, "precision": "fp16"})
    with pytest.raises(ValueError, match="loop config precision"):
        loop_config(bad, card, data, spec)


def test_an_ensemble_of_one_is_the_plain_network_as_before():
    """A single network's weights file has the plain network's keys (models written before
    load), an ensemble's one ``members.K`` block per member; only an ensemble's history rows
    name their member."""
    card = ModelCard(model_id="m", task="regression", arch="shallow", width=0.25, n_outputs=1,
                     image_size=16, cutout_size=16, survey="sdss",
                     normalization={"mean": [0.5] * 3, "std": [0.25] * 3})
    from hicatalog.models import build_model

    def result(k: int) -> MemberResult:
        torch.manual_seed(k)
        return MemberResult(Member(k, 10 + k, f"run-{k}"), build_model(card).state_dict(),
                            [{"epoch": 1, "rmse": 0.1 * k}], [], f"path-{k}")

    one, two = [result(0)], [result(0), result(1)]
    one_card, single = assemble_model(card, one)
    assert (one_card.ensemble_size, one_card.member_seeds) == (1, None)
    assert list(single.state_dict()) == list(one[0].state)
    assert all(torch.equal(single.state_dict()[k], v) for k, v in one[0].state.items())
    two_card, ens = assemble_model(card, two)
    assert (two_card.ensemble_size, two_card.member_seeds) == (2, [10, 11])
    assert set(ens.state_dict()) == {f"members.{k}.{key}" for k in (0, 1) for key in one[0].state}
    w = next(iter(two[1].state))
    assert torch.equal(ens.state_dict()[f"members.1.{w}"], two[1].state[w])
    assert merged_history(one) == [{"epoch": 1, "rmse": 0.0}]
    assert [r["member"] for r in merged_history(two)] == [0, 1]


def test_summary_line_of_a_network_and_of_an_ensemble():
    base = {"model_dir": "m", "n_train": 8, "n_val": 2, "metrics": {"rmse": 0.125, "auc": 0.5}}
    one = {**base, "resumed_after_epochs": [1], "card": {
        "task": "regression", "ensemble_size": 1, "sample_counts": {"a": {"rows": 10}},
        "calibration": {}}}
    assert summary_line(one) == (
        "trained regression model in m (8 train / 2 val; rows per sample: a {'rows': 10}; "
        "resumed from its checkpoint after epoch 1): rmse=0.1250")
    two = {**base, "resumed_after_epochs": [[], [2, 3]], "card": {
        "task": "regression", "ensemble_size": 2, "sample_counts": {"a": {"rows": 10}},
        "calibration": {"n_val": 2, "method": "variance_scale", "variance_scale": 1.25,
                        "ood_variance": 0.5}}}
    assert summary_line(two) == (
        "trained ensemble of 2 regression networks in m (8 train / 2 val; rows per sample: "
        "a {'rows': 10}; member 1 resumed from its checkpoint after epoch 2, 3; calibrated on "
        "2 validation rows: variance_scale 1.25, out-of-distribution variance 0.5 dex^2): "
        "rmse=0.1250")


# --- the full Ray Train path ------------------------------------------------------------------

@pytest.mark.slow
def test_two_worker_ray_train_run(ray_local, blobs, tmp_path):
    """2 DDP workers (gloo) from Ray Data shards without samples: corrupt rows dropped and
    counted, metrics per epoch in metrics.jsonl, a loadable self-describing model."""
    out = tmp_path / "model"
    cfg = TrainConfig(task="pr", data=[str(Path(blobs[0]).parent)], out=str(out), workers=2,
                      arch="shallow", width=0.25, image_size=24, epochs=2, batch_size=32)
    res = train(**cfg.fields())
    lines = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    assert {"accuracy", "auc", "train_loss"} <= set(lines[-1])
    # the two workers share ray_local's 2 CPUs: one CPU, so one torch thread, each
    assert [r["torch_threads"] for r in lines] == [1, 1]
    assert res["metrics"]["epoch"] == 2 and res["resumed_after_epochs"] == []
    selected = select_rows(list_shards(cfg.data), "pr", seed=0).table["object_id"].to_pylist()
    n_corrupt_selected = len({f"g3-{i:06d}" for i in range(4)} & set(selected))
    assert res["dropped_rows"] == n_corrupt_selected
    assert res["n_train"] + res["n_val"] == len(selected) - n_corrupt_selected
    assert lines[0]["n_train_seen"] == (res["n_train"] // 2) * 2  # equal shards, all rows used
    model, card = load_model(out)
    assert card.task == "pr" and card.arch == "shallow" and card.n_outputs == 2 and card.image_size == 24
    assert card.cutout_size == 48 and card.metrics["auc"] == lines[-1]["auc"]
    assert card.hyperparameters["workers"] == 2 and card.data_fingerprint
    assert card.train_samples is None and card.calibration["method"] == "temperature"
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 24, 24)).shape == (2, 2)


@pytest.fixture(scope="module")
def sampled(tmp_path_factory) -> tuple[str, int]:
    """Blob shards with a ``dataset`` column: three rows in four ``alfalfa`` (the mock's
    training sample), one ``xgass`` (a test sample). Returns (directory, the number of
    alfalfa detections with an M: the regression's rows)."""
    out = tmp_path_factory.mktemp("sampled")
    n = 160
    dataset = np.where(np.arange(n) % 4 == 3, "xgass", "alfalfa")
    files = make_blob_shards(str(out), n, seed=4, size=32, rows_per_shard=80,
                             extra_columns={"dataset": dataset})
    t = _labels(files)
    rows = int(sum(1 for s, d, m in zip(t["dataset"].to_pylist(), t["detected"].to_pylist(),
                                       t["m_true"].to_pylist(), strict=True)
                   if s == "alfalfa" and d and m is not None))
    return str(out), rows


def _dies_after(epochs: tuple[int, ...], marker_dir: str):
    """A per-worker loop for Ray Train: the real one, whose rank-0 worker process exits
    (``os._exit``: no cleanup, a dead worker to Ray Train) right after it reported its
    checkpoint of each epoch in ``epochs``, once each (a marker file per epoch says so)."""

    def loop(config):
        import ray.train

        report = ray.train.report

        def report_then_die(metrics, checkpoint=None, **kwargs):
            report(metrics, checkpoint=checkpoint, **kwargs)
            marker = os.path.join(marker_dir, f"died-after-{metrics['epoch']}")
            if checkpoint is not None and metrics["epoch"] in epochs and not os.path.exists(marker):
                open(marker, "w").close()
                os._exit(1)

        ray.train.report = report_then_die
        train_loop_per_worker(config)

    return loop


@pytest.mark.slow
def test_a_run_whose_worker_died_resumes_when_rerun(ray_local, sampled, tmp_path):
    """The one crash-and-resume test: the worker dies after epoch 1 and, with max_failures=0,
    the run has failed for good (a RuntimeError saying how to resume); the same command again
    resumes after epoch 1, and the card says so. Checkpoints on a storage URL (file://, the
    code path of s3://); shards with samples (the sample not trained on is filtered in the
    Parquet scan). A worker restarted within a run (max_failures > 0) is
    tests/test_cluster.py's node-loss test."""
    data, n_rows = sampled
    out = tmp_path / "model"
    cfg = TrainConfig(task="regression", data=[data], out=str(out), workers=1, arch="shallow",
                      width=0.25, image_size=16, epochs=2, batch_size=32, max_failures=0,
                      storage_path=f"file://{tmp_path}/checkpoints")
    dies = _dies_after((1,), str(tmp_path))
    with pytest.raises(RuntimeError, match=r"failed after 0 restart\(s\).*re-run the same command"):
        train(**cfg.fields(), worker_loop=dies)
    assert (tmp_path / "died-after-1").exists()
    res = train(**cfg.fields(), worker_loop=dies)
    assert [h["epoch"] for h in res["history"]] == [1, 2]
    assert res["resumed_after_epochs"] == [1] == res["card"]["metrics"]["resumed_after_epochs"]
    lines = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines == res["history"]  # epoch 1 from the checkpoint's history
    assert list((tmp_path / "checkpoints").glob("*/checkpoint_epoch_0002"))
    # every alfalfa detection reached training, no xgass row did
    assert (res["n_train"] + res["n_val"], res["dropped_rows"]) == (n_rows, 0)
    _, card = load_model(out)
    assert card.train_samples == ["alfalfa"] and card.sample_counts == {"alfalfa": {"rows": n_rows}}


def test_positive_class_at_index_zero_is_trained_and_scored_there():
    """Labels say 1 = positive; a card whose classes put the positive class first must train
    and read it at output 0 (one rule, card.positive_index), or the AUC would flip."""
    x, y = _toy_data(n=96)
    tb, vb = _batches(x, (y > y.median()).long())
    lc = _loop_config(task="pr", epochs=8)
    lc = dataclasses.replace(  # enough steps to move the AUC from its start
        lc, max_lr=0.05, steps_per_epoch=5,
        card=dataclasses.replace(lc.card, classes=["detection", "nondetection"]))
    model, hist = fit(lc, tb, vb)
    x_val, y_val = next(vb())
    mean, std = (torch.tensor(lc.card.normalization[k])[:, None, None] for k in ("mean", "std"))
    p0 = torch.softmax(dihedral_views_reference(model, (x_val.float() / 255 - mean) / std),
                       dim=-1).mean(dim=1)[:, 0].numpy()
    assert hist[-1]["auc"] == pytest.approx(roc_auc_score(y_val.numpy(), p0), abs=1e-6)
    # this network starts at AUC ~0.2 (measured): training must have pushed positives to 0
    assert hist[0]["auc"] < 0.5 < 0.85 < hist[-1]["auc"]
