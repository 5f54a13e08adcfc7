"""Data-parallel training over several processes started by `torchrun`: one per GPU (NCCL) or per CPU share (gloo).

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous address in each process's environment; `session`
joins the process group and gives each process its GPU. Every rank trains the same model on its own slice of
each global batch (`vos_lab.data.clips.ClipBatches`); DistributedDataParallel averages the gradients during the
backward pass, so every rank makes the same update (and the same post-step updates, e.g. a momentum teacher)
and holds the same weights. Rank 0 alone writes checkpoints and shows progress; every rank resumes from the
same checkpoint, and runs the periodic validation (the same figures: no rank waits for another). The logged
losses are the ranks' means, and the time budget is rank 0's clock, so all ranks stop at the same step. Losses
that need the whole batch take it from `vos_lab.ranks` (ContrastCorr's negatives, DINO's centre).
Outside torchrun (or with one process) none of this does anything.

Batch normalisation: on CUDA the encoder's BatchNorm layers become SyncBatchNorm, whose statistics cover the
global batch, so N GPUs with B/N clips each train as one GPU with B clips. torch has no SyncBatchNorm on the
CPU: there (gloo) each rank normalises its own clips, as a single process would with B/N-clip micro-batches.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from vos_lab.errors import VosLabError
from vos_lab.ranks import rank, world

Loss = Callable[[dict[str, torch.Tensor], int], tuple[torch.Tensor, dict[str, float]]]


def is_main() -> bool:
    """Whether this process writes checkpoints and prints (rank 0, or the only process)."""
    return rank() == 0


@contextlib.contextmanager
def session(device: torch.device) -> Iterator[torch.device]:
    """Within it, this process is in the process group when torchrun started several (NCCL on CUDA, gloo on
    the CPU; it leaves at the end the group it joined); yields this process's device (its GPU: cuda:LOCAL_RANK).
    Outside torchrun, or already in a group, it yields `device` as it is."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        yield device
        return
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise VosLabError(f"process {local} of this node has no GPU ({torch.cuda.device_count()} visible): "
                              "give torchrun --nproc_per_node at most the number of GPUs")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                            device_id=device if device.type == "cuda" else None)
    try:
        yield device
    finally:
        dist.destroy_process_group()


class _LossModule(nn.Module):
    """The method's loss as a forward pass: DistributedDataParallel synchronises the gradients of what its
    forward computed."""

    def __init__(self, method: nn.Module) -> None:
        super().__init__()
        self.method = method

    def forward(self, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        return self.method.loss(batch, step)


def loss_function(method: nn.Module, device: torch.device) -> Loss:
    """`method.loss`, through DistributedDataParallel when there are several processes (which first makes
    every rank's weights and buffers rank 0's). On CUDA the BatchNorm layers become SyncBatchNorm, in place:
    the parameters and buffers stay the same objects, so an optimiser made before still holds them."""
    if world() == 1:
        return method.loss
    if device.type == "cuda":
        nn.SyncBatchNorm.convert_sync_batchnorm(method)
    return nn.parallel.DistributedDataParallel(_LossModule(method), device_ids=[device] if device.type == "cuda"
                                               else None)


def reseed(seed: int, step: int) -> None:
    """With several processes, seed torch's generators from (seed, step, rank) before a step: the ranks draw
    different random augmentations for their different clips, and a resumed run draws the same ones."""
    if world() > 1:
        torch.manual_seed(int(np.random.SeedSequence([seed, step, rank()]).generate_state(1)[0]))


def mean_logs(loss: torch.Tensor, logs: dict[str, float]) -> tuple[float, dict[str, float]]:
    """The loss's value and the logs averaged over the ranks (what one process with the global batch logs,
    for losses that are means over clips); every rank gets the same figures, so all stop on a non-finite loss."""
    if world() == 1:
        return loss.item(), logs
    values = torch.tensor([loss.item(), *logs.values()], dtype=torch.float64, device=loss.device)
    dist.all_reduce(values)
    mean = (values / world()).tolist()
    return mean[0], dict(zip(logs, mean[1:], strict=True))


def rank0_value(value: float, device: torch.device) -> float:
    """Rank 0's `value` on every rank (e.g. the training time, so all ranks stop at the same step)."""
    if world() == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(tensor, 0)
    return tensor.item()
