"""MAST: one of a/b dropped, Huber regression of the dropped channel, gaps {2, 5, 8}, Lab at test time."""

import pytest
import torch

from vos_lab.cli import main
from vos_lab.data.clips import ClipSampler, synthetic_videos
from vos_lab.methods.mast import MastMethod, drop_ab_channel, dropped_channel

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


def test_train_command(tmp_path):
    out = tmp_path / "mast.pt"
    assert main(["train", "mast", "--profile", "smoke", "--steps", "2", "--out", str(out)]) == 0
    from vos_lab.training.checkpoints import load_encoder

    assert load_encoder(out).space == "lab"


@pytest.mark.parametrize("memory,roi", [("mast", True), ("previous", False)])
def test_propagate_command_with_memory(synthetic_root, tmp_path, memory, roi):
    out = tmp_path / memory
    args = ["propagate", "--davis", str(synthetic_root), "--out", str(out), "--features", "lab", "--memory", memory]
    assert main(args + (["--roi"] if roi else [])) == 0
    assert len(list(out.rglob("*.png"))) == 16
