"""Chapter 6's exercise check passes with the solution and fails with plausible mistakes."""

import pytest
import torch
import torch.nn.functional as F

from vos_lab.course import exercises


def _all_patches(teacher, student, mask):  # averages over every patch, masked or not
    return -(teacher * F.log_softmax(student / 0.1, dim=-1)).sum(-1).mean()


def _no_temperature(teacher, student, mask):  # forgets the student's temperature 0.1
    return exercises.solution(6, "masked_token_loss")(teacher, student * 0.1, mask)


def _nan_without_mask(teacher, student, mask):  # divides by the count even when it is 0
    ce = -(teacher * F.log_softmax(student / 0.1, dim=-1)).sum(-1)
    return (ce * mask).sum() / mask.sum()


def test_solution_passes(capsys):
    exercises.check_masked_token_loss(exercises.solution(6, "masked_token_loss"))
    assert "correct" in capsys.readouterr().out


@pytest.mark.parametrize("mistake", [_all_patches, _no_temperature, _nan_without_mask])
def test_mistakes_fail(mistake):
    with pytest.raises(AssertionError):
        exercises.check_masked_token_loss(mistake)


def test_stub_checks_the_solution(capsys):
    def stub(teacher: torch.Tensor, student: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    exercises.check_masked_token_loss(stub)
    assert "not done yet" in capsys.readouterr().out
