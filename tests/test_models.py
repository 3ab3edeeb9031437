"""Models: xresnet layout, shallow CNN, dihedral group and TTA, optimizer, model card."""

from __future__ import annotations

import copy
import itertools
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from hicatalog.models import (
    Lookahead,
    ModelCard,
    average_views,
    build_model,
    build_optimizer,
    class_probabilities,
    compute_normalization,
    dihedral,
    load_model,
    one_cycle,
    param_groups,
    positive_probability,
    predict_views,
    preprocess,
    random_dihedral,
    save_model,
    shallow_cnn,
    tta_predict,
    xresnet18,
    xresnet34,
    xresnet50,
)
from hicatalog.models.xresnet import SimpleSelfAttention


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# --- architecture -----------------------------------------------------------------------------

def test_xresnet34_parameter_count_matches_fastai():
    assert n_params(xresnet34(1)) == 21_308_514
    assert n_params(xresnet34(2)) == 21_309_027


def test_xresnet34_layout():
    m = xresnet34(1)
    sa = [mod for mod in m.modules() if isinstance(mod, SimpleSelfAttention)]
    assert len(sa) == 1  # last block of the first stage only (fastai)
    assert m[4][-1].convpath[-1] is sa[0]
    assert sum(isinstance(mod, nn.Mish) for mod in m.modules()) > 30
    assert not any(isinstance(mod, nn.ReLU) for mod in m.modules())
    # every block starts as the identity: last BatchNorm of each conv path is zero
    for stage in list(m)[4:8]:
        for block in stage:
            assert torch.all(block.convpath[1][1].weight == 0)
    # stride-2 blocks pool the identity path before the 1x1 conv
    assert isinstance(m[5][0].idpath[0], nn.AvgPool2d)


@pytest.mark.parametrize(
    "factory,width,size", [(xresnet18, 0.25, 64), (xresnet34, 0.25, 48), (xresnet50, 0.125, 64)]
)
def test_xresnet_output_shapes(factory, width, size):
    for n_out in (1, 2):
        m = factory(n_out, width=width).eval()
        with torch.no_grad():
            out = m(torch.randn(3, 3, size, size))
        assert out.shape == (3, n_out)
        assert torch.isfinite(out).all()


def test_xresnet_single_band_and_width_shrink():
    small = xresnet18(1, width=0.25, in_channels=1)
    assert small[0][0].in_channels == 1
    assert n_params(small) < n_params(xresnet18(1)) / 8
    with pytest.raises(ValueError, match="width"):
        xresnet18(1, width=0.0)


def test_shallow_cnn_final_map_is_56_at_224():
    m = shallow_cnn(2).eval()
    seen = {}

    def hook(_mod, _inp, out):
        seen["shape"] = tuple(out.shape)

    m.get_submodule(m.cam_layer_name).register_forward_hook(hook)
    with torch.no_grad():
        out = m(torch.randn(2, 3, 224, 224))
    assert out.shape == (2, 2)
    assert seen["shape"] == (2, 128, 56, 56)
    assert m.cam_layer is m[5]


# --- dihedral group and TTA ---------------------------------------------------------------------

def test_dihedral_elements_distinct_and_form_a_group():
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).reshape(2, 3, 5, 5)
    views = [dihedral(x, k) for k in range(8)]
    for a, b in itertools.combinations(range(8), 2):
        assert not torch.equal(views[a], views[b]), (a, b)
    assert torch.equal(views[0], x)
    for a, b in itertools.product(range(8), repeat=2):
        composed = dihedral(dihedral(x, a), b)
        matches = [c for c in range(8) if torch.equal(composed, views[c])]
        assert len(matches) == 1, (a, b)  # closure
    for a in range(8):  # every element has an inverse
        assert any(torch.equal(dihedral(dihedral(x, a), b), x) for b in range(8))
    with pytest.raises(ValueError, match="0..7"):
        dihedral(x, 8)


def test_random_dihedral_is_per_sample_and_seeded():
    x = torch.randn(64, 3, 6, 6)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    a, b = random_dihedral(x, g1), random_dihedral(x, g2)
    assert torch.equal(a, b)
    ks = torch.randint(0, 8, (64,), generator=torch.Generator().manual_seed(1))
    for i in range(64):
        assert torch.equal(a[i], dihedral(x[i : i + 1], int(ks[i]))[0])
    assert len(set(ks.tolist())) > 1


