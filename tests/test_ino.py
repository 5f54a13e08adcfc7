"""INO (chapter 6): the ViT/8 and its tokens, the three losses and their switches, masks, the EMA teacher,
block features for propagation and the command line's errors, all at tiny sizes."""

import math

import numpy as np
import pytest
import torch
from test_cli import _expect_error, run_main

from vos_lab.cli import main
from vos_lab.errors import VosLabError
from vos_lab.methods.ino import (
    PROFILE_SIZES,
    InoMethod,
    affinity_loss,
    in_generative_loss,
    out_generative_loss,
    patch_masks,
)
from vos_lab.models.dino import Centre, distillation_cross_entropy, ema_update, teacher_momentum
from vos_lab.models.vit import ViT
from vos_lab.profiles import get_profile
from vos_lab.training.checkpoints import load_method
from vos_lab.training.run import method_for_profile

LOSSES = ("out_generative", "in_generative", "affinity")


def tiny(**options) -> InoMethod:
    torch.manual_seed(0)
    return method_for_profile("ino", get_profile("smoke"), **options)


def clips_batch(method: InoMethod, batch: int = 2, size: int = 48) -> dict:
    clips = np.random.default_rng(0).integers(0, 256, (batch, 2, size, size, 3), dtype=np.uint8)
    return method.prepare(clips, torch.device("cpu"))


def test_profiles_size_the_vit():
    gpu = InoMethod.profile_config(get_profile("gpu"))
    config = {**InoMethod.defaults, **gpu}
    assert (config["vit_width"], config["depth"], config["heads"]) == (384, 12, 6), "ViT-S/8 in the gpu profile"
    assert config["momentum_steps"] == get_profile("gpu").train_steps
    cpu = tiny().config | PROFILE_SIZES["cpu"]
    assert cpu["vit_width"] == 192 and cpu["depth"] < 12
    assert tiny().config["vit_width"] < cpu["vit_width"]


def test_losses_are_finite_and_each_switch_changes_the_set():
    for switches in [(True, True, True), (False, True, True), (True, False, True), (True, True, False),
                     (True, False, False)]:
        method = tiny(**dict(zip(LOSSES, switches, strict=True)), mask_probability=1.0)
        loss, logs = method.loss(clips_batch(method), 0)
        assert math.isfinite(loss.item()) and loss.requires_grad
        assert {key for key in LOSSES if key in logs} == {key for key, on in zip(LOSSES, switches, strict=True) if on}
        assert logs["loss"] == pytest.approx(sum(logs[key] for key in LOSSES if key in logs), rel=1e-5)
    with pytest.raises(VosLabError, match="every loss is off"):
        tiny(out_generative=False, in_generative=False, affinity=False)


def test_mask_ratio_within_range_and_shared_across_frames():
    masks = patch_masks(400, 100, (0.1, 0.5), probability=1.0, generator=torch.Generator().manual_seed(0))
    fractions = masks.float().mean(1)
    assert fractions.min() >= 0.09 and fractions.max() <= 0.5 and fractions.std() > 0.05
    assert not patch_masks(10, 100, probability=0.0).any()
    some = patch_masks(1000, 16, probability=0.5, generator=torch.Generator().manual_seed(1)).any(1).float().mean()
    assert 0.4 < some < 0.6
    method = tiny(mask_probability=1.0, global_crops=2)
    seen = []
    vit_forward = method.student["vit"].forward

    def record(images, mask=None, block=None):
        seen.append(mask)
        return vit_forward(images, mask, block)

    method.student["vit"].forward = record
    method.loss(clips_batch(method, batch=3), 0)
    student_mask = seen[0].view(3, 2, 2, -1)  # (B, frames, global views, patches)
    assert student_mask.any() and (student_mask == student_mask[:, :1, :1]).all(), "one mask per sample"
    assert not (student_mask[0] == student_mask[1]).all(), "samples differ"
    assert seen[1] is None, "local views are never masked"


