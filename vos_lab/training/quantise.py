"""Colour targets of the colourisation proxy task (Vondrick et al. 2018, Sec. 3.2).

The ab plane of Lab is clustered with k-means into 16 colours, fitted on training frames; each pixel's
target is the index of its nearest centre. Lab puts brightness in L, so a grayscale input and an ab
target separate "where" from "what colour".
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.cluster.vq import kmeans2

from vos_lab.colour import rgb_to_lab


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
