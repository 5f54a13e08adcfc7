"""Solutions to the exercises of chapter 1. Look only after trying!"""

import torch


def context_frames(t: int, n: int) -> list[int]:
    """Exercise 1.2: frame 0 plus the n most recent frames before t, sorted, without repeats."""
    recent = [i for i in range(t - n, t) if i > 0]
    return [0] + recent


def topk_weights(scores: torch.Tensor, k: int, temperature: float) -> torch.Tensor:
    """Exercise 1.1: softmax(scores / temperature) over the k largest scores of each row, 0 elsewhere."""
    top, index = scores.topk(k, dim=-1)
    weights = torch.zeros_like(scores)
    return weights.scatter(-1, index, torch.softmax(top / temperature, dim=-1))