def test_out_generative_pairs_skip_the_same_frames_global_view():
    g = torch.Generator().manual_seed(0)
    teacher = torch.softmax(torch.randn(2, 2, 1, 5, generator=g), -1)
    student_global, student_local = torch.randn(2, 2, 1, 5, generator=g), torch.randn(2, 2, 3, 5, generator=g)
    terms = [distillation_cross_entropy(teacher[:, t, 0], s) for t in range(2)
             for s in [student_global[:, 1 - t, 0], *student_local.flatten(1, 2).unbind(1)]]
    assert torch.allclose(out_generative_loss(teacher, student_global, student_local), torch.stack(terms).mean())
    changed = student_global.clone()
    changed[:, 0] = torch.randn(2, 1, 5, generator=g)  # frame 0's own global view meets frame 1's teacher view
    assert not torch.allclose(out_generative_loss(teacher, changed, student_local),
                              out_generative_loss(teacher, student_global, student_local))


def test_in_generative_and_affinity_read_only_masked_positions():
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[0, :3] = True
    mask[1, 4] = True
    teacher = torch.softmax(torch.randn(2, 2, 1, 6, 8, generator=g), -1)
    student = torch.randn(2, 2, 1, 6, 8, generator=g)
    tokens_t, tokens_s = torch.randn(2, 2, 6, 8, generator=g), torch.randn(2, 2, 6, 8, generator=g)
    outside = student.clone()
    outside[:, :, :, ~mask[0]] += 3.0  # changes unmasked positions of sample 0 (and some of sample 1)
    outside[1] = student[1]
    assert torch.allclose(in_generative_loss(teacher, outside, mask), in_generative_loss(teacher, student, mask))
    assert in_generative_loss(teacher, student, torch.zeros_like(mask)) == 0
    moved = tokens_s.clone()
    moved[0, :, 3:] = torch.randn(2, 3, 8, generator=g)
    assert torch.allclose(affinity_loss(tokens_t, moved, mask), affinity_loss(tokens_t, tokens_s, mask))
    moved[0, :, 0] += 3
    assert not torch.allclose(affinity_loss(tokens_t, moved, mask), affinity_loss(tokens_t, tokens_s, mask))
    assert torch.isfinite(affinity_loss(tokens_t, tokens_s, torch.zeros_like(mask)))


def test_centre_sharpens_and_follows_the_teacher():
    centre = Centre(4)
    logits = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    assert centre.probabilities(logits)[0, 0] > 0.99, "temperature 0.04 sharpens"
    centre.update(logits)
    assert torch.allclose(centre.value, torch.tensor([0.1, 0.0, 0.0, 0.0]))


def test_ema_moves_the_teacher_toward_the_student():
    assert teacher_momentum(0, 100) == pytest.approx(0.996) and teacher_momentum(100, 100) == 1.0
    assert teacher_momentum(50, 100) == pytest.approx(0.998)
    method = tiny()
    optimizer = torch.optim.Adam(method.parameters(), lr=1e-2)
    loss, _ = method.loss(clips_batch(method), 0)
    loss.backward()
    optimizer.step()

    def distance() -> float:
        return sum(float((t - s.detach()).pow(2).sum()) for t, s in zip(method.teacher.parameters(),
                                                                method.student.parameters(), strict=True))

    before = distance()
    assert before > 0 and all(p.grad is None for p in method.teacher.parameters())
    method.after_step(0)
    assert 0 < distance() < before * 0.996**2 * 1.0001
    frozen = [p.clone() for p in method.teacher.parameters()]
    method.after_step(method.config["momentum_steps"])  # momentum 1: the teacher stays
    assert all(torch.equal(a, b) for a, b in zip(frozen, method.teacher.parameters(), strict=True))
    ema_update(method.teacher, method.student, 0.0)
    assert distance() == 0