def test_tta_of_symmetric_image_equals_single_prediction():
    torch.manual_seed(0)
    m = xresnet18(2, width=0.25).train()
    base = torch.randn(2, 3, 32, 32)
    sym = torch.stack([dihedral(base, k) for k in range(8)]).mean(0)
    out = tta_predict(m, sym)
    assert out.shape == (2, 8, 2)
    assert m.training  # mode restored
    m.eval()
    with torch.no_grad():
        single = m(sym)
    torch.testing.assert_close(out, single[:, None, :].expand(-1, 8, -1), rtol=1e-4, atol=1e-5)
    # and a non-symmetric image gives different views
    other = tta_predict(m, base)
    assert (other.std(dim=1) > 0).any()


def test_tta_one_batch_equals_eight_forwards_in_either_memory_format():
    torch.manual_seed(1)
    m = xresnet18(1, width=0.25).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        by_view = torch.stack([m(dihedral(x, k)) for k in range(8)], dim=1)  # (3, 8, 1)
    torch.testing.assert_close(tta_predict(m, x), by_view, rtol=1e-4, atol=1e-5)
    cl = m.to(memory_format=torch.channels_last)
    xc = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(tta_predict(cl, xc), by_view, rtol=1e-4, atol=1e-5)


def test_bf16_prediction_is_close_to_fp32():
    torch.manual_seed(0)
    card = _card(task="regression", n_outputs=1, image_size=16, cutout_size=16)
    model = build_model(card).eval()
    imgs = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    fp32 = predict_views(model, card, imgs)
    bf16 = predict_views(model.to(memory_format=torch.channels_last), card, imgs, bf16=True)
    assert bf16.dtype == torch.float32 and bf16.shape == fp32.shape == (4, 1, 8, 1)
    assert not torch.equal(bf16, fp32)  # it did run in bf16
    torch.testing.assert_close(bf16, fp32, rtol=0.05, atol=0.05)


# --- optimizer --------------------------------------------------------------------------------

def test_lookahead_matches_hand_computation():
    # loss = w^2/2, SGD lr 0.1: each fast step multiplies w by 0.9
    w = nn.Parameter(torch.tensor([1.0]))
    opt = Lookahead(torch.optim.SGD([w], lr=0.1), k=2, alpha=0.5)
    expected = [0.9, 0.905, 0.905 * 0.9, 0.905 + 0.5 * (0.905 * 0.81 - 0.905)]
    for want in expected:
        opt.zero_grad()
        (0.5 * w**2).sum().backward()
        opt.step()
        assert w.item() == pytest.approx(want, rel=1e-6)


def test_lookahead_state_roundtrip_and_scheduler_drives_inner_lr():
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = build_optimizer(model, lr=0.01, weight_decay=0.01)
    sched = one_cycle(opt, max_lr=0.01, total_steps=20)
    assert opt.optimizer.param_groups[0]["lr"] == pytest.approx(0.01 / 25)
    x, y = torch.randn(16, 4), torch.randn(16, 1)

    def run(n, o, s):
        for _ in range(n):
            o.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            o.step()
            s.step()

    run(5, opt, sched)
    assert opt.optimizer.param_groups[0]["lr"] > 0.01 / 25
    state = {k: v.clone() for k, v in model.state_dict().items()}
    saved_opt, saved_sched = copy.deepcopy(opt.state_dict()), sched.state_dict()
    run(7, opt, sched)
    after = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    opt2 = build_optimizer(model, lr=0.01, weight_decay=0.01)
    sched2 = one_cycle(opt2, max_lr=0.01, total_steps=20)
    opt2.load_state_dict(saved_opt)
    sched2.load_state_dict(saved_sched)
    run(7, opt2, sched2)
    for k in after:
        torch.testing.assert_close(model.state_dict()[k], after[k], rtol=0, atol=0)


