"""Censored (Tobit) training of the regression on detections and upper limits (issue 27).

Expected values come from the synthetic problems' construction, never from the code under test.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch
from imagefixtures import make_blob_shards

from hicatalog.config import TrainConfig
from hicatalog.errors import ConfigError, InputError
from hicatalog.models import ModelCard
from hicatalog.models.predict import censored_gaussian_nll, predict_views, regression_moments
from hicatalog.training.calibration import fit_calibration, fit_variance_scale
from hicatalog.training.data import select_rows
from hicatalog.training.loop import fit
from hicatalog.training.loop_config import LoopConfig
from hicatalog.training.metrics import epoch_regression_metrics
from hicatalog.training.options import check_task_options


def _censored_sample(n: int, seed: int):
    """y = 0.5 x - 0.2 + N(0, 0.3); a galaxy is detected when y lies above its own limit
    L ~ U(-0.8, 0.6), else only its limit is known: the low half of every x is hidden."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, n)
    y = 0.5 * x - 0.2 + rng.normal(0, 0.3, n)
    lim = rng.uniform(-0.8, 0.6, n)
    censored = y <= lim
    return x, y, np.where(censored, lim, y), censored


def _fit_line(x, value, censored, *, use_limits: bool):
    """Maximum-likelihood (a, b, sigma) of value = a + b x + N(0, sigma) by L-BFGS."""
    keep = np.ones(len(x), bool) if use_limits else ~censored
    xt, vt, ct = (torch.as_tensor(a[keep]) for a in (x, value, censored))
    p = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([p], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = censored_gaussian_nll(p[0] + p[1] * xt, torch.exp(2 * p[2]).expand_as(xt), vt, ct)
        loss.backward()
        return loss

    opt.step(closure)
    a, b, log_s = p.detach().numpy()
    return a, b, float(np.exp(log_s))


def test_censored_likelihood_recovers_a_known_line_that_detections_alone_bias():
    x, y, value, censored = _censored_sample(20000, 0)
    assert 0.3 < censored.mean() < 0.7  # a real share of limits
    a, b, s = _fit_line(x, value, censored, use_limits=True)
    assert a == pytest.approx(-0.2, abs=0.02) and b == pytest.approx(0.5, abs=0.03)
    assert s == pytest.approx(0.3, abs=0.015)
    a_det, b_det, s_det = _fit_line(x, value, censored, use_limits=False)
    assert a_det > -0.2 + 0.1 and s_det < 0.3 - 0.02  # detections alone: too gas-rich, too sure


def test_censored_nll_without_limits_is_the_gaussian_nll():
    mean, var, y = torch.tensor([0.1, -0.4]), torch.tensor([0.04, 0.25]), torch.tensor([0.3, -1.0])
    none = torch.zeros(2, dtype=torch.bool)
    expected = torch.nn.functional.gaussian_nll_loss(mean, y, var, full=True)
    assert censored_gaussian_nll(mean, var, y, none).item() == pytest.approx(expected.item(), rel=1e-6)
    # a limit far above the prediction costs nothing, one far below costs a lot
    one = torch.tensor([True, False])
    hi = censored_gaussian_nll(mean, var, torch.tensor([5.0, -1.0]), one).item()
    lo = censored_gaussian_nll(mean, var, torch.tensor([-5.0, -1.0]), one).item()
    assert hi == pytest.approx(torch.nn.functional.gaussian_nll_loss(
        mean[1:], y[1:], var[1:], full=True).item() / 2, abs=1e-6)
    assert lo > 100


def test_censored_variance_scale_recovers_a_known_miscalibration():
    """Predictions with the true mean and half the true sigma, on censored data: s2 ~ 4."""
    x, y, value, censored = _censored_sample(20000, 1)
    mean = 0.5 * x - 0.2
    target = np.stack([value, censored.astype(float)], axis=1)
    cal = fit_variance_scale(target, mean, np.full(len(x), 0.15))
    assert cal["variance_scale"] == pytest.approx(4.0, rel=0.06)
    assert cal["n_val_limits"] == int(censored.sum()) and cal["nll_after"] < cal["nll_before"]
    # the same data with the limits read as values: the scale comes out wrong
    assert fit_variance_scale(value, mean, np.full(len(x), 0.15))["variance_scale"] > 6.0


def test_epoch_metrics_score_detections_and_count_limits():
    target = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, 1.0], [-0.5, 1.0]])
    m = epoch_regression_metrics(target, np.array([0.0, 1.0, 0.0, 0.0]))
    assert m["n_val"] == 2 and m["rmse"] == pytest.approx(0.0)
    assert m["n_val_limits"] == 2 and m["limits_below"] == pytest.approx(0.5)


def _card(**kw) -> ModelCard:
    base = dict(model_id="cens", task="regression", arch="shallow", width=0.5, n_outputs=2,
                image_size=8, cutout_size=8, survey="sdss", head="gaussian",
                normalization={"mean": [0.5] * 3, "std": [0.3] * 3},
                hyperparameters={"likelihood": "censored"})
    base.update(kw)
    return ModelCard(**base)


