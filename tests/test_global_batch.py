"""Losses that need the whole batch see it under torchrun: ContrastCorr's inter-video softmax takes every rank's
videos as negatives, DINO's centre averages every rank's teacher outputs (`vos_lab.ranks`). Two gloo processes,
each holding half of a fixed batch, must give the loss, the gradients and the centre of one process with the
whole batch."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vos_lab.methods.contrastcorr import ContrastCorrMethod, Pairs
from vos_lab.models.dino import Centre

WORLD, VIDEOS, CELLS, DIM = 2, 4, 3, 8  # the global batch: 4 videos, crops of 3 x 3 cells, 8 channels


def fixed_pairs() -> Pairs:
    generator = torch.Generator().manual_seed(0)
    shapes = [(VIDEOS, DIM, CELLS, CELLS), (VIDEOS, 3, CELLS, CELLS)] * 2 + [(VIDEOS, 2)] * 2
    return Pairs(*(torch.randn(*shape, generator=generator) for shape in shapes))


def contrastcorr_loss(pairs: Pairs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    method = ContrastCorrMethod(warmup_steps=0, cosine=True, temperature=0.1)
    terms = method.terms(pairs, step=1)
    return sum(method.config[name] * value for name, value in terms.items()), terms


def on_half(pairs: Pairs, rank: int) -> tuple[Pairs, list[torch.Tensor]]:
    """This rank's half of the batch, its features as leaves whose gradients are read."""
    half = VIDEOS // WORLD
    parts = [x[rank * half:(rank + 1) * half].clone() for x in pairs]
    for index in (0, 2):
        parts[index].requires_grad_(True)
    return Pairs(*parts), [parts[0], parts[2]]


def _rank(rank: int, init: str, results) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    try:
        pairs, leaves = on_half(fixed_pairs(), rank)
        loss, terms = contrastcorr_loss(pairs)
        loss.backward()
        centre = Centre(5, momentum=0.5)
        centre.update(torch.arange(10.0).view(2, 5) + 10 * rank)
        results[rank] = {"loss": loss.item(), "terms": {k: v.item() for k, v in terms.items()},
                         "grads": [leaf.grad for leaf in leaves], "centre": centre.value.clone()}
    finally:
        dist.destroy_process_group()


def test_two_ranks_see_the_whole_batch(tmp_path):
    results = mp.Manager().dict()
    mp.spawn(_rank, args=(f"file://{tmp_path / 'rendezvous'}", results), nprocs=WORLD, join=True)

    pairs, leaves = on_half(fixed_pairs(), 0)  # one process: the whole batch
    pairs = Pairs(*(torch.cat([x, y]) for x, y in zip(pairs, on_half(fixed_pairs(), 1)[0], strict=True)))
    pairs.reference.retain_grad(), pairs.target.retain_grad()
    loss, terms = contrastcorr_loss(pairs)
    loss.backward()
    assert {"inter", "consistency", "sparsity"} <= set(terms)
    # the ranks' mean loss is the global batch's (DistributedDataParallel averages their gradients)
    assert abs(sum(results[r]["loss"] for r in range(WORLD)) / WORLD - loss.item()) < 1e-5
    for name, value in terms.items():
        assert abs(sum(results[r]["terms"][name] for r in range(WORLD)) / WORLD - value.item()) < 1e-5, name
    half = VIDEOS // WORLD
    for rank in range(WORLD):  # each rank's gradient, averaged as DDP does, is the global batch's for its videos
        for ours, theirs in zip(results[rank]["grads"], (pairs.reference.grad, pairs.target.grad), strict=True):
            assert torch.allclose(ours / WORLD, theirs[rank * half:(rank + 1) * half], atol=1e-6), \
                (ours / WORLD - theirs[rank * half:(rank + 1) * half]).abs().max()
    # the centre moved towards the mean of all 4 rows (both ranks'), not of the rank's own 2
    expected = 0.5 * (torch.arange(10.0).view(2, 5).mean(0) + 5)
    for rank in range(WORLD):
        assert torch.allclose(results[rank]["centre"], expected)

