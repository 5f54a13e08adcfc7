"""Attention as a copy mechanism: the affinity pieces shared by training (all methods) and tests.

A target pixel j "points" at reference pixels i with weights A_ij = softmax_i(f_i . f_j / T); anything
attached to the references (colours, labels) is copied as sum_i A_ij v_i (Vondrick et al. 2018, Eq. 1-2).
"""

from __future__ import annotations

import torch


def pointer_weights(query: torch.Tensor, keys: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """query (B, C, Nq), keys (B, C, Nk) -> A (B, Nq, Nk), each row a softmax over the Nk references."""
    return torch.softmax(torch.einsum("bcq,bck->bqk", query, keys) / temperature, dim=-1)


def copy_values(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """A (B, Nq, Nk) and values (B, Nk, V) -> the copied values (B, Nq, V)."""
    return torch.bmm(weights, values)


def flatten_frames(x: torch.Tensor) -> torch.Tensor:
    """(B, T, C, h, w) -> (B, C, T*h*w): the positions of several reference frames as one set."""
    b, t, c, h, w = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(b, c, t * h * w)