def test_param_groups_no_decay_on_batchnorm_and_bias():
    m = xresnet18(1, width=0.25)
    groups = param_groups(m, 0.01)
    decay_ids = {id(p) for p in groups[0]["params"]}
    no_decay_ids = {id(p) for p in groups[1]["params"]}
    assert groups[0]["weight_decay"] == 0.01 and groups[1]["weight_decay"] == 0.0
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            assert id(mod.weight) in no_decay_ids and id(mod.bias) in no_decay_ids
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            assert id(mod.weight) in decay_ids
        if isinstance(mod, nn.Linear):
            assert id(mod.bias) in no_decay_ids
    assert len(decay_ids) + len(no_decay_ids) == len(list(m.parameters()))
    opt = build_optimizer(m, lr=0.01, weight_decay=0.01)
    assert opt.optimizer.defaults["decoupled_weight_decay"] is True


# --- model card -------------------------------------------------------------------------------

def _card(**kw) -> ModelCard:
    base = dict(
        model_id="test-reg", task="regression", arch="xresnet18", width=0.25, n_outputs=1,
        image_size=32, cutout_size=64, survey="sdss",
        normalization={"mean": [0.1, 0.2, 0.3], "std": [0.2, 0.2, 0.25]},
        hyperparameters={"epochs": 1}, metrics={"rmse": 0.5},
    )
    base.update(kw)
    return ModelCard(**base)


def test_save_and_load_model_roundtrip(tmp_path):
    torch.manual_seed(0)
    m = xresnet18(1, width=0.25)
    card = save_model(tmp_path / "m", m, _card())
    assert len(card.weights_sha256) == 64 and card.created
    loaded, card2 = load_model(tmp_path / "m")
    assert card2 == card
    assert not loaded.training
    x = torch.randn(2, 3, 32, 32)
    m.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), m(x))
    on_disk = json.loads((tmp_path / "m" / "model_card.json").read_text())
    assert on_disk["arch"] == "xresnet18" and on_disk["normalization"]["std"][2] == 0.25
    # the weights file is a plain state_dict
    sd = torch.load(tmp_path / "m" / "weights.pt", weights_only=True)
    assert set(sd) == set(m.state_dict())


def test_load_model_errors_name_the_file(tmp_path):
    m = xresnet18(2, width=0.25)
    save_model(tmp_path / "m", m, _card(task="pr", n_outputs=2))
    weights = tmp_path / "m" / "weights.pt"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"weights\.pt.*SHA-256"):
        load_model(tmp_path / "m")
    weights.write_bytes(b"not a torch file")
    card = json.loads((tmp_path / "m" / "model_card.json").read_text())
    card["weights_sha256"] = ""
    (tmp_path / "m" / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match=r"weights\.pt: cannot read weights"):
        load_model(tmp_path / "m")
    weights.unlink()
    with pytest.raises(ValueError, match=r"weights\.pt: weights file not found"):
        load_model(tmp_path / "m")
    with pytest.raises(ValueError, match=r"model_card\.json: model card not found"):
        load_model(tmp_path / "nothing")
    (tmp_path / "m" / "model_card.json").write_text("{broken")
    with pytest.raises(ValueError, match=r"model_card\.json: model card is not valid JSON"):
        load_model(tmp_path / "m")


def test_card_classes_and_validation():
    assert _card(task="pr", n_outputs=2).classes == ["nondetection", "detection"]
    with pytest.raises(ValueError, match="normalization"):
        _card(normalization={"mean": [0.1], "std": [1.0]})
    with pytest.raises(ValueError, match="arch"):
        _card(arch="resnet9")


def test_preprocess_normalises_and_resizes():
    card = _card()
    imgs = np.full((2, 3, 64, 64), 51, dtype=np.uint8)  # 0.2 on the 0-1 scale
    out = preprocess(imgs, card)
    assert out.shape == (2, 3, 32, 32) and out.dtype == torch.float32
    expected = (0.2 - np.array([0.1, 0.2, 0.3])) / np.array([0.2, 0.2, 0.25])
    torch.testing.assert_close(out[0, :, 5, 5], torch.tensor(expected, dtype=torch.float32))
    same = preprocess(torch.full((1, 3, 32, 32), 51, dtype=torch.uint8), card)
    assert same.shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="uint8"):
        preprocess(np.zeros((1, 3, 32, 32), dtype=np.float32), card)
    norm = compute_normalization(np.stack([imgs[0], np.zeros_like(imgs[0])]))
    assert norm["mean"] == pytest.approx([0.1] * 3)


