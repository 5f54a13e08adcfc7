"""Colour spaces used as network inputs and targets (Lab: CIE 1976, D65, as in skimage)."""

from __future__ import annotations

import numpy as np
import torch
from skimage.color import lab2rgb, rgb2lab

from vos_lab.errors import VosLabError

SPACES = ("rgb", "lab", "gray")
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def rgb_to_lab(frame: np.ndarray) -> np.ndarray:
    """uint8 RGB (..., 3) -> float32 Lab (..., 3): L in [0, 100], a and b roughly in [-110, 110]."""
    return rgb2lab(np.asarray(frame)).astype(np.float32)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """float Lab (..., 3) -> uint8 RGB, clipped to the gamut."""
    return (np.clip(lab2rgb(np.asarray(lab, dtype=np.float64)), 0, 1) * 255).round().astype(np.uint8)


def normalise(frame: np.ndarray, space: str, lab: np.ndarray | None = None) -> np.ndarray:
    """A uint8 RGB frame (..., 3) as a network input (..., C) float32 in the given space.

    rgb: ImageNet mean/std; lab: L/50 - 1 and ab/110, all about [-1, 1]; gray: the L channel alone.
    `lab` may pass the frame's Lab values when they are already computed.
    """
    if space == "rgb":
        return (frame.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    lab = rgb_to_lab(frame) if lab is None else lab
    scaled = np.concatenate([lab[..., :1] / 50.0 - 1.0, lab[..., 1:] / 110.0], axis=-1)
    if space == "lab":
        return scaled
    if space == "gray":
        return scaled[..., :1]
    raise VosLabError(f"unknown colour space '{space}' (choose from {', '.join(SPACES)})")


def to_input(frames: np.ndarray | list[np.ndarray], space: str) -> torch.Tensor:
    """uint8 RGB frames (B, H, W, 3) or one frame (H, W, 3) -> float tensor (B, C, H, W)."""
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    return torch.from_numpy(np.ascontiguousarray(normalise(frames, space).transpose(0, 3, 1, 2)))
