"""Online adaptation (Zhu et al. 2020): a U-Net trained per video on propagated masks, CE + Dice."""

import numpy as np
import pytest
import torch
from helpers import write_davis2017

from vos_lab.adaptation import AdaptConfig, adapt_video, adaptation_loss, dice_loss, fit_unet
from vos_lab.cli import main
from vos_lab.data.davis import read_mask_raw
from vos_lab.errors import VosLabError
from vos_lab.models.unet import UNet
from vos_lab.profiles import get_profile

TINY = AdaptConfig(iters=3, size=16, width=4, depth=2)


def test_unet_keeps_any_size():
    torch.manual_seed(0)
    assert UNet(3, 4, width=4, depth=3)(torch.randn(2, 3, 21, 35)).shape == (2, 4, 21, 35)


def test_dice_loss():
    ids = torch.randint(0, 3, (2, 32, 32), generator=torch.Generator().manual_seed(0))
    perfect = 100.0 * torch.nn.functional.one_hot(ids, 3).permute(0, 3, 1, 2).float()
    assert dice_loss(perfect, ids) < 1e-6
    assert dice_loss(perfect, (ids + 1) % 3) > 0.99, "all wrong: Dice near 0"
    assert adaptation_loss(perfect, ids) < 1e-6 < adaptation_loss(perfect.roll(1, dims=1), ids)


def test_config_is_checked():
    with pytest.raises(VosLabError, match="iters"):
        AdaptConfig(iters=0)
    with pytest.raises(VosLabError, match="adapt-iters"):
        AdaptConfig.from_profile(get_profile("smoke"), iters=-3)
    smoke = AdaptConfig.from_profile(get_profile("smoke"))
    assert (smoke.iters, smoke.size) == (get_profile("smoke").adapt_iters, get_profile("smoke").adapt_size)
    assert AdaptConfig.from_profile(get_profile("gpu")).iters == 200, "the paper's 200 iterations on the GPU"


def test_fit_unet_learns_a_mask_and_keeps_snapshots():
    torch.manual_seed(0)
    image = torch.randn(1, 3, 16, 16)
    labels = (image[:, 0] > 0).long()  # a mask the image explains
    fit = fit_unet(image, labels, 2, AdaptConfig(iters=60, size=16, width=4, depth=2, lr=1e-2), snapshots=(0, 60),
                   progress=False)
    assert len(fit.losses) == 60 and fit.losses[-1] < fit.losses[0]
    assert set(fit.snapshots) == {0, 60} and fit.snapshots[60].shape == (1, 16, 16)
    assert (fit.snapshots[60] == labels).float().mean() > (fit.snapshots[0] == labels).float().mean()
    assert (fit.snapshots[60] == labels).float().mean() > 0.9


def test_adapt_video_is_seeded_keeps_frame_0_and_covers_every_object():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, 24, 40, 3), dtype=np.uint8)
    pseudo = np.zeros((4, 24, 40), dtype=np.uint8)
    pseudo[:, 4:12, 4:20], pseudo[:, 14:22, 20:36] = 1, 2
    first = adapt_video(frames, pseudo, TINY, progress=False)
    again = adapt_video(frames, pseudo, TINY, progress=False)
    assert first.shape == pseudo.shape and first.dtype == np.uint8 and first.max() <= 2
    assert np.array_equal(first, again), "seeded"
    assert np.array_equal(first[0], pseudo[0]), "frame 0 is the given annotation"
    with pytest.raises(VosLabError, match="pseudo labels"):
        adapt_video(frames, np.where(np.arange(4)[:, None, None] > 0, 3, pseudo).astype(np.uint8), TINY,
                    progress=False)


def test_propagate_online_adapt_sees_no_ground_truth_beyond_frame_0(tmp_path, capsys):
    root = write_davis2017(tmp_path / "davis", frames=4)
    for path in sorted((root / "Annotations" / "480p" / "seq").glob("*.png"))[1:]:
        path.unlink()  # only frame 0 is annotated: the adaptation cannot have read the others
    out = tmp_path / "adapted"
    args = ["propagate", "--davis", str(root), "--out", str(out), "--features", "lab", "--online-adapt",
            "--profile", "smoke", "--adapt-iters", "2"]
    assert main(args) == 0
    assert "online adaptation 2 iterations" in capsys.readouterr().out
    masks = [read_mask_raw(p) for p in sorted((out / "seq").glob("*.png"))]
    assert len(masks) == 4 and masks[0].shape == (48, 64)


@pytest.mark.parametrize("extra, message", [(["--online-adapt", "--adapt-iters", "0"], "--adapt-iters 0"),
                                            (["--online-adapt", "--adapt-iters", "-5"], "--adapt-iters -5"),
                                            (["--adapt-iters", "5"], "needs --online-adapt")])
def test_bad_adaptation_is_one_error_line_before_anything_is_written(tmp_path, capsys, extra, message):
    root = write_davis2017(tmp_path / "davis", frames=3)
    out = tmp_path / "out"
    assert main(["propagate", "--davis", str(root), "--out", str(out), "--features", "lab", *extra]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error:") and message in errors[0], errors
    assert not out.exists()
