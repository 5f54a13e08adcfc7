"""Solutions to the exercises of chapter 2. Look only after trying!"""

import torch
import torch.nn.functional as F


def nearest_centre(ab: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Exercise 2.1: ab (2, H, W), centres (K, 2) -> index of the nearest centre (H, W)."""
    distance = ((ab[None] - centres[:, :, None, None]) ** 2).sum(1)  # (K, H, W)
    return distance.argmin(0)


def copy_colours(weights: torch.Tensor, reference_classes: torch.Tensor, k: int) -> torch.Tensor:
    """Exercise 2.2: weights (B, Nq, Nk), classes (B, Nk) -> colour distributions (B, Nq, k)."""
    return weights @ F.one_hot(reference_classes, k).float()


def channel_dropout(inputs: torch.Tensor, probability: float, generator: torch.Generator | None = None
                    ) -> torch.Tensor:
    """Exercise 2.3: inputs (B, T, 3, H, W) -> per sample, with `probability`, 1 or 2 channels zeroed in every
    frame and the kept ones scaled by 3 / kept."""
    b = inputs.shape[0]
    drop = torch.rand(b, generator=generator) < probability  # (B,): which samples lose channels
    count = torch.randint(1, 3, (b,), generator=generator)  # (B,): 1 or 2 channels
    rank = torch.rand(b, 3, generator=generator).argsort(dim=1)  # (B, 3): a random permutation of 0, 1, 2
    dropped = (rank < count[:, None]) & drop[:, None]  # (B, 3): `count` channels chosen at random
    scale = torch.where(dropped, 0.0, 3.0 / (3 - dropped.sum(1, keepdim=True)))  # (B, 3)
    return inputs * scale.to(inputs.device)[:, None, :, None, None]  # the same scale for all T frames
