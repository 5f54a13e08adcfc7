"""Solutions to the exercises of chapter 3. Look only after trying!"""

import torch
import torch.nn.functional as F


def valid_positions(h: int, w: int, cell: tuple[int, int], radius: int, dilation: int) -> int:
    """Exercise 3.1: how many of the (2R+1)^2 window positions of `cell` lie inside an h x w map."""
    offsets = [dilation * k for k in range(-radius, radius + 1)]
    rows = sum(0 <= cell[0] + o < h for o in offsets)
    cols = sum(0 <= cell[1] + o < w for o in offsets)
    return rows * cols


def scheduled_colours(truth: torch.Tensor, predicted: torch.Tensor, eps: float, draws: torch.Tensor) -> torch.Tensor:
    """Exercise 3.2: per sample b, the ground truth (B, K, h, w) when draws[b] < eps, else the prediction."""
    return torch.where((draws < eps).view(-1, 1, 1, 1), truth, predicted)


def huber_target(lab: torch.Tensor, channel: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Exercise 3.3: each sample's dropped channel of Lab (B, T, 3, H, W), averaged over the cells of a
    (h, w) grid, as Lab / 110 x 20: (B, T, h, w)."""
    picked = torch.stack([lab[b, :, c] for b, c in enumerate(channel.tolist())])  # (B, T, H, W)
    return F.adaptive_avg_pool2d(picked, size) / 110.0 * 20.0