def test_patch_tokens_have_stride_8_and_blocks_differ():
    method = tiny(test_stride=8).eval()
    frame = np.random.default_rng(0).integers(0, 256, (100, 150, 3), dtype=np.uint8)
    features = {block: method.frame_encoder(block).encode(frame) for block in (1, 2)}
    assert features[1].shape == (1, 48, 13, 19), "ceil(100 / 8) x ceil(150 / 8) tokens of width 48"
    half = tiny(test_stride=16).frame_encoder()
    assert half.stride == 16 and half.encode(frame).shape == (1, 48, 7, 10), "the frame at half size"
    assert torch.allclose(features[2].norm(dim=1), torch.ones(1, 13, 19), atol=1e-5)
    assert not torch.allclose(features[1], features[2])
    assert method.frame_encoder().name == "ino-block2"
    with pytest.raises(VosLabError, match="block 3 is out of range"):
        method.frame_encoder(3)
    attention = ViT(48, 2, 2, 32).attention(torch.randn(1, 3, 32, 40))
    assert attention.shape == (1, 2, 21, 21) and torch.allclose(attention.sum(-1), torch.ones(1, 2, 21))


def test_teacher_has_no_stochastic_depth():
    method = tiny(drop_path=0.5).train()
    assert method.student.training and not method.teacher.training


@pytest.fixture(scope="module")
def ino_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("ino") / "ino.pt"
    torch.manual_seed(0)
    assert main(["train", "ino", "--profile", "smoke", "--steps", "2", "--out", str(out)]) == 0
    return out


def test_trained_checkpoint_reloads_teacher_and_student(ino_checkpoint):
    method = load_method(ino_checkpoint)
    assert method.config["momentum_steps"] == 2, "the momentum spans the run's steps"
    assert any(not torch.equal(t, s) for t, s in zip(method.teacher.parameters(), method.student.parameters(),
                                                      strict=True)), "the student moved ahead of its teacher"


def test_propagate_with_a_block_and_its_errors(ino_checkpoint, synthetic_root, tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["propagate", "--davis", str(synthetic_root), "--out", str(out), "--features", str(ino_checkpoint),
                 "--block", "1"]) == 0
    assert len(list(out.rglob("*.png"))) == 16
    _expect_error(run_main(capsys, "propagate", "--davis", synthetic_root, "--out", tmp_path / "o", "--features",
                           ino_checkpoint, "--block", "9"), "block 9 is out of range: this ViT has blocks 1 to 2")
    _expect_error(run_main(capsys, "propagate", "--davis", synthetic_root, "--out", tmp_path / "o", "--features",
                           "lab", "--block", "1"), "no transformer blocks")
    assert not (tmp_path / "o").exists()


def test_block_with_a_cnn_checkpoint_and_cnn_options_for_ino(synthetic_root, tmp_path, capsys):
    cnn = tmp_path / "mast.pt"
    assert main(["train", "mast", "--profile", "smoke", "--steps", "1", "--out", str(cnn)]) == 0
    _expect_error(run_main(capsys, "propagate", "--davis", synthetic_root, "--out", tmp_path / "o", "--features", cnn,
                           "--block", "2"), "holds a mast model, a CNN")
    _expect_error(run_main(capsys, "train", "ino", "--profile", "smoke", "--out", tmp_path / "i.pt", "--option",
                           "multipliers=(1,2)"), "multipliers size a CNN encoder")
    _expect_error(run_main(capsys, "train", "ino", "--profile", "smoke", "--out", tmp_path / "i.pt", "--option",
                           "block=5"), "block 5 > depth 2")
    assert not (tmp_path / "i.pt").exists()


def test_bench_ino_step_reports_throughput():
    from vos_lab.bench import bench_ino_step

    figures = bench_ino_step("smoke", batch=1, steps=1, device="cpu", precisions=("float32",))["float32"]
    assert figures["seconds_per_step"] > 0 and figures["peak_mib"] > 0 and math.isfinite(figures["loss"])
    assert figures["frames"] == 2 and figures["views"] == 2 * (1 + PROFILE_SIZES["smoke"]["local_crops"])
