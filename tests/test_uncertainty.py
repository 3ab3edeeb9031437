"""Per-galaxy uncertainties: the Gaussian head, deep ensembles, and the calibration fitted on
the validation split (issue 13).

Expected values are worked out by hand or from the known noise of synthetic problems, never by
the code under test.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from imagefixtures import make_blob_shards

from hicatalog.config import TrainConfig
from hicatalog.models import ModelCard, build_model, load_model, predict_views, save_model
from hicatalog.models.ensemble import Ensemble
from hicatalog.models.predict import (
    MIN_VARIANCE,
    catalog_error,
    gaussian_variance,
    positive_probability,
    regression_moments,
)
from hicatalog.training.calibration import fit_calibration, fit_temperature, fit_variance_scale
from hicatalog.training.loop import fit
from hicatalog.training.loop_config import LoopConfig


def _card(**kw) -> ModelCard:
    base = dict(model_id="t", task="regression", arch="xresnet18", width=0.125, n_outputs=1,
                image_size=16, cutout_size=16, survey="sdss",
                normalization={"mean": [0.5] * 3, "std": [0.25] * 3})
    base.update(kw)
    return ModelCard(**base)


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


# --- the reductions, by hand --------------------------------------------------------------------

def test_regression_moments_of_a_gaussian_ensemble_by_hand():
    # one galaxy, K=2 members, V=2 views, outputs (mu, raw)
    out = torch.tensor([[[[1.0, 0.0], [3.0, 1.0]], [[0.0, -1.0], [0.0, 2.0]]]])
    card = _card(head="gaussian", n_outputs=2, ensemble_size=2)
    mom = regression_moments(out, card)
    mu = [2.0, 0.0]  # members' means over views
    var = [(_softplus(0) + _softplus(1)) / 2 + MIN_VARIANCE, (_softplus(-1) + _softplus(2)) / 2 + MIN_VARIANCE]
    total = (var[0] + var[1]) / 2 + float(np.var(mu))  # mean variance + variance of the means (1)
    assert mom["mean"].item() == pytest.approx(1.0)
    assert mom["std"].item() == pytest.approx(math.sqrt(total), rel=1e-5)
    # the views of the members' mean: (0.5, 1.5) -> std 0.5
    assert mom["view_std"].item() == pytest.approx(0.5)
    scaled = dataclasses.replace(card, calibration={"method": "variance_scale", "variance_scale": 4.0})
    assert regression_moments(out, scaled)["std"].item() == pytest.approx(2 * math.sqrt(total), rel=1e-5)


def test_a_single_point_network_has_no_error_bar_and_a_point_ensemble_has_its_spread():
    single = torch.tensor([[[[1.0], [2.0]]]])  # K=1, V=2
    mom = regression_moments(single, _card())
    assert mom["mean"].item() == pytest.approx(1.5) and math.isnan(mom["std"].item())
    pair = torch.tensor([[[[1.0]], [[2.0]]]])  # K=2, V=1: members 1 and 2
    mom = regression_moments(pair, _card(ensemble_size=2))
    assert mom["std"].item() == pytest.approx(0.5) and math.isnan(mom["view_std"].item())


def test_gaussian_variance_is_positive_and_finite_for_any_raw_value():
    v = gaussian_variance(torch.tensor([-1e4, -10.0, 0.0, 10.0, 1e4]))
    assert torch.all(v >= MIN_VARIANCE) and torch.all(torch.isfinite(v))
    assert v[2].item() == pytest.approx(math.log(2) + MIN_VARIANCE)
    assert v[4].item() == pytest.approx(1e4)  # linear, not exponential, for large values


def test_temperature_divides_the_logits_before_the_softmax():
    logits = torch.tensor([[[[0.0, 2.0]], [[1.0, 0.0]]]])  # N=1, K=2, V=1
    card = _card(task="pr", n_outputs=2, ensemble_size=2,
                 calibration={"method": "temperature", "temperature": 2.0})
    expected = (1 / (1 + math.exp(-1.0)) + 1 / (1 + math.exp(0.5))) / 2
    assert positive_probability(logits, card).item() == pytest.approx(expected, rel=1e-6)


def test_card_refuses_inconsistent_uncertainty_fields():
    with pytest.raises(ValueError, match="'gaussian' head has 2 output"):
        _card(head="gaussian", n_outputs=1)
    with pytest.raises(ValueError, match="'point' head"):
        _card(task="pr", n_outputs=2, head="gaussian")
    with pytest.raises(ValueError, match="member_seeds"):
        _card(ensemble_size=3, member_seeds=[0, 1])
    with pytest.raises(ValueError, match="calibration"):
        _card(calibration={"method": "temperature", "temperature": 1.5})  # not for regression
    with pytest.raises(ValueError, match="calibration"):
        _card(task="pr", n_outputs=2, calibration={"method": "temperature", "temperature": 0})


def test_catalog_error_adds_the_out_of_distribution_variance_by_hand():
    card = _card(head="gaussian", n_outputs=2,
                 calibration={"method": "variance_scale", "variance_scale": 1.0, "ood_variance": 0.36})
    std, p = np.array([0.2, 0.2, np.nan]), np.array([1.0, 0.75, 0.5])
    got = catalog_error(std, p, card)  # sqrt(0.04 + 0.25 * 0.36) = sqrt(0.13)
    np.testing.assert_allclose(got[:2], [0.2, math.sqrt(0.13)], rtol=1e-12)
    assert math.isnan(got[2])  # no error bar stays none
    t = catalog_error(torch.tensor([0.2]), torch.tensor([0.0]), card)  # sqrt(0.04 + 0.36)
    assert isinstance(t, torch.Tensor) and t.item() == pytest.approx(math.sqrt(0.40), rel=1e-6)
    plain = dataclasses.replace(card, calibration={"method": "variance_scale", "variance_scale": 1.0})
    assert catalog_error(std, p, plain)[1] == pytest.approx(0.2)  # a card written before ood_variance
    with pytest.raises(ValueError, match="ood_variance"):
        _card(task="pr", n_outputs=2, calibration={"method": "temperature", "temperature": 1.0,
                                                    "ood_variance": 0.1})
    with pytest.raises(ValueError, match="ood_variance"):
        dataclasses.replace(card, calibration={"method": "variance_scale", "variance_scale": 1.0,
                                               "ood_variance": 0.0})


# --- ensembles as one model ---------------------------------------------------------------------

def test_ensemble_members_see_the_same_batch_and_round_trip_through_one_weights_file(tmp_path):
    torch.manual_seed(0)
    card = _card(task="pr", n_outputs=2, ensemble_size=3, member_seeds=[0, 1, 2])
    model = build_model(card)
    assert isinstance(model, Ensemble) and len(model.members) == 3
    imgs = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    views = predict_views(model, card, imgs)
    assert views.shape == (4, 3, 8, 2)
    single_card = _card(task="pr", n_outputs=2)
    for k, member in enumerate(model.members):  # member k alone gives slice k
        alone = predict_views(member, single_card, imgs)[:, 0]
        torch.testing.assert_close(views[:, k], alone)
    assert not torch.allclose(views[:, 0], views[:, 1])  # differently initialised members differ
    saved = save_model(tmp_path / "ens", model, card)
    assert [p.name for p in (tmp_path / "ens").iterdir()] != [] and (tmp_path / "ens" / "weights.pt").is_file()
    loaded, lcard = load_model(tmp_path / "ens")
    assert lcard.ensemble_size == 3 and lcard.weights_sha256 == saved.weights_sha256
    torch.testing.assert_close(predict_views(loaded, lcard, imgs), views)


# --- calibration fits ---------------------------------------------------------------------------

def test_variance_scale_recovers_a_known_miscalibration():
    rng = np.random.default_rng(1)
    n = 20000
    true_sigma = rng.uniform(0.1, 0.5, n)
    m_pred = rng.normal(0, 1, n)
    m_true = m_pred + rng.normal(0, true_sigma)
    cal = fit_variance_scale(m_true, m_pred, true_sigma / 2)  # error bars half the truth
    assert cal["variance_scale"] == pytest.approx(4.0, rel=0.05)
    assert cal["nll_after"] < cal["nll_before"] and cal["n_val"] == n
    assert fit_variance_scale(m_true, m_pred, np.full(n, np.nan)) == {}  # nothing to calibrate


def test_regression_calibration_records_the_training_sample_variance():
    """ood_variance = var(M) of the training rows (ddof 0): 1.25 for M = -1, 0, 1, 2; the
    variance scale is fitted on the validation rows alone, with or without it."""
    card = _card(ensemble_size=2)
    outputs = np.array([[[[0.0]] * 8, [[1.0]] * 8]] * 4, dtype=np.float32)  # mean 0.5, std 0.5
    targets = np.array([0.5, 1.0, 0.0, 0.5])  # z = 0, 1, -1, 0: s2 = 0.5
    cal, pred = fit_calibration(card, outputs, targets, np.array([-1.0, 0.0, 1.0, 2.0]))
    assert cal["ood_variance"] == pytest.approx(1.25) and cal["variance_scale"] == pytest.approx(0.5)
    np.testing.assert_allclose(pred, 0.5)
    assert "ood_variance" not in fit_calibration(card, outputs, targets)[0]
    ModelCard.from_dict({**card.to_dict(), "calibration": cal}, source="test")  # a valid card


def test_temperature_recovers_a_known_overconfidence():
    # true p(detection) = sigmoid(s); the network reports logits 3 s: T should come out ~3
    rng = np.random.default_rng(2)
    n = 20000
    s = rng.normal(0, 1.5, n)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-s))).astype(int)
    logits = np.stack([np.zeros(n), 3 * s], axis=1)[:, None, None, :]  # (N, 1, 1, 2)
    cal = fit_temperature(logits, y)  # class index = label (positive class at index 1)
    assert cal["temperature"] == pytest.approx(3.0, rel=0.1)
    assert cal["nll_after"] < cal["nll_before"]


# --- the Gaussian head learns the noise ----------------------------------------------------------

def test_gaussian_head_recovers_known_heteroscedastic_noise():
    """Images whose red channel says M and whose green channel says the noise level (0.05 or
    0.4 dex): the predicted standard deviation must come out near each group's true noise."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    n, size = 768, 8
    level = torch.randint(0, 256, (n,), generator=g)
    noisy = torch.rand(n, generator=g) < 0.5
    sigma = torch.where(noisy, 0.4, 0.05)
    x = torch.zeros(n, 3, size, size, dtype=torch.uint8)
    x[:, 0] = level[:, None, None].to(torch.uint8)
    x[:, 1] = torch.where(noisy, 230, 25).to(torch.uint8)[:, None, None]
    y = level.float() / 128.0 - 1.0 + sigma * torch.randn(n, generator=g)
    card = ModelCard(model_id="het", task="regression", arch="shallow", width=0.5, n_outputs=2,
                     image_size=size, cutout_size=size, survey="sdss", head="gaussian",
                     normalization={"mean": [0.5] * 3, "std": [0.3] * 3})
    lc = LoopConfig(card=card, epochs=30, batch_size=64, max_lr=0.01, weight_decay=0.0,
                    seed=0, steps_per_epoch=n // 64)

    def train_batches(epoch):
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(epoch))
        for i in range(0, n, 64):
            yield x[perm[i:i + 64]], y[perm[i:i + 64]]

    model, history = fit(lc, train_batches, lambda: iter([(x[:128], y[:128])]))
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    std = regression_moments(predict_views(model, card, x), card)["std"]
    quiet, loud = std[~noisy].median().item(), std[noisy].median().item()
    assert loud == pytest.approx(0.4, rel=0.35), (quiet, loud)
    assert quiet < 0.15 and loud > 2.5 * quiet, (quiet, loud)


