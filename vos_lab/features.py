"""Features by name: the pixel baselines, a random CNN, or the test-time encoder of a trained checkpoint.

This is the entry point of `propagate --features`; it sits above training so that it can load checkpoints.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vos_lab.errors import VosLabError
from vos_lab.models.encoders import BASELINES, FrameEncoder, PixelPooling
from vos_lab.models.resnet import random_resnet18
from vos_lab.training.checkpoints import load_encoder


def build_encoder(name: str, device: torch.device | str = "cpu", block: int | None = None) -> FrameEncoder:
    """A baseline by name (rgb, lab, random-resnet18) or a trained encoder from a checkpoint path; `block`: the
    transformer block of a ViT checkpoint (an error for the others)."""
    if block is not None and name in BASELINES:
        raise VosLabError(f"--block {block}: the {name} features have no transformer blocks (give a ViT checkpoint)")
    if name in ("rgb", "lab"):
        encoder = FrameEncoder(PixelPooling(8), space=name, name=name)
    elif name == "random-resnet18":
        encoder = FrameEncoder(random_resnet18(seed=0), space="rgb", name=name)
    elif Path(name).suffix in (".pt", ".pth") or Path(name).is_file():
        encoder = load_encoder(Path(name), block)
    else:
        raise VosLabError(f"unknown features '{name}' (choose {', '.join(BASELINES)} or a checkpoint .pt file)")
    return encoder.to(device).eval()
