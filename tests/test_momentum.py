"""Zhu et al. 2020: a query encoder trained by back-propagation, a key encoder following it by momentum."""

import pytest
import torch
from torch import nn

from vos_lab.cli import main
from vos_lab.data.clips import ClipSampler, synthetic_videos
from vos_lab.errors import VosLabError
from vos_lab.methods.momentum import TEST_ENCODER, MomentumMethod, momentum_at, momentum_update, weight_distance
from vos_lab.training.checkpoints import load_method
from vos_lab.training.loop import TrainConfig, train

SMALL = {"width": 8, "multipliers": (1, 2, 2, 2), "embed_dim": 16}


def test_momentum_update_is_the_moving_average():
    key, query = nn.Linear(2, 1), nn.Linear(2, 1)
    with torch.no_grad():
        key.weight.copy_(torch.tensor([[1.0, -2.0]]))
        key.bias.fill_(4.0)
        query.weight.copy_(torch.tensor([[3.0, 2.0]]))
        query.bias.fill_(0.0)
    momentum_update(key, query, 0.75)
    assert torch.allclose(key.weight, torch.tensor([[1.5, -1.0]])) and torch.allclose(key.bias, torch.tensor([3.0]))
    assert torch.equal(query.weight, torch.tensor([[3.0, 2.0]])), "the query is not touched"
    assert weight_distance(key, query) == pytest.approx((1.5**2 + 3.0**2 + 3.0**2) ** 0.5)
    momentum_update(key, query, 0.0)  # m = 0 copies the query
    assert weight_distance(key, query) == 0.0


def test_momentum_schedules():
    assert momentum_at(0, 0.999, "constant") == 0.999
    assert momentum_at(0, 0.999, "warmup") == pytest.approx(0.1)
    assert momentum_at(90, 0.999, "warmup") == pytest.approx(0.91)
    assert momentum_at(10**6, 0.999, "warmup") == 0.999


def test_options_are_checked():
    with pytest.raises(VosLabError, match="momentum"):
        MomentumMethod(momentum=1.5)
    with pytest.raises(VosLabError, match="momentum_schedule"):
        MomentumMethod(momentum_schedule="cosine")
    with pytest.raises(VosLabError, match="no 'both' encoder"):
        MomentumMethod(**SMALL).frame_encoder("both")


def test_training_moves_the_query_and_the_key_follows(tmp_path):
    torch.manual_seed(0)
    method = MomentumMethod(**SMALL, momentum=0.5, momentum_schedule="constant", lr=1e-2)
    assert method.gaps == (2, 5, 8) and method.space == "lab"
    assert not any(p.requires_grad for p in method.key_encoder.parameters())
    start = {name: p.detach().clone() for name, p in method.encoder.named_parameters()}
    assert weight_distance(method.key_encoder, method.encoder) == 0.0, "the key starts as a copy of the query"
    sampler = ClipSampler(synthetic_videos(2, 12, 64, 80, seed=0), 2, method.gaps, crop=48)
    result = train(method, sampler, tmp_path / "m.pt", TrainConfig(steps=3, batch_size=2), progress=False)
    moved = max(float((p.detach() - start[name]).abs().max()) for name, p in method.encoder.named_parameters())
    assert moved > 0, "back-propagation trains the query encoder"
    # with m = 0.5 the key ends strictly between the initial weights and the query's
    key_to_query = weight_distance(method.key_encoder, method.encoder)
    start_net = MomentumMethod(**SMALL).encoder
    start_net.load_state_dict({**start_net.state_dict(), **start})
    assert 0 < key_to_query < weight_distance(start_net, method.encoder)
    assert weight_distance(method.key_encoder, start_net) > 0, "the key moved toward the query"
    distances = [h["key_query_distance"] for h in result.history]
    assert distances[0] == 0.0 and distances[-1] > 0
    loaded = load_method(tmp_path / "m.pt")  # the key encoder is in the checkpoint
    assert weight_distance(loaded.key_encoder, method.key_encoder.cpu()) == 0.0
    assert loaded.frame_encoder("key").trunk is loaded.key_encoder
    assert loaded.frame_encoder("query").trunk is loaded.encoder
    assert loaded.frame_encoder().trunk is loaded.frame_encoder(TEST_ENCODER).trunk


def test_train_refuses_a_checkpoint_of_another_method(tmp_path, capsys):
    other = tmp_path / "mast.pt"
    assert main(["train", "mast", "--profile", "smoke", "--steps", "1", "--out", str(other)]) == 0
    capsys.readouterr()
    before = other.read_bytes()
    assert main(["train", "momentum", "--profile", "smoke", "--steps", "1", "--out", str(other)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "method: 'mast' != 'momentum'" in errors[0], errors
    assert other.read_bytes() == before, "nothing is lost"