# --- training an ensemble on Ray -----------------------------------------------------------------

@pytest.fixture(scope="module")
def blobs(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("blobs")
    # every fourth row's m_true is an upper limit: the censored likelihood trains on them too
    return str(Path(make_blob_shards(str(out), 300, seed=5, size=32, rows_per_shard=150,
                                     extra_columns={"upper_limit": np.arange(300) % 4 == 0}
                                     )[0]).parent)


@pytest.mark.slow
def test_ensemble_trains_members_with_their_own_seeds_and_member_0_is_the_single_network(
        ray_local, blobs, tmp_path):
    """--ensemble 2 with the Gaussian head and the censored likelihood (the one Ray Train test
    of an ensemble, and of training on upper limits): two members with seeds 0 and 1, trained
    concurrently, in one model directory with one card, different weights, a calibration
    fitted on the validation split's detections and limits. Then the same command without
    --ensemble finds member 0's finished run and trains nothing."""
    from hicatalog.training.trainer import member_seeds, planned_model_id, train

    out = tmp_path / "ens"
    cfg = TrainConfig(task="regression", data=[blobs], out=str(out), ensemble=2, head="gaussian",
                      likelihood="censored", arch="shallow", width=0.25, image_size=16, epochs=2, batch_size=32,
                      storage_path=str(tmp_path / "ray"))
    assert member_seeds(cfg) == [0, 1]
    res = train(**cfg.fields())
    card = res["card"]
    assert card["ensemble_size"] == 2 and card["member_seeds"] == [0, 1] and card["head"] == "gaussian"
    assert card["model_id"] == planned_model_id(**cfg.fields()) and card["model_id"].endswith("-x2")
    assert res["resumed_after_epochs"] == [[], []] and len(res["run_path"]) == 2
    assert [m["seed"] for m in card["metrics"]["members"]] == [0, 1]
    assert [m["resumed_after_epochs"] for m in card["metrics"]["members"]] == [[], []]
    assert card["calibration"]["method"] == "variance_scale" and card["calibration"]["variance_scale"] > 0
    assert card["calibration"]["n_val"] == res["n_val"]
    n_limits = card["metrics"]["selection"]["n_val_upper_limits"]
    assert card["hyperparameters"]["loss"] == "censored_gaussian_nll" and n_limits > 0
    assert card["calibration"]["n_val_limits"] == n_limits and "ood_variance" not in card["calibration"]
    assert card["metrics"]["n_val_limits"] == n_limits and 0 <= card["metrics"]["limits_below"] <= 1
    rows = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert sorted((r["member"], r["epoch"]) for r in rows) == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert sorted(p.name for p in out.glob("metrics*")) == ["metrics.jsonl"]  # live files merged
    model, lcard = load_model(out)
    assert isinstance(model, Ensemble)
    a, b = (dict(m.named_parameters()) for m in model.members)
    assert any(not torch.equal(a[k], b[k]) for k in a)  # the members differ
    # member 0 is the single network the same command trains without --ensemble: that command
    # finds member 0's finished run and trains nothing (the same history, to the epoch times)
    one = train(**{**cfg.fields(), "ensemble": 1, "out": str(tmp_path / "one")})
    assert one["history"] == [{k: v for k, v in r.items() if k != "member"}
                              for r in res["history"] if r["member"] == 0]
    assert one["card"]["member_seeds"] is None and one["resumed_after_epochs"] == []
    m0 = dict(model.members[0].state_dict())
    s0 = load_model(one["model_dir"])[0].state_dict()
    assert all(torch.equal(m0[k], s0[k]) for k in s0)
    assert one["card"]["calibration"]["n_val_limits"] == n_limits  # the single network's too
