"""Solutions to the exercises of chapter 6. Look only after trying!"""

import torch
import torch.nn.functional as F


def masked_token_loss(teacher: torch.Tensor, student: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Exercise 6.1: teacher probabilities and student logits (B, N, K), mask (B, N): the cross-entropy
    -sum_k p_t log softmax(s / 0.1) of each patch, averaged over the masked patches (0 when none)."""
    ce = -(teacher * F.log_softmax(student / 0.1, dim=-1)).sum(-1)  # (B, N)
    weights = mask.float()
    return (ce * weights).sum() / weights.sum().clamp(min=1.0)
