"""The shallow CNN of paper Section 8.1, used for Grad-CAM.

A basic CNN stem and two residual blocks of two convolutions each (Howard & Gugger 2020), so
the final convolutional feature map keeps a quarter of the input resolution: 56x56 at 224 px
input (the 34-layer xresnet ends at 7x7, too coarse for Grad-CAM). Built from the same pieces
as :mod:`hicatalog.models.xresnet` (Mish, BatchNorm, zero-initialised last BatchNorm).
"""

from __future__ import annotations

from torch import nn

from hicatalog.models.xresnet import ConvLayer, ResBlock, _scaled, init_cnn

__all__ = ["ShallowCNN", "shallow_cnn"]


class ShallowCNN(nn.Sequential):
    """Stem (3 convs: 32, 32, 64 channels, the first with stride 2), 3x3/2 max pool, two
    stride-1 residual blocks (64 -> 64 and 64 -> 128 channels, two 3x3 convs each), global
    average pooling, flatten, linear.

    Input ``(N, in_channels, S, S)`` float32; output ``(N, n_out)``. The final feature map
    (output of :attr:`cam_layer`) is ``(N, 128*width, S/4, S/4)``: 56x56 at S = 224.
    """

    def __init__(self, n_out: int = 2, *, width: float = 1.0, in_channels: int = 3):
        if n_out < 1:
            raise ValueError(f"n_out must be >= 1, got {n_out}")
        c32, c64, c128 = (_scaled(c, width) for c in (32, 64, 128))
        super().__init__(
            ConvLayer(in_channels, c32, 3, stride=2),
            ConvLayer(c32, c32, 3),
            ConvLayer(c32, c64, 3),
            nn.MaxPool2d(3, stride=2, padding=1),
            ResBlock(1, c64, c64),
            ResBlock(1, c64, c128),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(c128, n_out),
        )
        init_cnn(self)
        self.n_out = n_out

    #: ``get_submodule`` name of the last residual block (its output is the final conv map).
    cam_layer_name = "5"

    @property
    def cam_layer(self) -> nn.Module:
        """The last residual block; hook its output for Grad-CAM (56x56 at 224 px input)."""
        return self.get_submodule(self.cam_layer_name)


def shallow_cnn(n_out: int = 2, *, width: float = 1.0, in_channels: int = 3) -> ShallowCNN:
    """The Section 8.1 Grad-CAM network (default two outputs: gas-poor, gas-rich)."""
    return ShallowCNN(n_out, width=width, in_channels=in_channels)
