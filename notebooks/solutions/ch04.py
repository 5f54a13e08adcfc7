"""Solutions to the exercises of chapter 4. Look only after trying!"""

import torch
from torch import nn


@torch.no_grad()
def momentum_update(key: nn.Module, query: nn.Module, m: float) -> None:
    """Exercise 4.1: theta_k <- m theta_k + (1 - m) theta_q for every parameter, in place, without gradient."""
    for k, q in zip(key.parameters(), query.parameters(), strict=True):
        k.copy_(m * k + (1 - m) * q)
