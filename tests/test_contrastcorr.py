"""ContrastCorr: the inter-video softmax's blocks, sparsity, patch tracking, the loss switches, batch size 1."""

import pytest
import torch
import torch.nn.functional as F

from vos_lab.attention import pointer_weights
from vos_lab.cli import main
from vos_lab.data.clips import ClipSampler, synthetic_videos
from vos_lab.errors import VosLabError
from vos_lab.methods.contrastcorr import (
    TERMS,
    ContrastCorrMethod,
    batch_pointer_weights,
    box_around,
    crop_cells,
    form_pairs,
    own_video_mass,
    sparsity_loss,
    track,
)
from vos_lab.training.checkpoints import load_checkpoint

SMALL = {"width": 8, "multipliers": (1, 2, 2, 2), "embed_dim": 16, "warmup_steps": 0, "cosine": True,
         "temperature": 0.1}


def test_inter_video_softmax_is_one_softmax_over_all_videos_with_own_blocks_as_intra_logits():
    g = torch.Generator().manual_seed(0)
    queries, keys = torch.randn(3, 8, 5, generator=g), torch.randn(3, 8, 4, generator=g)
    weights = batch_pointer_weights(queries, keys, 0.5)
    assert weights.shape == (15, 12)
    assert torch.allclose(weights.sum(1), torch.ones(15))
    blocks = weights.view(3, 5, 3, 4)
    for i in range(3):  # the own block, renormalised, is the intra-video softmax of that video
        own = blocks[i, :, i]
        assert torch.allclose(own / own.sum(1, keepdim=True), pointer_weights(queries[i:i + 1], keys[i:i + 1], 0.5)[0],
                              atol=1e-6)
        # row block i: video i's queries against the keys of every video, one softmax over all of them
        logits = torch.cat([queries[i].T @ keys[j] / 0.5 for j in range(3)], dim=1)  # (5, 12)
        assert torch.allclose(weights[i * 5: i * 5 + 5], torch.softmax(logits, dim=1), atol=1e-6)
    assert torch.allclose(own_video_mass(weights, 3), torch.stack([blocks[i, :, i].sum(-1) for i in range(3)]))


def test_sparsity_is_zero_when_all_mass_is_in_the_own_video_and_grows_with_leaks():
    block_diagonal = torch.block_diag(*[torch.full((2, 3), 1 / 3)] * 4)  # (8, 12): rows sum to 1 inside their video
    assert sparsity_loss(block_diagonal, 4).item() == 0.0
    leaked = block_diagonal * 0.75 + 0.25 / 12
    assert sparsity_loss(leaked, 4).item() == pytest.approx(0.25 - 0.25 * 3 / 12)
    # videos whose features are far apart (orthogonal, cold softmax): next to no mass leaks
    features = F.one_hot(torch.arange(4), 4).float()[:, :, None].expand(4, 4, 6)
    assert sparsity_loss(batch_pointer_weights(features, features, 0.01), 4).item() < 1e-6


def test_crop_is_a_slice_at_whole_cells_and_differentiable_in_its_corner():
    maps = torch.randn(2, 3, 10, 12)
    corner = torch.tensor([[2.0, 5.0], [0.0, 0.0]], requires_grad=True)
    crop = crop_cells(maps, corner, 4)
    assert torch.allclose(crop[0], maps[0, :, 2:6, 5:9], atol=1e-5) and torch.allclose(crop[1], maps[1, :, :4, :4],
                                                                                        atol=1e-5)
    crop.sum().backward()
    assert corner.grad is not None and corner.grad.abs().sum() > 0
    assert torch.allclose(crop_cells(maps, torch.tensor([[2.5, 5.0]] * 2), 4)[0],
                          (maps[0, :, 2:6, 5:9] + maps[0, :, 3:7, 5:9]) / 2, atol=1e-5)
    assert box_around(torch.tensor([[0.0, 11.0]]), 4, 10, 12).tolist() == [[0.0, 8.0]]


