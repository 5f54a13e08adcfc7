"""Chapter 5's exercise check passes with the solution and fails with plausible mistakes."""

import pytest
import torch

from vos_lab.attention import pointer_weights
from vos_lab.course import exercises


def _per_video(queries, keys, temperature):  # the intra-video softmax, placed on the block diagonal
    return torch.block_diag(*[pointer_weights(queries[i:i + 1], keys[i:i + 1], temperature)[0]
                              for i in range(len(queries))])


def _over_queries(queries, keys, temperature):  # the softmax over the wrong axis
    return exercises.solution(5, "inter_video_softmax")(keys, queries, temperature).T


def _no_temperature(queries, keys, temperature):
    return exercises.solution(5, "inter_video_softmax")(queries, keys, 1.0)


def test_the_solution_passes(capsys):
    exercises.check_inter_video_softmax(exercises.solution(5, "inter_video_softmax"))
    assert "correct" in capsys.readouterr().out


@pytest.mark.parametrize("wrong", [_per_video, _over_queries, _no_temperature])
def test_mistakes_fail(wrong):
    with pytest.raises(AssertionError):
        exercises.check_inter_video_softmax(wrong)


def test_a_stub_checks_the_solution(capsys):
    def stub(queries, keys, temperature):
        raise NotImplementedError

    exercises.check_inter_video_softmax(stub)
    assert "not done yet" in capsys.readouterr().out
