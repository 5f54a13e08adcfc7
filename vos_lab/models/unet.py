"""A small U-Net (Ronneberger, Fischer & Brox, MICCAI 2015), the network of online adaptation (chapter 4).

Zhu et al. 2020 train a U-Net from scratch on each test video; the paper gives no widths, so ours is small:
`depth` times (two 3x3 convolutions with batch norm and ReLU, then a 2x2 max-pool), a bottleneck, and as many
up steps (bilinear x2, concatenation with the skip connection, two convolutions), `width` x 2^i channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class UNet(nn.Module):
    """(B, in_channels, H, W) -> logits (B, classes, H, W), any H and W (each up step is resized to its skip)."""

    def __init__(self, in_channels: int = 3, classes: int = 2, width: int = 16, depth: int = 4) -> None:
        super().__init__()
        channels = [width * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList(_double_conv(c_in, c_out)
                                  for c_in, c_out in zip([in_channels, *channels[:-2]], channels[:-1], strict=True))
        self.bottom = _double_conv(channels[-2], channels[-1])
        self.up = nn.ModuleList(_double_conv(channels[i + 1] + channels[i], channels[i])
                                for i in reversed(range(depth)))
        self.head = nn.Conv2d(width, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottom(x)
        for block, skip in zip(self.up, reversed(skips), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x)
