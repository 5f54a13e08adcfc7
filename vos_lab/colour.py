"""Colour spaces used as network inputs and targets (Lab: CIE 1976, D65, as in skimage), and the colour
targets of the colourisation proxy task (Vondrick et al. 2018, Sec. 3.2): the ab plane of Lab clustered with
k-means into 16 colours fitted on training frames, each pixel's target the index of its nearest centre. Lab
puts brightness in L, so a grayscale input and an ab target separate "where" from "what colour".
"""

from __future__ import annotations

import kornia
import numpy as np
import torch
from scipy.cluster.vq import kmeans2
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


def rgb_to_lab_tensor(rgb: torch.Tensor) -> torch.Tensor:
    """float RGB in [0, 1] (..., 3, H, W) -> Lab (..., 3, H, W) on the tensor's device (kornia: the same
    D65 formulas as skimage, within 1e-4), so training batches are converted on the GPU."""
    shape = rgb.shape
    return kornia.color.rgb_to_lab(rgb.reshape(-1, *shape[-3:])).view(shape)


def normalise(rgb: torch.Tensor, space: str, lab: torch.Tensor | None = None) -> torch.Tensor:
    """float RGB in [0, 1] (..., 3, H, W) as a network input (..., C, H, W) in the given space.

    rgb: ImageNet mean/std; lab: L/50 - 1 and ab/110, all about [-1, 1]; gray: the L channel alone.
    `lab` may pass the frames' Lab values when they are already computed.
    """
    if space == "rgb":
        mean, std = (torch.tensor(v, device=rgb.device).view(3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
        return (rgb - mean) / std
    if space not in SPACES:
        raise VosLabError(f"unknown colour space '{space}' (choose from {', '.join(SPACES)})")
    lab = rgb_to_lab_tensor(rgb) if lab is None else lab
    scaled = torch.cat([lab[..., :1, :, :] / 50.0 - 1.0, lab[..., 1:, :, :] / 110.0], dim=-3)
    return scaled if space == "lab" else scaled[..., :1, :, :]


def to_unit_rgb(frames: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 RGB (..., H, W, 3), an array or a (pinned) tensor -> float RGB in [0, 1] (..., 3, H, W) on `device`
    (moved as uint8)."""
    if not isinstance(frames, torch.Tensor):  # a copy when read-only (torch needs writable memory)
        frames = torch.from_numpy(np.require(frames, np.uint8, ['C', 'W']))
    tensor = frames.to(device, non_blocking=True)
    return tensor.movedim(-1, -3).float().div_(255.0)


def to_input(frames: np.ndarray | list[np.ndarray], space: str, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 RGB frames (B, H, W, 3) or one frame (H, W, 3) -> float tensor (B, C, H, W) on `device`."""
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    return normalise(to_unit_rgb(frames, device), space)


def fit_ab_centres(frames: np.ndarray, clusters: int = 16, samples: int = 50_000, seed: int = 0) -> np.ndarray:
    """k-means centres (clusters, 2) of the ab values of random pixels of uint8 RGB frames (..., 3)."""
    pixels = np.asarray(frames).reshape(-1, 3)
    rng = np.random.default_rng(seed)
    chosen = pixels[rng.choice(len(pixels), size=min(samples, len(pixels)), replace=False)]
    ab = rgb_to_lab(chosen[None])[0, :, 1:].astype(np.float64)
    centres, _ = kmeans2(ab, clusters, minit="++", seed=seed)
    return centres.astype(np.float32)


def quantise_ab(ab: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """ab values (..., 2, H, W) -> index of the nearest centre (..., H, W)."""
    distance = ((ab.unsqueeze(-4) - centres.view(-1, 2, 1, 1)) ** 2).sum(-3)  # (..., K, H, W)
    return distance.argmin(-3)
