"""Chapter 4's exercise check passes with the solution and fails with plausible mistakes."""

import pytest
import torch

from vos_lab.course import exercises


@torch.no_grad()
def _swapped(key, query, m):  # m on the query: the key jumps to the query
    for k, q in zip(key.parameters(), query.parameters(), strict=True):
        k.copy_((1 - m) * k + m * q)


@torch.no_grad()
def _moves_query(key, query, m):  # updates both encoders toward each other
    for k, q in zip(key.parameters(), query.parameters(), strict=True):
        k_old = k.clone()
        k.copy_(m * k + (1 - m) * q)
        q.copy_(m * q + (1 - m) * k_old)


def _weights_only(key, query, m):  # forgets the biases
    with torch.no_grad():
        for (name, k), q in zip(key.named_parameters(), query.parameters(), strict=True):
            if name.endswith("weight"):
                k.copy_(m * k + (1 - m) * q)


def test_solution_passes():
    exercises.check_momentum_update(exercises.solution(4, "momentum_update"))


@pytest.mark.parametrize("wrong", [_swapped, _moves_query, _weights_only])
def test_mistakes_fail(wrong):
    with pytest.raises(AssertionError):
        exercises.check_momentum_update(wrong)


def test_a_stub_checks_the_solution(capsys):
    def stub(key, query, m):
        raise NotImplementedError

    exercises.check_momentum_update(stub)
    assert "not done yet" in capsys.readouterr().out
