"""Frame encoders for label propagation: a trunk plus the colour space of its input, and pixel pooling.

Every encoder maps uint8 RGB frames to L2-normalised feature maps of a known stride, so propagation
never needs to know which method produced them.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vos_lab.colour import to_input

BASELINES = ("rgb", "lab", "random-resnet18")


class PixelPooling(nn.Module):
    """Raw pixels averaged over stride x stride cells (edges padded by replication): a no-learning baseline."""

    def __init__(self, stride: int = 8) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pad_h, pad_w = -h % self.stride, -w % self.stride
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        return F.avg_pool2d(x, self.stride)


class FrameEncoder(nn.Module):
    """A trunk plus the colour space its input is given in; `encode` returns unit-length feature vectors."""

    def __init__(self, trunk: nn.Module, space: str, stride: int = 8, name: str = "") -> None:
        super().__init__()
        self.trunk, self.space, self.stride, self.name = trunk, space, stride, name

    @property
    def device(self) -> torch.device:
        tensor = next(self.parameters(), None)
        return tensor.device if tensor is not None else torch.device("cpu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.trunk(x).float(), dim=1)

    @torch.no_grad()
    def encode(self, frames: np.ndarray, device: torch.device | str | None = None) -> torch.Tensor:
        """uint8 RGB frames (B, H, W, 3) or one frame (H, W, 3) -> features (B, C, H/stride, W/stride)."""
        device = torch.device(device) if device is not None else self.device
        return self(to_input(frames, self.space, device))
