"""The xresnet family (18, 34, 50) with Mish and simple self-attention (paper Section 3).

Same layout, initialisation and parameter count as fastai's
``xresnet34(sa=True, act_cls=Mish)``: a three-conv stem (32, 32, 64 channels, the first with
stride 2), a 3x3 max pool, four stages of residual blocks (64, 128, 256, 512 channels times the
block expansion), adaptive average pooling, flatten, dropout and one linear layer. Details that
set the parameter count (21,308,514 with one output, 21,309,027 with two):

- every conv is bias-free and followed by BatchNorm (weight 1, bias 1e-3), then Mish;
- the last conv of a residual block has no activation and its BatchNorm weight starts at 0,
  so every block starts as the identity;
- the identity path of a block that changes shape is ``AvgPool2d(2, ceil_mode=True)`` (when
  it strides) then a 1x1 conv + BatchNorm (when the channel count changes);
- one :class:`SimpleSelfAttention` (a spectrally normalised 1x1 conv, ``sym=False``) after the
  convolutions of the *last block of the first stage* (fastai's ``sa and i == len(layers)-4``);
- convolutions and the linear layer are Kaiming-normal initialised with zero biases.

``width`` scales every channel count (stem included) for small CPU runs; ``width=1`` is the
paper's network. The network accepts any input side >= 32 px (global pooling at the end).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

__all__ = [
    "ConvLayer",
    "SimpleSelfAttention",
    "ResBlock",
    "XResNet",
    "xresnet18",
    "xresnet34",
    "xresnet50",
    "init_cnn",
]

#: BatchNorm bias at initialisation (fastai's ``_get_norm``).
BN_BIAS_INIT = 1e-3


def _batchnorm(n_features: int, zero: bool = False) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(n_features)
    with torch.no_grad():
        bn.bias.fill_(BN_BIAS_INIT)
        bn.weight.fill_(0.0 if zero else 1.0)
    return bn


class ConvLayer(nn.Sequential):
    """Conv2d (no bias, 'same' padding) -> BatchNorm2d -> activation (optional).

    ``zero_bn``: BatchNorm weight starts at 0 (last conv of a residual block).
    Input ``(N, ni, H, W)`` -> output ``(N, nf, ceil(H/stride), ceil(W/stride))``.
    """

    def __init__(
        self,
        ni: int,
        nf: int,
        ks: int = 3,
        stride: int = 1,
        act_cls: type[nn.Module] | None = nn.Mish,
        zero_bn: bool = False,
    ):
        layers: list[nn.Module] = [
            nn.Conv2d(ni, nf, kernel_size=ks, stride=stride, padding=(ks - 1) // 2, bias=False),
            _batchnorm(nf, zero=zero_bn),
        ]
        if act_cls is not None:
            layers.append(act_cls())
        super().__init__(*layers)


class SimpleSelfAttention(nn.Module):
    """Simple self-attention (fastai's ``SimpleSelfAttention(n_in, ks=1, sym=False)``).

    ``o = gamma * (x x^T) conv(x) + x`` on the flattened ``(N, C, H*W)`` map, with a spectrally
    normalised 1x1 ``Conv1d`` and ``gamma`` starting at 0 (so the block starts as the identity).
    Shape preserving: ``(N, C, H, W) -> (N, C, H, W)``.
    """

    def __init__(self, n_in: int, ks: int = 1):
        super().__init__()
        conv = nn.Conv1d(n_in, n_in, ks, padding=ks // 2, bias=False)
        nn.init.kaiming_normal_(conv.weight)
        self.conv = spectral_norm(conv)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape
        flat = x.reshape(size[0], size[1], -1)
        convx = self.conv(flat)
        xxt = torch.bmm(flat, flat.transpose(1, 2))
        out = self.gamma * torch.bmm(xxt, convx) + flat
        return out.reshape(size)


class ResBlock(nn.Module):
    """Residual block: ``act(convpath(x) + idpath(x))`` (fastai's ``ResBlock``).

    ``expansion`` 1: two 3x3 convs (basic block); 4: 1x1, 3x3, 1x1 (bottleneck). ``ni``/``nf``
    are the unexpanded channel counts; the block maps ``ni*expansion`` to ``nf*expansion``
    channels. ``sa`` appends a :class:`SimpleSelfAttention` to the conv path.
    """

    def __init__(
        self,
        expansion: int,
        ni: int,
        nf: int,
        stride: int = 1,
        sa: bool = False,
        act_cls: type[nn.Module] = nn.Mish,
    ):
        super().__init__()
        nf, ni = nf * expansion, ni * expansion
        nh = nf // expansion
        if expansion == 1:
            convpath: list[nn.Module] = [
                ConvLayer(ni, nf, 3, stride=stride, act_cls=act_cls),
                ConvLayer(nf, nf, 3, act_cls=None, zero_bn=True),
            ]
        else:
            convpath = [
                ConvLayer(ni, nh, 1, act_cls=act_cls),
                ConvLayer(nh, nh, 3, stride=stride, act_cls=act_cls),
                ConvLayer(nh, nf, 1, act_cls=None, zero_bn=True),
            ]
        if sa:
            convpath.append(SimpleSelfAttention(nf, ks=1))
        self.convpath = nn.Sequential(*convpath)
        idpath: list[nn.Module] = []
        if stride != 1:
            idpath.append(nn.AvgPool2d(stride, ceil_mode=True))
        if ni != nf:
            idpath.append(ConvLayer(ni, nf, 1, act_cls=None))
        self.idpath = nn.Sequential(*idpath)
        self.act = act_cls()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.convpath(x) + self.idpath(x))


def init_cnn(module: nn.Module) -> None:
    """Kaiming-normal weights and zero biases for every conv and linear layer (fastai's
    ``init_cnn``); spectrally normalised convs keep their own Kaiming init."""
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            if not hasattr(m, "parametrizations"):
                nn.init.kaiming_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _scaled(channels: int, width: float) -> int:
    return max(4, int(round(channels * width)))


class XResNet(nn.Sequential):
    """xresnet as an ``nn.Sequential``: indices 0-2 stem convs, 3 max pool, 4..(3+len(layers))
    stages, then AdaptiveAvgPool2d(1), Flatten, Dropout(p), Linear.

    Input ``(N, in_channels, H, W)`` float32 (normalised pixels), output ``(N, n_out)``.
    """

    def __init__(
        self,
        expansion: int,
        layers: list[int],
        n_out: int = 1,
        *,
        sa: bool = True,
        width: float = 1.0,
        in_channels: int = 3,
        p: float = 0.0,
        act_cls: type[nn.Module] = nn.Mish,
    ):
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")
        if n_out < 1:
            raise ValueError(f"n_out must be >= 1, got {n_out}")
        stem_szs = [in_channels] + [_scaled(c, width) for c in (32, 32, 64)]
        stem = [
            ConvLayer(stem_szs[i], stem_szs[i + 1], 3, stride=2 if i == 0 else 1, act_cls=act_cls)
            for i in range(3)
        ]
        # The first stage's input is the stem's output (64 // expansion unexpanded channels).
        block_szs = [stem_szs[-1] // expansion] + [_scaled(c, width) for c in (64, 128, 256, 512)]
        stages = []
        for i, n_blocks in enumerate(layers):
            blocks = [
                ResBlock(
                    expansion,
                    block_szs[i] if j == 0 else block_szs[i + 1],
                    block_szs[i + 1],
                    stride=(1 if i == 0 else 2) if j == 0 else 1,
                    sa=sa and i == len(layers) - 4 and j == n_blocks - 1,
                    act_cls=act_cls,
                )
                for j in range(n_blocks)
            ]
            stages.append(nn.Sequential(*blocks))
        super().__init__(
            *stem,
            nn.MaxPool2d(3, stride=2, padding=1),
            *stages,
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(p),
            nn.Linear(block_szs[-1] * expansion, n_out),
        )
        init_cnn(self)
        self.n_out = n_out
        self.n_stages = len(layers)

    @property
    def cam_layer_name(self) -> str:
        """Name (for ``get_submodule``) of the last stage, whose output is the final conv map."""
        return str(3 + self.n_stages)

    @property
    def cam_layer(self) -> nn.Module:
        """The last residual stage (output: the final conv feature map, 7x7 at 224 px)."""
        return self.get_submodule(self.cam_layer_name)


def xresnet18(n_out: int = 1, *, sa: bool = True, width: float = 1.0, in_channels: int = 3) -> XResNet:
    """18-layer xresnet (basic blocks [2, 2, 2, 2]) with Mish and simple self-attention."""
    return XResNet(1, [2, 2, 2, 2], n_out, sa=sa, width=width, in_channels=in_channels)


def xresnet34(n_out: int = 1, *, sa: bool = True, width: float = 1.0, in_channels: int = 3) -> XResNet:
    """34-layer xresnet (basic blocks [3, 4, 6, 3]): the paper's network (21,308,514
    parameters with ``n_out=1``)."""
    return XResNet(1, [3, 4, 6, 3], n_out, sa=sa, width=width, in_channels=in_channels)


def xresnet50(n_out: int = 1, *, sa: bool = True, width: float = 1.0, in_channels: int = 3) -> XResNet:
    """50-layer xresnet (bottleneck blocks [3, 4, 6, 3], expansion 4)."""
    return XResNet(4, [3, 4, 6, 3], n_out, sa=sa, width=width, in_channels=in_channels)