def test_tracking_follows_a_shifted_pattern():
    g = torch.Generator().manual_seed(0)
    frame0 = F.normalize(torch.randn(2, 32, 16, 20, generator=g), dim=1)
    shifts = [(3, -4), (-2, 5)]
    frame1 = torch.stack([torch.roll(frame0[i], s, dims=(1, 2)) for i, s in enumerate(shifts)])
    corner = torch.tensor([[5.0, 7.0], [6.0, 6.0]])
    reference = crop_cells(frame0, corner, 6)
    centre = track(reference, frame1, temperature=0.02)
    moved = box_around(centre, 6, 16, 20)
    assert torch.allclose(moved, corner + torch.tensor(shifts).float(), atol=0.05), moved
    assert torch.allclose(crop_cells(frame1, moved, 6), reference, atol=0.05)
    # form_pairs does the same on (B, 2, C, h, w) maps: the target crop lands on the reference's content
    features, colours = torch.stack([frame0, frame1], 1), torch.stack([frame0[:, :3], frame1[:, :3]], 1)
    pairs = form_pairs(features, colours, 6, tracked=True, temperature=0.02, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(pairs.target_corner - pairs.reference_corner, torch.tensor(shifts).float(), atol=0.05)
    assert torch.allclose(pairs.target, pairs.reference, atol=0.05)
    untracked = form_pairs(features, colours, 6, tracked=False, temperature=0.02)
    assert torch.equal(untracked.target_corner, untracked.reference_corner)


@pytest.fixture(scope="module")
def batch():
    method = ContrastCorrMethod(**SMALL)
    sampler = ClipSampler(synthetic_videos(2, 10, 72, 96, seed=0), 2, method.gaps, crop=64, seed=0)
    return method.prepare(sampler.batch(3), torch.device("cpu"))


def _loss(batch, step=0, **options):
    torch.manual_seed(0)
    method = ContrastCorrMethod(**SMALL | options)
    torch.manual_seed(1)
    return method.loss(batch, step)


def test_each_switch_changes_the_loss_set(batch):
    full, logs = _loss(batch)
    assert set(TERMS) <= set(logs)
    for term in TERMS:
        off, off_logs = _loss(batch, **{term: 0.0})
        assert set(off_logs) == set(logs) - {term}, term
        assert off.item() != pytest.approx(full.item()), term
    _, warm = _loss(batch, step=3, warmup_steps=5)
    assert set(warm) == {"loss", "intra", "backward", "shift"}, "no inter-video terms during the warm-up"
    with pytest.raises(VosLabError, match="intra or backward"):
        ContrastCorrMethod(**SMALL, intra=0.0, backward=0.0)


def test_a_batch_of_one_trains_as_the_intra_only_model_with_a_warning(batch):
    single = {k: v[:1] for k, v in batch.items()}
    with pytest.warns(UserWarning, match="batch of 1"):
        loss, logs = _loss(single)
    assert not {"inter", "consistency", "sparsity"} & set(logs)
    intra_only, _ = _loss(single, inter=0.0, consistency=0.0, sparsity=0.0)
    assert loss.item() == pytest.approx(intra_only.item())


def test_training_steps_run_with_finite_loss_and_the_tracker_moves_crops(tmp_path):
    out = tmp_path / "cc.pt"
    torch.manual_seed(0)
    assert main(["train", "contrastcorr", "--profile", "smoke", "--steps", "4", "--out", str(out),
                 "--option", "warmup_steps=2"]) == 0
    state = load_checkpoint(out, torch.device("cpu"))
    history = state["history"]
    assert state["step"] == 4 and all(torch.isfinite(torch.tensor(h["loss"])) for h in history)
    assert "sparsity" not in history[1] and "sparsity" in history[2], "inter-video terms start after the warm-up"
    assert main(["train", "contrastcorr", "--profile", "smoke", "--out", str(tmp_path / "x.pt"),
                 "--option", "patch=2"]) == 2
