"""Stride-8 ResNet-18-style trunks used by every method of the course.

The colourisation papers (Vondrick et al. 2018 Sec. 4; CorrFlow Sec. 3.4; MAST Sec. 4.1) use a ResNet-18
whose later stages keep the resolution, so the feature map has stride 8 (or 4) and each cell still
matches a small image patch.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    """He et al. 2016: two 3x3 convolutions with a residual connection."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class ResNetStride8(nn.Module):
    """ResNet-18 layout (2-2-2-2 blocks) with strides 2 (stem), 2 (pool), 1, 2, 1, 1: output stride 8.

    `width` is the stem's channel count (64 in ResNet-18); the four stages have width x `multipliers`
    channels ((1, 2, 4, 4) by default; the cpu profile uses a narrower (1, 2, 2, 2) at width 32), and a
    1x1 head projects to `embed_dim` (none when `embed_dim` is None).
    """

    stride = 8

    def __init__(self, in_channels: int = 3, width: int = 64, embed_dim: int | None = 64,
                 multipliers: tuple[int, ...] = (1, 2, 4, 4)) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        channels = [m * width for m in multipliers]
        strides = [1, 2, 1, 1][: len(multipliers)]
        layers, c_in = [], width
        for c_out, stride in zip(channels, strides, strict=True):
            layers += [BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out)]
            c_in = c_out
        self.stages = nn.Sequential(*layers)
        self.head = nn.Conv2d(c_in, embed_dim, 1) if embed_dim is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


def random_resnet18(seed: int = 0) -> ResNetStride8:
    """The random-CNN baseline: ResNet-18's first three stages (64-128-256 channels, the stride of the third
    removed: stride 8), no head, initialised as torchvision initialises ResNet-18 (He normal, fan-out)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = ResNetStride8(3, width=64, embed_dim=None, multipliers=(1, 2, 4))
        for module in net.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return net
