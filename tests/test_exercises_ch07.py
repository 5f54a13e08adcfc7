"""Chapter 7's exercise check passes with the solution and fails with plausible mistakes."""

import pytest

from vos_lab.course import exercises


def _best_per_cost(cost, score):  # keeps only the single best method
    return [max(score, key=score.get)]


def _strict_only(cost, score):  # drops methods tied with another (both on the front)
    return [m for m in exercises.solution(7, "pareto_front")(cost, score)
            if not any(o != m and cost[o] == cost[m] and score[o] == score[m] for o in cost)]


def _ignores_ties(cost, score):  # "beaten" only when strictly better on both counts
    front = [m for m in cost if not any(cost[o] < cost[m] and score[o] > score[m] for o in cost)]
    return sorted(front, key=cost.get)


def _unsorted(cost, score):
    return exercises.solution(7, "pareto_front")(cost, score)[::-1]


def test_the_solution_passes(capsys):
    exercises.check_pareto_front(exercises.solution(7, "pareto_front"))
    assert "correct" in capsys.readouterr().out


@pytest.mark.parametrize("wrong", [_best_per_cost, _strict_only, _ignores_ties, _unsorted])
def test_mistakes_fail(wrong):
    with pytest.raises(AssertionError):
        exercises.check_pareto_front(wrong)


def test_a_stub_checks_the_solution(capsys):
    def stub(cost, score):
        raise NotImplementedError

    exercises.check_pareto_front(stub)
    assert "not done yet" in capsys.readouterr().out
