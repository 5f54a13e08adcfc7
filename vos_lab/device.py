"""The one place that picks the device: CUDA when available, else the CPU."""

from __future__ import annotations

import torch

from vos_lab.errors import VosLabError


def pick_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when available; asking for CUDA without one is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise VosLabError("device 'cuda' asked for, but torch sees no CUDA device (use --device cpu)")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise VosLabError(f"unknown device '{name}' (choose auto, cpu or cuda)")
    return torch.device(name)
