"""Data-parallel training under torchrun (2 CPU processes, gloo) equals one process, and resumes."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from vos_lab.data.clips import ClipBatches
from vos_lab.errors import VosLabError
from vos_lab.profiles import get_profile
from vos_lab.training.checkpoints import load_checkpoint, load_method
from vos_lab.training.run import profile_sampler
from vos_lab.training.schedule import learning_rate


def test_ranks_take_disjoint_slices_of_each_global_batch():
    one = list(ClipBatches(start=6, batch_size=4, steps=3))
    ranks = [list(ClipBatches(start=6, batch_size=4, steps=3, rank=r, world=2)) for r in range(2)]
    assert one == [[6, 7, 8, 9], [10, 11, 12, 13], [14, 15, 16, 17]]
    for step, batch in enumerate(one):
        parts = [ranks[r][step] for r in range(2)]
        assert not set(parts[0]) & set(parts[1]) and parts[0] + parts[1] == batch
    with pytest.raises(VosLabError, match="does not split over 3 processes"):
        ClipBatches(0, 4, 1, rank=0, world=3)


@pytest.fixture(scope="module")
def frames_root(tmp_path_factory):
    """2 synthetic sequences x 12 frames (colourisation's clips span up to 10), read as frame folders."""
    from vos_lab.data.synthetic import write_synthetic_davis

    root = tmp_path_factory.mktemp("frames")
    write_synthetic_davis(root, sequences=2, frames=12, height=96, width=128, seed=0)
    return root


def _torchrun(root, out, steps: int) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "vos_lab", "train", "colourisation", "--variant", "vondrick", "--profile", "smoke",
               "--data", str(root), "--steps", str(steps), "--device", "cpu", "--out", str(out)]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def _one_process(checkpoint, root, steps: int, parts: int):
    """From `checkpoint`, the training of one process up to `steps`, each global batch in `parts` micro-batches
    of the same size whose gradients are averaged (what `parts` ranks do), written out independently of the
    training loop. Returns the method and the mean loss of each step."""
    state, profile = load_checkpoint(checkpoint), get_profile("smoke")
    method = load_method(checkpoint).train()
    sampler = profile_sampler(method, profile, [str(root)])
    sampler.load_state(state["sampler"])
    optimizer = torch.optim.Adam(method.parameters(), lr=method.config["lr"])
    optimizer.load_state_dict(state["optimizer"])
    losses = []
    for step in range(state["step"], steps):
        optimizer.zero_grad()
        values = []
        for part in np.split(sampler.batch(profile.batch_size), parts):
            loss, _ = method.loss(method.prepare(part, torch.device("cpu")), step)
            (loss / parts).backward()
            values.append(loss.item())
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(method.config["lr"], method.config["lr_schedule"], step, steps)
        optimizer.step()
        losses.append(float(np.mean(values)))
    return method, losses


def test_torchrun_two_processes_equal_one_and_resume(frames_root, tmp_path):
    """Two gloo processes with the smoke profile's global batch of 2 clips train as one process with that batch.

    Why they are equal: the ranks read disjoint halves of each global batch of the same clip stream (clip i is
    drawn from (seed, i), whoever reads it); the loss is a mean over clips of equal-sized halves, so the mean
    of the ranks' gradients (DistributedDataParallel's all-reduce) is the global batch's gradient; every rank
    then makes the same Adam update. Batch normalisation is the method's, as is: on the CPU each rank
    normalises its own clips (torch's SyncBatchNorm needs a GPU), so the one-process reference feeds the
    global batch as the same two micro-batches and averages their gradients. Colourisation (Vondrick et al.)
    draws no random numbers in its loss, so nothing else differs. Buffers (BatchNorm running statistics) are
    rank 0's: only the parameters are compared. Floating-point sums differ in order only: 1e-5.

    Resume: the first torchrun trains 1 step and rank 0 saves; the second resumes it to 3 steps (every rank
    loads that checkpoint), and must equal the reference computed from the same checkpoint.
    """
    out = tmp_path / "ddp.pt"
    first = _torchrun(frames_root, out, 1)
    assert first.returncode == 0, first.stderr[-3000:]
    assert load_checkpoint(out)["step"] == 1
    start = {name: value.detach().clone() for name, value in load_method(out).named_parameters()}
    reference, losses = _one_process(out, frames_root, 3, parts=2)
    second = _torchrun(frames_root, out, 3)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("3 steps in") == 1, "rank 0 alone reports"
    state = load_checkpoint(out)
    assert state["step"] == 3 and [h["step"] for h in state["history"]] == [1, 2, 3]
    assert np.allclose([h["loss"] for h in state["history"][1:]], losses, rtol=1e-5, atol=0)
    moved = 0.0
    for (name, ours), theirs in zip(load_method(out).named_parameters(), reference.parameters(), strict=True):
        assert torch.allclose(ours, theirs, rtol=0, atol=1e-5), name
        moved = max(moved, float((ours.detach() - start[name]).abs().max()))
    assert moved > 1e-3, "the two resumed steps changed the weights by far more than the tolerance"
