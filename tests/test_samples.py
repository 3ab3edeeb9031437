"""The paper's sample design in training and evaluation (issue #16): which samples train,
which are PR negatives, upper limits, refusals of degenerate sets, the model card's record,
and the per-sample evaluation table against numbers computed by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from imagefixtures import make_blob_shards

from hicatalog.catalog.publish import healpix_29
from hicatalog.cli import main as cli_main
from hicatalog.config import TrainConfig
from hicatalog.cutouts.shards import write_shard
from hicatalog.evaluation.catalog import evaluate_catalog
from hicatalog.models import ModelCard
from hicatalog.samples import default_train_samples, report_group
from hicatalog.training.data import select_rows

# rows written per sample: (sample, rows, detected, upper limit)
REAL = (
    ("a40A", 30, True, False),
    ("a40B", 20, True, False),
    ("a100", 15, True, False),
    ("nibles", 10, True, False),
    ("xgass", 12, True, False),  # xGASS detections
    ("xgass", 10, False, True),  # xGASS upper limits
    ("nondetections", 40, False, False),
)


def _columns(design):
    sample = np.concatenate([[s] * n for s, n, _, _ in design])
    detected = np.concatenate([[d] * n for _, n, d, _ in design]).astype(bool)
    limit = np.concatenate([[u] * n for _, n, _, u in design]).astype(bool)
    return {"dataset": sample, "detected": detected, "upper_limit": limit}


def _write(tmp_path, design, name="real", **extra) -> tuple[str, dict[str, np.ndarray]]:
    cols = {**_columns(design), **extra}
    n = len(cols["dataset"])
    # shuffle the samples over the shards, so that no shard holds one sample only
    order = np.random.default_rng(1).permutation(n)
    cols = {k: np.asarray(v)[order] for k, v in cols.items()}
    out = tmp_path / name
    make_blob_shards(str(out), n, seed=7, size=32, rows_per_shard=50, extra_columns=cols)
    table = pa.concat_tables(pq.read_table(f) for f in sorted(out.glob("*.parquet")))
    return str(out), {k: np.asarray(table[k].to_pylist()) for k in ("object_id", *cols)}


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("samples"), REAL)


def _files(d):
    return sorted(str(p) for p in Path(d).glob("*.parquet"))


def _samples_of(sel, rows):
    by_id = dict(zip(rows["object_id"].tolist(), zip(rows["dataset"].tolist(), rows["upper_limit"].tolist(),
                                                     strict=True), strict=True))
    return [by_id[i] for i in sel.table["object_id"].to_pylist()]


# --- which rows train -------------------------------------------------------------------------

def test_default_training_samples_follow_the_vocabulary():
    assert default_train_samples({"alfalfa", "nondetections", "xgass"}) == ("alfalfa",)
    assert default_train_samples({"a40A", "a100", "xgass"}) == ("a40A", "a40B")
    with pytest.raises(ValueError, match="mix mock"):
        default_train_samples({"alfalfa", "a100"})
    with pytest.raises(ValueError, match="cannot tell"):
        default_train_samples({"xgass", "nondetections"})
    assert [report_group(s) for s in ("a40A", "a40B", "a100")] == ["a.40A", "a.40A", "a100"]


def test_regression_defaults_to_a40_and_never_sees_test_samples_or_limits(real):
    d, rows = real
    sel = select_rows(_files(d), "regression", seed=0)
    got = _samples_of(sel, rows)
    assert sorted({s for s, _ in got}) == ["a40A", "a40B"] and not any(u for _, u in got)
    assert sel.summary["sample_counts"] == {"a40A": {"rows": 30}, "a40B": {"rows": 20}}
    assert sel.summary["train_samples"] == ["a40A", "a40B"] and sel.summary["negatives"] is None
    assert sel.summary["samples_present"] == {"a100": 15, "a40A": 30, "a40B": 20, "nibles": 10,
                                              "nondetections": 40, "xgass": 22}
    # asking for xGASS trains on its 12 detections, never on its 10 upper limits
    x = select_rows(_files(d), "regression", train_samples=["xgass"])
    assert x.summary["sample_counts"] == {"xgass": {"rows": 12}}
    assert x.summary["n_upper_limits_excluded"] == 10


def test_upper_limits_are_never_regression_targets_even_without_a_detected_column(tmp_path):
    design = (("a40A", 25, True, False), ("a40A", 5, True, True))  # 5 limits inside a.40A itself
    cols = _columns(design)
    del cols["detected"]
    out = tmp_path / "nodet"
    make_blob_shards(str(out), 30, size=32, with_detected=False, extra_columns=cols)
    sel = select_rows(_files(out), "regression")
    assert sel.summary["sample_counts"] == {"a40A": {"rows": 25}}
    assert sel.summary["n_upper_limits_excluded"] == 5
    limit_ids = set(np.asarray(pq.read_table(_files(out)[0])["object_id"].to_pylist())[cols["upper_limit"]])
    assert not limit_ids & set(sel.table["object_id"].to_pylist())


def test_pr_is_a40_against_nondetections_balanced_and_never_upper_limits(real):
    d, rows = real
    sel = select_rows(_files(d), "pr", seed=3)
    got = _samples_of(sel, rows)
    y = sel.table["target"].to_numpy()
    assert y.sum() == 40 and len(y) == 80  # 50 a.40A detections drawn down to the 40 negatives
    assert {s for (s, _), t in zip(got, y, strict=True) if t == 0} == {"nondetections"}
    assert {s for (s, _), t in zip(got, y, strict=True) if t == 1} <= {"a40A", "a40B"}
    counts = sel.summary["sample_counts"]
    assert counts["nondetections"] == {"nondetection": 40}
    assert counts["a40A"]["detection"] + counts["a40B"]["detection"] == 40
    # xGASS as negatives: its upper limits stay out unless asked for
    both = ["nondetections", "xgass"]
    no_limits = select_rows(_files(d), "pr", negatives=both)
    assert not any(u for _, u in _samples_of(no_limits, rows))
    assert no_limits.summary["n_upper_limits_excluded"] == 10
    asked = select_rows(_files(d), "pr", negatives=both, upper_limits_as_negatives=True)
    assert asked.summary["sample_counts"]["xgass"] == {"nondetection": 10}
    assert sum(u for _, u in _samples_of(asked, rows)) == 10


def test_mock_vocabulary_trains_on_alfalfa(tmp_path):
    d, _ = _write(tmp_path, (("alfalfa", 30, True, False), ("xgass", 25, True, False),
                             ("nondetections", 30, False, False)), name="mock")
    sel = select_rows(_files(d), "regression")
    assert sel.summary["sample_counts"] == {"alfalfa": {"rows": 30}}
    pr = select_rows(_files(d), "pr")
    assert pr.summary["sample_counts"] == {"alfalfa": {"detection": 30}, "nondetections": {"nondetection": 30}}


def test_sample_lists_take_commas():
    cfg = TrainConfig(task="pr", data=["x"], out="y", train_samples=["a40A,a40B", "a100"],
                      negatives="nondetections")
    assert cfg.train_samples == ["a40A", "a40B", "a100"] and cfg.negatives == ["nondetections"]
    with pytest.raises(ValueError):
        TrainConfig(data=["x"], out="y", train_samples=",")
    # negatives belong to the PR network: a regression refuses them instead of ignoring them
    for kw in ({"negatives": "nondetections"}, {"upper_limits_as_negatives": True}):
        with pytest.raises(ValueError, match="task 'regression' has none"):
            TrainConfig(data=["x"], out="y", **kw)


# --- refusals ---------------------------------------------------------------------------------

def _refused(capsys, argv) -> str:
    rc = cli_main(["train", *argv])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_degenerate_training_sets_are_refused_in_one_line(real, tmp_path, capsys):
    d, _ = real
    base = ["--data", d, "--out", str(tmp_path / "m")]
    err = _refused(capsys, [*base, "--train-samples", "a40A,alfalfa"])
    assert ("training sample 'alfalfa' is not in the shards; samples present: a100: 15, a40A: 30, "
            "a40B: 20, nibles: 10, nondetections: 40, xgass: 22") in err
    err = _refused(capsys, [*base, "--train-samples", "nibles"])
    assert "regression: 10 usable rows" in err and "fewer than min_rows=20" in err
    # xGASS non-detections are all upper limits: no negatives, and the flag that would use them
    err = _refused(capsys, [*base, "--task", "pr", "--negatives", "xgass"])
    assert "pr has one class: 50 detections in samples a40A+a40B and 0 non-detections" in err
    assert "10 upper-limit rows" in err and "--upper-limits-as-negatives" in err
    err = _refused(capsys, [*base, "--task", "pr", "--min-class-rows", "45"])
    assert "pr has too few rows of a class: 50 detections" in err and "40 non-detections" in err
    err = _refused(capsys, [*base, "--task", "pr", "--negatives", "zzz"])
    assert "negative sample 'zzz' is not in the shards" in err


def test_constant_target_and_sample_flags_without_samples_are_refused(tmp_path, capsys):
    n = 40
    flat = tmp_path / "flat"
    make_blob_shards(str(flat), n, size=32, extra_columns={
        "m_true": np.full(n, 0.3, np.float32), "detected": np.ones(n, bool)})
    err = _refused(capsys, ["--data", str(flat), "--out", str(tmp_path / "m")])
    assert "m_true has zero variance over the 40 selected rows" in err
    err = _refused(capsys, ["--data", str(flat), "--out", str(tmp_path / "m"), "--train-samples", "a40A"])
    assert "no 'dataset' column" in err


# --- the model card ---------------------------------------------------------------------------

def _card(**kw) -> ModelCard:
    base = dict(model_id="m", task="pr", arch="xresnet18", width=0.25, n_outputs=2, image_size=32,
                cutout_size=32, survey="sdss", normalization={"mean": [0.5] * 3, "std": [0.25] * 3})
    return ModelCard(**{**base, **kw})


def test_card_records_samples_and_round_trips_and_old_cards_load():
    card = _card(train_samples=["a40A", "a40B"], negatives=["nondetections"],
                 sample_counts={"a40A": {"detection": 30}, "nondetections": {"nondetection": 30}})
    again = ModelCard.from_json(card.to_json())
    assert again == card and again.sample_counts["a40A"] == {"detection": 30}
    old = json.loads(_card().to_json())
    for k in ("train_samples", "negatives", "upper_limits_as_negatives", "sample_counts"):
        old.pop(k)
    loaded = ModelCard.from_dict(old)
    assert loaded.train_samples is None and loaded.sample_counts == {} and not loaded.upper_limits_as_negatives


def _network_card(cfg: TrainConfig) -> ModelCard:
    """The card ``train(cfg)`` trains with, made by its steps without Ray (the data step's
    result stands in: what these tests check comes from the plan)."""
    from hicatalog.training.trainer import DecodedData, network_card, plan_training

    plan = plan_training(cfg)
    data = DecodedData(train=None, val=None, n_train=plan.selection.n_train,
                       n_val=plan.selection.n_val, dropped=0, cached=True, cutout_size=32,
                       survey="sdss", normalization={"mean": [0.5] * 3, "std": [0.25] * 3})
    return network_card(plan, data, workers=1)


def test_regression_card_counts_what_was_written(real, tmp_path):
    """The defaults: the card lists a40A and a40B with exactly the rows written (a Ray Train
    run writes this card: tests/test_training.py's crash-and-resume test checks the saved
    card's samples)."""
    d, rows = real
    card = _network_card(TrainConfig(data=[d], out=str(tmp_path / "reg")))
    written = {s: int((rows["dataset"] == s).sum()) for s in ("a40A", "a40B")}
    assert card.train_samples == ["a40A", "a40B"] and card.negatives is None
    assert card.sample_counts == {s: {"rows": n} for s, n in written.items()} == {
        "a40A": {"rows": 30}, "a40B": {"rows": 20}}


def test_pr_card_has_no_upper_limit_negatives(real, tmp_path):
    d, _ = real
    card = _network_card(TrainConfig(task="pr", data=[d], out=str(tmp_path / "pr"),
                                     negatives=["nondetections", "xgass"]))
    assert card.negatives == ["nondetections", "xgass"] and not card.upper_limits_as_negatives
    # the 10 xGASS rows that are not detections are all upper limits: none is a negative
    assert "xgass" not in card.sample_counts
    assert card.sample_counts["nondetections"] == {"nondetection": 40}


# --- evaluation per sample --------------------------------------------------------------------

# object_id, sample, upper limit, m_true (dex; the limit for upper limits), m_pred, p_cnn
HAND = (
    ("a1", "a40A", False, 0.0, 0.2, 0.9), ("a2", "a40A", False, 1.0, 0.8, 0.95),
    ("b1", "a40B", False, 0.0, 0.0, 0.7), ("b2", "a40B", False, 1.0, 1.0, 0.6),
    ("h1", "a100", False, 0.0, 0.1, 0.9), ("h2", "a100", False, 0.5, 0.4, 0.3),
    ("h3", "a100", False, 1.0, 1.3, 0.95),
    ("n1", "nibles", False, -0.5, -0.5, 0.8), ("n2", "nibles", False, 0.5, 0.75, 0.2),
    ("x1", "xgass", False, -1.0, -0.5, 0.2), ("x2", "xgass", False, -0.5, -0.5, 0.92),
    ("x3", "xgass", False, 0.0, 0.25, 0.95),
    ("l1", "xgass", True, -1.0, -1.2, 0.9), ("l2", "xgass", True, -1.5, -1.0, 0.2),
    ("l3", "xgass", True, -2.0, -2.5, 0.6),
    ("d1", "nondetections", False, None, -0.8, 0.1), ("d2", "nondetections", False, None, -0.2, 0.4),
)


def _hand_catalog(tmp_path):
    ids, sample, limit, m_true, m_pred, p = (list(c) for c in zip(*HAND, strict=True))
    n = len(ids)
    truth = pa.table({
        "object_id": ids, "ra": np.zeros(n), "dec": np.zeros(n), "z": np.full(n, 0.03),
        "log_mstar": pa.array(np.full(n, 10.0), pa.float32()), "log_mhi": pa.array([None] * n, pa.float32()),
        "m_true": pa.array(m_true, pa.float32()),
        "detected": [s not in ("nondetections",) and not u for s, u in zip(sample, limit, strict=True)],
        "upper_limit": limit, "dataset": sample,
    })
    pq.write_table(truth, tmp_path / "labels.parquet")
    cat = pa.table({
        "object_id": ids, "ra": np.zeros(n), "dec": np.zeros(n), "z": np.full(n, 0.03),
        "m_pred": pa.array(m_pred, pa.float32()), "m_pred_err": pa.nulls(n, pa.float32()),
        "m_pred_std": pa.array(np.zeros(n), pa.float32()),
        "p_cnn": pa.array(p, pa.float32()), "one_plus_delta5": pa.array(np.ones(n), pa.float32()),
        "sigma5": pa.array(np.ones(n), pa.float32()), "d5_mpc": pa.array(np.ones(n), pa.float32()),
        "env_status": ["ok"] * n, "status": ["ok"] * n, "error": pa.array([None] * n, pa.string()),
        "build_id": ["b"] * n, "model_id": ["m"] * n, "_healpix_29": healpix_29(np.zeros(n), np.zeros(n)),
    })
    cat_dir = tmp_path / "catalog"  # a plain hi_catalog directory (its manifest lists no versions)
    write_shard(cat, str(cat_dir), "part", 0, "hi_catalog")
    sha = "ab" * 32
    models = {}
    for task, kw in (("regression", dict(task="regression", n_outputs=1, train_samples=["a40A", "a40B"])),
                     ("pr", dict(train_samples=["a40A", "a40B"], negatives=["nondetections"]))):
        mdir = tmp_path / task
        mdir.mkdir()
        (mdir / "model_card.json").write_text(_card(model_id=f"{task}-1", weights_sha256=sha, **kw).to_json())
        models[task] = {"path": str(mdir), "weights_sha256": sha}
    (cat_dir / "_manifest.json").write_text(json.dumps({"build_id": "b", "models": models}))
    return cat_dir, tmp_path / "labels.parquet"


def test_evaluate_scores_each_test_sample_and_upper_limits_by_hand(tmp_path, capsys):
    cat_dir, labels = _hand_catalog(tmp_path)
    out = tmp_path / "report"
    rc = cli_main(["evaluate", "--catalog", str(cat_dir), "--truth", str(labels), "--out", str(out)])
    assert rc == 0
    res = json.loads((out / "metrics.json").read_text())
    assert res["datasets"] == ["a.40A", "a100", "nibles", "xgass", "nondetections"]
    assert res["groups"]["a.40A"] == ["a40A", "a40B"]
    reg, ap = res["regression"], pytest.approx
    # a.40A = a40A + a40B: residuals 0.2, -0.2, 0, 0
    assert reg["a.40A"]["none"]["n"] == 4
    assert reg["a.40A"]["none"]["rmse"] == ap(np.sqrt(0.08 / 4), abs=1e-6)
    assert reg["a.40A"]["none"]["offset"] == ap(0.0, abs=1e-6)
    # a.100: residuals 0.1, -0.1, 0.3 on M_true 0, 0.5, 1
    h = reg["a100"]["none"]
    assert h["n"] == 3 and h["rmse"] == ap(np.sqrt(0.11 / 3), abs=1e-6)
    assert h["offset"] == ap(0.1, abs=1e-6) and h["sigma"] == ap(np.sqrt(0.11 / 3 - 0.01), abs=1e-6)
    assert h["slope"] == ap(0.6 / 0.5, abs=1e-5)
    # p_CNN > 0.5 keeps h1 and h3: residuals 0.1, 0.3
    assert reg["a100"]["p_cnn>0.5"]["n"] == 2
    assert reg["a100"]["p_cnn>0.5"]["rmse"] == ap(np.sqrt(0.1 / 2), abs=1e-6)
    assert reg["a100"]["p_cnn>0.5"]["completeness"] == ap(2 / 3)
    # NIBLES: residuals 0, 0.25
    assert reg["nibles"]["none"]["rmse"] == ap(np.sqrt(0.0625 / 2), abs=1e-6)
    assert reg["nibles"]["none"]["offset"] == ap(0.125, abs=1e-6)
    # xGASS detections only (residuals 0.5, 0, 0.25): the three upper limits are not in it
    x = reg["xgass"]["none"]
    assert x["n"] == 3 and x["rmse"] == ap(np.sqrt(0.3125 / 3), abs=1e-6) and x["offset"] == ap(0.25, abs=1e-6)
    # upper limits: -1.2 <= -1 yes, -1.0 <= -1.5 no, -2.5 <= -2 yes; excess -0.2, 0.5, -0.5
    keys = ("n", "n_consistent", "frac_consistent", "median_excess", "completeness")
    lim = {k: {a: m[a] for a in keys} for k, m in res["limits"]["xgass"].items()}
    assert lim["none"] == ap({"n": 3, "n_consistent": 2, "frac_consistent": 2 / 3,
                              "median_excess": -0.2, "completeness": 1.0}, abs=1e-6)
    # p_CNN > 0.5 keeps l1 and l3, both consistent; median of -0.2 and -0.5
    assert lim["p_cnn>0.5"] == ap({"n": 2, "n_consistent": 2, "frac_consistent": 1.0,
                                   "median_excess": -0.35, "completeness": 2 / 3}, abs=1e-6)
    assert list(res["limits"]) == ["xgass"]
    # every value row but the non-detections (no M_true) is pooled in 'all'; no upper limit
    assert reg["all"]["none"]["n"] == 4 + 3 + 2 + 3
    # the samples the models were trained on are marked, the test samples are not
    assert res["roles"] == {"a.40A": ["regression", "pr"], "a100": [], "nibles": [], "xgass": [],
                            "nondetections": ["pr"]}
    assert res["labels"]["a.40A"] == "a.40A [trained on: regression, pr]"
    assert res["labels"]["a100"] == "a.100" and res["labels"]["xgass"] == "xGASS detections"
    assert res["labels"]["all"] == "all [includes training samples]"
    # the PR network's own classes: a.40A detections against the non-detections
    tc = res["pr"]["training_classes"]
    assert tc["detections"] == ["a40A", "a40B"] and (tc["n"], tc["n_pos"]) == (6, 4)
    assert tc["accuracy"] == ap(1.0) and tc["roc_auc"] == ap(1.0)
    md = (out / "table2.md").read_text()
    assert "| None | a.40A [trained on: regression, pr] | 4 |" in md
    assert "| None | xGASS upper limits | 3 | 2 | 0.6667 | -0.2000 |" in md
    assert "| a40A+a40B vs nondetections | 6 | 4 |" in md
    printed = capsys.readouterr().out
    assert "xgass upper limits: N=     3 M_pred <= limit for 0.667" in printed


def test_evaluate_without_cards_marks_nothing(tmp_path):
    cat_dir, labels = _hand_catalog(tmp_path)
    (cat_dir / "_manifest.json").write_text(json.dumps({"build_id": "b"}))
    res = evaluate_catalog(str(cat_dir), str(labels), str(tmp_path / "r"))
    assert res["roles"] is None and res["labels"]["a.40A"] == "a.40A" and res["labels"]["all"] == "all"
    assert "unknown" in res["trained_on"]["regression"]
