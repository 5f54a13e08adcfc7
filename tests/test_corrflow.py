"""CorrFlow: scheduled sampling, the recursive triplet loss with its cycle term, training through the CLI."""

import numpy as np
import pytest
import torch

from vos_lab.cli import main
from vos_lab.data.clips import ClipSampler, synthetic_videos
from vos_lab.methods.corrflow import CorrFlowMethod, sampling_probability
from vos_lab.methods.registry import build_method
from vos_lab.training.checkpoints import load_checkpoint, load_encoder

SMALL = {"width": 8, "multipliers": (1, 2, 2, 2), "embed_dim": 16}


@pytest.fixture(scope="module")
def batch():
    torch.manual_seed(0)
    videos = synthetic_videos(2, 10, 96, 128, seed=0)
    method = CorrFlowMethod(**SMALL)
    method.fit(np.stack([v.frames[0] for v in videos]))
    sampler = ClipSampler(videos, method.clip_length, method.gaps, crop=64, seed=0)
    return method.centres.clone(), method.prepare(sampler.batch(2), torch.device("cpu"))


def test_sampling_schedule_decays_from_09_to_06():
    assert sampling_probability(0) == pytest.approx(0.9)
    assert sampling_probability(1000, steps=2000) == pytest.approx(0.75)
    assert sampling_probability(2000, steps=2000) == pytest.approx(0.6)
    assert sampling_probability(10**6, steps=2000) == pytest.approx(0.6)
    assert CorrFlowMethod(sampling=False, **SMALL).ground_truth_probability(5000) == 1.0


def _method(centres, **options):
    torch.manual_seed(0)
    method = CorrFlowMethod(**SMALL, **options)
    method.centres.copy_(centres)
    return method


def test_loss_has_reconstruction_and_cycle_terms(batch):
    centres, data = batch
    assert data["inputs"].shape == (2, 3, 3, 64, 64), "triplets of RGB frames"
    method = _method(centres)
    loss, logs = method.loss(data, step=0)
    assert loss.requires_grad and {"recon", "cycle", "eps", "colour_acc"} <= set(logs)
    assert loss.item() == pytest.approx(logs["recon"] + 0.1 * logs["cycle"], rel=1e-5)
    no_cycle = _method(centres, cycle_weight=0.0)
    loss, logs = no_cycle.loss(data, step=0)
    assert "cycle" not in logs and loss.item() == pytest.approx(logs["recon"], rel=1e-5)


def test_model_prediction_is_fed_back_when_eps_is_zero(batch):
    centres, data = batch
    method = _method(centres, eps_start=0.0, eps_end=0.0, cycle_weight=0.0).eval()
    truth = _method(centres, eps_start=1.0, eps_end=1.0, cycle_weight=0.0).eval()
    assert method.loss(data, 0)[1]["recon"] != pytest.approx(truth.loss(data, 0)[1]["recon"])


def test_loss_goes_down(batch):
    centres, data = batch
    method = _method(centres).eval()  # eval: no channel dropout, the same batch
    optimizer = torch.optim.Adam(method.parameters(), lr=1e-2)
    first = method.loss(data, 0)[0].item()
    for _ in range(10):
        optimizer.zero_grad()
        method.loss(data, 0)[0].backward()
        optimizer.step()
    assert method.loss(data, 0)[0].item() < first


def test_train_command_with_options(tmp_path, capsys):
    out = tmp_path / "corrflow.pt"
    assert main(["train", "corrflow", "--profile", "smoke", "--steps", "2", "--out", str(out),
                 "--option", "radius=3", "--option", "sampling=False"]) == 0
    state = load_checkpoint(out)
    config = state["config"]
    assert state["step"] == 2 and len(state["history"]) == 2
    assert config["method"] == "corrflow" and config["radius"] == 3 and config["sampling"] is False
    assert build_method(config).ground_truth_probability(10) == 1.0
    assert load_encoder(out).space == "rgb"
    assert main(["train", "corrflow", "--profile", "smoke", "--steps", "2", "--out", str(tmp_path / "x.pt"),
                 "--option", "colour=3"]) == 2
    assert "unknown option(s) colour" in capsys.readouterr().err