def test_card_dict_roundtrip_and_unknown_keys():
    card = _card(task="gasclass", arch="shallow", n_outputs=2)
    assert ModelCard.from_dict(card.to_dict()) == card
    assert json.loads(card.to_json()) == card.to_dict()
    with pytest.raises(ValueError, match=r"here: unknown model card keys \['colour'\]"):
        ModelCard.from_dict({**card.to_dict(), "colour": 1}, source="here")


def test_positive_class_comes_from_the_task():
    pr, gas = _card(task="pr", n_outputs=2), _card(task="gasclass", n_outputs=2)
    assert (pr.positive_class, pr.positive_index) == ("detection", 1)
    assert (gas.positive_class, gas.positive_index) == ("gas_rich", 1)
    # the index follows the card's class order, not a fixed column
    flipped = _card(task="pr", n_outputs=2, classes=["detection", "nondetection"])
    assert flipped.positive_index == 0
    with pytest.raises(ValueError, match="not a classifier"):
        _ = _card().positive_index
    with pytest.raises(ValueError, match="including 'detection'"):
        _card(task="pr", n_outputs=2, classes=["no", "yes"])
    with pytest.raises(ValueError, match="one class per output"):
        _card(task="gasclass", n_outputs=3)
    with pytest.raises(ValueError, match="1 output"):
        _card(n_outputs=2)


def test_positive_probability_by_hand():
    # (N=2, K=1, V=2, 2 classes); p(class 1) of one view = 1 / (1 + exp(l0 - l1))
    logits = torch.tensor([[[0.0, 1.0], [2.0, 0.0]], [[3.0, 3.0], [-1.0, 1.0]]])[:, None]

    def p1(l0, l1):
        return 1.0 / (1.0 + math.exp(l0 - l1))

    expected = torch.tensor([(p1(0, 1) + p1(2, 0)) / 2, (p1(3, 3) + p1(-1, 1)) / 2])
    pr = _card(task="pr", n_outputs=2)
    torch.testing.assert_close(positive_probability(logits, pr), expected)
    torch.testing.assert_close(average_views(logits, pr), expected)
    flipped = _card(task="pr", n_outputs=2, classes=["detection", "nondetection"])
    torch.testing.assert_close(positive_probability(logits, flipped), 1 - expected)
    torch.testing.assert_close(class_probabilities(logits), torch.stack([1 - expected, expected], 1))
    with pytest.raises(ValueError, match="not a classifier"):
        positive_probability(logits, _card())
    # regression: the mean over the views of the one output (dex)
    views = torch.tensor([[[1.0], [2.0], [4.0]], [[-1.0], [-1.0], [0.5]]])[:, None]
    torch.testing.assert_close(average_views(views, _card()), torch.tensor([7 / 3, -0.5]))


def test_predict_views_normalises_as_the_card_says():
    torch.manual_seed(0)
    card = _card(task="pr", n_outputs=2, image_size=16, cutout_size=16)
    model = build_model(card).eval()
    imgs = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)
    mean = torch.tensor([0.1, 0.2, 0.3])[:, None, None]
    std = torch.tensor([0.2, 0.2, 0.25])[:, None, None]
    x = (imgs.float() / 255 - mean) / std
    with torch.no_grad():
        ref = model(x)
        ref_flip = model(torch.flip(x, dims=(-1,)))  # D4 element 4: a left-right flip
    one = predict_views(model, card, imgs, tta=False)
    assert one.shape == (3, 1, 1, 2) and one.dtype == torch.float32
    torch.testing.assert_close(one[:, 0, 0], ref, rtol=1e-4, atol=1e-5)
    eight = predict_views(model, card, imgs.numpy(), tta=True)
    assert eight.shape == (3, 1, 8, 2)
    torch.testing.assert_close(eight[:, 0, 0], ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(eight[:, 0, 4], ref_flip, rtol=1e-4, atol=1e-5)
