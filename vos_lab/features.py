"""Frame encoders for label propagation: pixel baselines, a random CNN, and trained checkpoints.

Every encoder maps uint8 RGB frames to L2-normalised feature maps of a known stride, so propagation
never needs to know which method produced them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vos_lab.colour import to_input
from vos_lab.errors import VosLabError
from vos_lab.models.resnet import torchvision_resnet18_stride8

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


def pick_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when available; asking for CUDA without one is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise VosLabError("device 'cuda' asked for, but torch sees no CUDA device (use --device cpu)")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise VosLabError(f"unknown device '{name}' (choose auto, cpu or cuda)")
    return torch.device(name)


def build_encoder(name: str, device: torch.device | str = "cpu") -> FrameEncoder:
    """A baseline by name (rgb, lab, random-resnet18) or a trained encoder from a checkpoint path."""
    if name in ("rgb", "lab"):
        encoder = FrameEncoder(PixelPooling(8), space=name, name=name)
    elif name == "random-resnet18":
        encoder = FrameEncoder(torchvision_resnet18_stride8(seed=0), space="rgb", name=name)
    elif Path(name).suffix in (".pt", ".pth") or Path(name).is_file():
        from vos_lab.checkpoints import load_encoder  # trained models: see chapter 2

        encoder = load_encoder(Path(name))
    else:
        raise VosLabError(f"unknown features '{name}' (choose {', '.join(BASELINES)} or a checkpoint .pt file)")
    return encoder.to(device).eval()
