"""Exercise 2.3 (CorrFlow's channel dropout): the check accepts the solution and the package's function, and
rejects versions that break one rule of the bottleneck."""

import pytest
import torch

from vos_lab.course import exercises
from vos_lab.methods.colourisation import channel_dropout


def _per_frame(inputs: torch.Tensor, probability: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Wrong: draws the channels for every frame separately."""
    return channel_dropout(inputs.flatten(0, 1)[:, None], probability, generator).view_as(inputs)


def _unscaled(inputs: torch.Tensor, probability: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Wrong: zeroes channels but does not rescale the kept ones."""
    out = channel_dropout(inputs, probability, generator)
    return torch.where(out == 0, out, inputs)


def _other_draws(inputs: torch.Tensor, probability: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Right rules, other random draws (the order of the package's draws changed)."""
    torch.rand(1, generator=generator)
    return channel_dropout(inputs, probability, generator)


def _always(inputs: torch.Tensor, probability: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Wrong: ignores the probability."""
    return channel_dropout(inputs, 1.0, generator)


def test_check_channel_dropout_accepts_the_solution_and_the_package(capsys):
    solution = exercises.solution(2, "channel_dropout")
    assert exercises.check_channel_dropout(solution) is solution
    assert exercises.check_channel_dropout(channel_dropout) is channel_dropout
    assert capsys.readouterr().out.count("channel_dropout: correct") == 2


def test_check_channel_dropout_runs_the_solution_for_a_stub(capsys):
    def stub(inputs, probability, generator=None):
        raise NotImplementedError

    assert exercises.check_channel_dropout(stub) is exercises.solution(2, "channel_dropout")
    assert "not done yet" in capsys.readouterr().out


@pytest.mark.parametrize(("wrong", "message"), [
    (_per_frame, "same channels"),
    (_unscaled, "rescale"),
    (_always, "probability 0"),
    (_other_draws, "random draws differ"),
])
def test_check_channel_dropout_rejects_wrong_versions(wrong, message):
    with pytest.raises(AssertionError, match=message):
        exercises.check_channel_dropout(wrong)
