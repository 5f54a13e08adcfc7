"""MAST: one of a/b dropped, Huber regression of the dropped channel, gaps {2, 5, 8}, Lab at test time."""

import json

import numpy as np
import torch

from vos_lab.cli import main
from vos_lab.data.clips import ClipSampler, synthetic_videos
from vos_lab.data.davis import read_mask_raw
from vos_lab.methods.mast import MastMethod, drop_ab_channel, dropped_channel
from vos_lab.profiles import get_profile
from vos_lab.training.checkpoints import load_checkpoint, load_method
from vos_lab.training.run import method_for_profile

SMALL = {"width": 8, "multipliers": (1, 2, 2, 2), "embed_dim": 16}


def test_exactly_one_of_a_b_is_dropped_in_every_frame():
    inputs = torch.ones(64, 2, 3, 4, 4)
    out, channel = drop_ab_channel(inputs, torch.Generator().manual_seed(0))
    zero = out[:, :, :, 0, 0] == 0  # (B, T, 3)
    assert (zero == zero[:, :1]).all(), "the same channel in both frames"
    assert (zero[:, 0].sum(1) == 1).all() and not zero[:, 0, 0].any(), "exactly one, never L"
    assert torch.equal(zero[:, 0].float().argmax(1), channel) and set(channel.tolist()) == {1, 2}


def test_huber_target_is_the_dropped_channel():
    lab = torch.zeros(2, 2, 3, 16, 16)
    lab[:, :, 1] = 55.0  # a
    lab[:, :, 2] = -22.0  # b
    values = dropped_channel(lab, torch.tensor([1, 2]), (2, 2), scale=20.0)
    assert values.shape == (2, 2, 2, 2)
    assert torch.allclose(values[0], torch.full((2, 2, 2), 10.0)), "a: 55 / 110 x 20"
    assert torch.allclose(values[1], torch.full((2, 2, 2), -4.0)), "b: -22 / 110 x 20"


def test_loss_regresses_and_learns():
    torch.manual_seed(0)
    method = MastMethod(**SMALL)
    assert method.space == "lab" and method.gaps == (2, 5, 8) and method.clip_length == 2
    sampler = ClipSampler(synthetic_videos(2, 20, 96, 128, seed=0), method.clip_length, method.gaps, crop=64)
    batch = method.prepare(sampler.batch(2), torch.device("cpu"))
    optimizer = torch.optim.Adam(method.parameters(), lr=1e-2)
    torch.manual_seed(1)
    first, logs = method.loss(batch, 0)
    assert first.requires_grad and set(logs) == {"loss", "copy_same_place"}
    for _ in range(10):
        optimizer.zero_grad()
        torch.manual_seed(1)  # the same dropped channels every time
        method.loss(batch, 0)[0].backward()
        optimizer.step()
    torch.manual_seed(1)
    assert method.loss(batch, 0)[0].item() < first.item()


def test_train_command_saves_the_weights_after_its_steps(tmp_path):
    out = tmp_path / "mast.pt"
    torch.manual_seed(0)
    assert main(["train", "mast", "--profile", "smoke", "--steps", "2", "--out", str(out)]) == 0
    state = load_checkpoint(out)
    assert state["step"] == 2 and [h["step"] for h in state["history"]] == [1, 2]
    assert state["config"] == method_for_profile("mast", get_profile("smoke")).config
    torch.manual_seed(0)
    init = dict(method_for_profile("mast", get_profile("smoke")).named_parameters())  # the run's initial weights
    trained = load_method(out)
    assert trained.frame_encoder().space == "lab"
    # Adam moves a weight by at most about lr per step: 1e-3, then 5e-4 on the cosine schedule over 2 steps.
    moved = torch.stack([(weight - init[name]).abs().max() for name, weight in trained.named_parameters()])
    assert (moved > 0).all() and moved.max() <= 1.5e-3 * 1.01


def test_propagate_command_with_each_memory(synthetic_root, tmp_path):
    """Each memory propagates the masks (J&F 0.34-0.40 here, where empty masks score 0.19 and copying the
    first mask 0.08) and changes them."""
    masks = {}
    for memory, roi in (("mast", True), ("mast", False), ("previous", False)):
        out = tmp_path / f"{memory}-{roi}"
        args = ["propagate", "--davis", str(synthetic_root), "--out", str(out), "--features", "lab", "--memory", memory]
        assert main(args + (["--roi"] if roi else [])) == 0
        scores = tmp_path / f"{memory}-{roi}.json"
        assert main(["evaluate", "--davis", str(synthetic_root), "--results", str(out), "--json", str(scores)]) == 0
        assert json.loads(scores.read_text())["global"]["J&F-Mean"] > 0.3
        masks[memory, roi] = np.stack([read_mask_raw(path) for path in sorted(out.rglob("*.png"))])
        assert masks[memory, roi].shape == (16, 96, 160)
    # MAST's code searches coarse-to-fine only references more than 15 frames back: none in 8 frames.
    assert np.array_equal(masks["mast", True], masks["mast", False]), "near references skip the coarse search"
    assert not np.array_equal(masks["mast", False], masks["previous", False]), "more than the previous frame"
