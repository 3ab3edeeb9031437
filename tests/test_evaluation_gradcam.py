"""Grad-CAM: shape, class response, and the single-band conversion."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from imagefixtures import encode_jpeg
from PIL import Image
from torch import nn
from torch.nn import functional as F

from hicatalog.cutouts.shards import write_shard
from hicatalog.evaluation.gradcam import grad_cam, single_band, write_single_band_shards
from hicatalog.models.shallow import shallow_cnn


class TwoColourNet(nn.Module):
    """Class 0 = total red light, class 1 = total blue light, through a strided 1x1 conv whose
    channel 0 sees only red and channel 1 only blue (so each class lives in one channel)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, kernel_size=1, stride=4, bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0] = 1.0  # red
            self.conv.weight[1, 2] = 1.0  # blue
        self.pool = nn.AdaptiveAvgPool2d(1)

    @property
    def cam_layer(self):
        return self.conv

    def forward(self, x):
        return self.pool(self.conv(x)).flatten(1)


def _blob_image(s=64):
    yy, xx = np.mgrid[:s, :s]
    img = np.zeros((3, s, s), np.float32)
    img[0] = np.exp(-((yy - 12) ** 2 + (xx - 14) ** 2) / (2 * 3.0**2))  # red, top-left
    img[2] = np.exp(-((yy - 50) ** 2 + (xx - 46) ** 2) / (2 * 3.0**2))  # blue, bottom-right
    return torch.from_numpy(img)[None]


def test_grad_cam_has_input_size_and_follows_the_class():
    model = TwoColourNet()
    x = _blob_image()
    red = grad_cam(model, x, 0)
    blue = grad_cam(model, x, 1)
    assert red.shape == (1, 64, 64) and blue.shape == (1, 64, 64)
    assert float(red.max()) == pytest.approx(1.0) and float(red.min()) >= 0.0
    pr = np.unravel_index(int(red[0].argmax()), (64, 64))
    pb = np.unravel_index(int(blue[0].argmax()), (64, 64))
    assert abs(pr[0] - 12) <= 4 and abs(pr[1] - 14) <= 4, pr
    assert abs(pb[0] - 50) <= 4 and abs(pb[1] - 46) <= 4, pb
    # the class-0 map is dark where class 1 lives and vice versa
    assert float(red[0, 46:54, 42:50].max()) < 0.05
    assert float(blue[0, 8:16, 10:18].max()) < 0.05
    # a per-image target tensor gives the same maps
    both = grad_cam(model, torch.cat([x, x]), torch.tensor([0, 1]))
    assert torch.allclose(both[0], red[0]) and torch.allclose(both[1], blue[0])


def test_grad_cam_on_the_shallow_cnn():
    torch.manual_seed(0)
    model = shallow_cnn(2, width=0.25)
    x = torch.randn(2, 3, 48, 48)
    # reference: Grad-CAM written out (Selvaraju et al. 2017) with torch.autograd.grad on the
    # last feature map, in eval mode: ReLU of the gradient-weighted channel sum, bilinear to the
    # input size, each map divided by its peak
    seen = {}
    hook = model.cam_layer.register_forward_hook(lambda _m, _i, out: seen.setdefault("act", out))
    model.eval()
    (grad,) = torch.autograd.grad(model(x)[:, 1].sum(), seen["act"])
    hook.remove()
    model.train()
    ref = F.relu((grad.mean(dim=(2, 3), keepdim=True) * seen["act"]).sum(dim=1, keepdim=True))
    ref = F.interpolate(ref.detach(), size=(48, 48), mode="bilinear", align_corners=False)[:, 0]
    assert (ref.amax(dim=(1, 2)) > 0).all()
    ref = ref / ref.amax(dim=(1, 2), keepdim=True)
    cam = grad_cam(model, x, 1)
    assert cam.shape == (2, 48, 48)
    torch.testing.assert_close(cam, ref, rtol=1e-4, atol=1e-5)
    assert model.training  # mode restored
    with pytest.raises(ValueError, match="cam_layer"):
        grad_cam(nn.Sequential(nn.Flatten(), nn.Linear(3 * 48 * 48, 2)), x, 0)


def test_single_band_and_shards(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)
    mono = single_band(imgs)
    assert mono.shape == imgs.shape and mono.dtype == np.uint8
    assert np.array_equal(mono[:, 0], mono[:, 2])
    assert np.abs(mono[:, 0].astype(int) - imgs.astype(float).mean(axis=1)).max() <= 0.5

    table = pa.table({
        "object_id": ["a", "b", "c"], "ra": [0.0, 1.0, 2.0], "dec": [0.0, 0.0, 0.0],
        "z": [0.01, 0.02, 0.03], "survey": ["sdss"] * 3,
        "image": pa.array([encode_jpeg(imgs[0].transpose(1, 2, 0)), b"not a jpeg",
                           encode_jpeg(imgs[2].transpose(1, 2, 0))], pa.binary()),
        "m_true": pa.array([0.6, -0.7, 0.1], pa.float32()),
    })
    write_shard(table, str(tmp_path / "in"), "part", 0)
    write_single_band_shards(str(tmp_path / "in"), str(tmp_path / "mono"))
    out = pq.read_table(tmp_path / "mono")
    assert out.column("object_id").to_pylist() == ["a", "b", "c"]
    assert out.column("image")[1].as_py() == b"not a jpeg"  # kept, not lost
    im = np.asarray(Image.open(io.BytesIO(out.column("image")[0].as_py())))
    assert im.shape == (32, 32, 3)
    assert np.abs(im[..., 0].astype(int) - im[..., 2].astype(int)).max() <= 3