def test_censored_network_learns_the_mean_below_the_limits():
    """Images whose red channel says x; M = 0.5 x - 0.2 + N(0, 0.3), limits as in
    _censored_sample. The censored network's mean prediction must follow the true line,
    where the same network trained on detections alone sits well above it."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    n, size = 1024, 8
    x, y, value, censored = _censored_sample(n, 2)
    img = torch.zeros(n, 3, size, size, dtype=torch.uint8)
    img[:, 0] = torch.as_tensor(np.round((x + 1) * 127.5)).to(torch.uint8)[:, None, None]
    target = torch.as_tensor(np.stack([value, censored], 1), dtype=torch.float32)

    def trained(card, rows, tgt):
        lc = LoopConfig(card=card, epochs=25, batch_size=64, max_lr=0.01, weight_decay=0.0,
                        seed=0, steps_per_epoch=len(rows) // 64)

        def batches(epoch):
            perm = rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(epoch))]
            for i in range(0, len(perm), 64):
                yield img[perm[i:i + 64]], tgt[perm[i:i + 64]]
        model, _ = fit(lc, batches, lambda: iter([(img[:64], tgt[:64])]))
        return regression_moments(predict_views(model, card, img), card)["mean"].numpy()

    all_rows = torch.arange(n)
    det_rows = torch.as_tensor(np.flatnonzero(~censored))
    cens = trained(_card(), all_rows, target)
    det = trained(_card(hyperparameters={"likelihood": "detections"}), det_rows, target[:, 0])
    truth = 0.5 * x - 0.2
    assert abs(float(np.mean(cens - truth))) < 0.07, float(np.mean(cens - truth))
    assert float(np.mean(det - truth)) > 0.1, float(np.mean(det - truth))


def test_censored_calibration_records_no_out_of_distribution_term():
    card = _card(hyperparameters={"likelihood": "censored"})
    outputs = np.zeros((4, 1, 8, 2), dtype=np.float32)  # mean 0, variance softplus(0)
    targets = np.array([[0.5, 0.0], [-0.5, 0.0], [1.0, 1.0], [-2.0, 1.0]])
    cal, _ = fit_calibration(card, outputs, targets, np.array([-1.0, 0.0, 1.0, 2.0]))
    assert cal["method"] == "variance_scale" and cal["n_val_limits"] == 2
    assert "ood_variance" not in cal


def _label_shards(tmp_path, n_det: int, n_lim: int, n_blank: int = 0) -> list[str]:
    n = n_det + n_lim + n_blank
    m = np.concatenate([np.linspace(-1, 1, n_det), np.linspace(-0.5, 0.5, n_lim),
                        np.full(n_blank, np.nan)]).astype(np.float32)
    table = pa.table({
        "object_id": [f"s-{i:05d}" for i in range(n)],
        "m_true": pa.array(m, from_pandas=True),
        "detected": [True] * n_det + [False] * (n_lim + n_blank),
        "upper_limit": [False] * n_det + [True] * n_lim + [False] * n_blank,
        "dataset": ["survey"] * n,
    })
    path = tmp_path / "part-00000.parquet"
    import pyarrow.parquet as pq
    pq.write_table(table, path)
    return [str(path)]


def test_censored_selection_takes_detections_and_limits_of_the_survey(tmp_path):
    files = _label_shards(tmp_path, 60, 30, n_blank=10)
    sel = select_rows(files, "regression", likelihood="censored", min_rows=20, min_class_rows=10)
    t = sel.table
    assert t.num_rows == 90 and sum(t["censored"].to_pylist()) == 30  # blank labels left out
    assert sel.summary["train_samples"] == ["survey"] and sel.summary["n_upper_limits"] == 30
    assert sel.summary["sample_counts"] == {"survey": {"rows": 60, "upper_limits": 30}}
    # detections only: the limits are not targets
    assert select_rows(files, "regression", min_rows=20).table.num_rows == 60
    # the PR network takes the survey's non-detections (limits or not) as its negatives:
    # 40 of them against 40 of the 60 detections
    pr = select_rows(files, "pr", min_class_rows=10)
    assert pr.summary["negatives"] == ["survey"] and pr.summary["n_class1"] == 40
    assert pr.table.num_rows == 80 and pr.summary["n_upper_limits_excluded"] == 0


def test_censored_selection_refuses_too_few_limits_or_detections_in_one_line(tmp_path):
    files = _label_shards(tmp_path, 60, 5)
    with pytest.raises(InputError, match=r"5 upper limits .* fewer than min_class_rows=10") as e:
        select_rows(files, "regression", likelihood="censored", min_rows=20, min_class_rows=10)
    assert "\n" not in str(e.value)
    with pytest.raises(InputError, match=r"60 detections .* fewer than min_rows=100"):
        select_rows(files, "regression", likelihood="censored", min_rows=100, min_class_rows=5)


def test_censored_likelihood_needs_the_gaussian_regression_head():
    with pytest.raises(ValueError, match="gaussian head"):  # pydantic wraps the ConfigError
        TrainConfig(task="regression", data=["d"], out="o", likelihood="censored")
    with pytest.raises(ConfigError, match="gaussian head"):
        check_task_options("pr", head="point", likelihood="censored")
    with pytest.raises(ValueError, match="gaussian head"):
        TrainConfig(task="pr", data=["d"], out="o", likelihood="censored")
    TrainConfig(task="regression", data=["d"], out="o", likelihood="censored", head="gaussian")


def test_blob_shards_can_carry_limits(tmp_path):
    """The Ray test below trains on blob shards whose low-M rows are upper limits."""
    paths = make_blob_shards(str(tmp_path), 40, seed=3, size=16, rows_per_shard=40,
                             extra_columns={"upper_limit": np.arange(40) % 3 == 0})
    sel = select_rows(paths, "regression", likelihood="censored", min_rows=5, min_class_rows=5)
    assert sum(sel.table["censored"].to_pylist()) == 14
