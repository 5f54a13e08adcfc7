"""Which process am I, and the global batch: what a method's loss needs to see past its own rank.

Under `torchrun` (`vos_lab.training.distributed`) each process holds a slice of the global batch. Most losses
are means over clips, so DistributedDataParallel's gradient average is all they need; two are not. ContrastCorr's
inter-video softmax runs over the reference cells of *every* video of the batch (the other videos are its
negatives: Wang et al., AAAI 2021, Sec. 3.3), and DINO's centre is the mean of the teacher's outputs over the
batch (Caron et al., ICCV 2021, Sec. 3.1). `gather` and `all_sum` give them the global batch. Outside a process
group (one process) both return their input as it is.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


class _Gather(torch.autograd.Function):
    """all_gather forwards; backwards, the gradient of the gathered tensor summed over the ranks (all_reduce: what
    every rank's loss asks of each part), of which each rank keeps its own part."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(tensor) for _ in range(world())]
        dist.all_gather(parts, tensor)
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad.chunk(world(), dim=0)[rank()]


def gather(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's `tensor` (B, ...) concatenated in rank order (world B, ...), on every rank (equal B on all
    ranks). Differentiable: each rank's part gets the gradient that all ranks' losses send it (summed), so with
    the ranks' mean loss (DistributedDataParallel's average) the update is one process's on the global batch."""
    if world() == 1:
        return tensor
    return _Gather.apply(tensor.contiguous())


@torch.no_grad()
def all_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of `tensor` over the ranks (a new tensor; no gradient)."""
    if world() == 1:
        return tensor
    total = tensor.clone()
    dist.all_reduce(total)
    return total
