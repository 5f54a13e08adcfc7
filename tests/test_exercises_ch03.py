"""Chapter 3's exercise checks pass with the solutions and fail with plausible mistakes; its schematics draw."""

import matplotlib
import pytest
import torch
import torch.nn.functional as F

from vos_lab.course import exercises, plots

matplotlib.use("Agg")


def _solution(name):
    return exercises.solution(3, name)


def _full_window(h, w, cell, radius, dilation):  # forgets the frame's borders
    return (2 * radius + 1) ** 2


def _no_dilation(h, w, cell, radius, dilation):  # ignores the dilation
    return _solution("valid_positions")(h, w, cell, radius, 1)


def _at_or_above(truth, predicted, eps, draws):  # the truth when draw >= eps: probability 1 - eps
    return torch.where((draws >= eps).view(-1, 1, 1, 1), truth, predicted)


def _per_pixel(truth, predicted, eps, draws):  # one global choice instead of one per sample
    return truth if float(draws[0]) < eps else predicted


def _other_channel(lab, channel, size):  # regresses the kept channel
    return _solution("huber_target")(lab, 3 - channel, size)


def _unscaled(lab, channel, size):  # forgets / 110 x 20
    return _solution("huber_target")(lab, channel, size) * 110.0 / 20.0


def _first_sample_channel(lab, channel, size):  # the same channel for every sample
    return F.adaptive_avg_pool2d(lab[:, :, int(channel[0])], size) / 110.0 * 20.0


CASES = {"valid_positions": (exercises.check_valid_positions, [_full_window, _no_dilation]),
         "scheduled_colours": (exercises.check_scheduled_colours, [_at_or_above, _per_pixel]),
         "huber_target": (exercises.check_huber_target, [_other_channel, _unscaled, _first_sample_channel])}


@pytest.mark.parametrize("name", CASES)
def test_check_passes_with_the_solution(name, capsys):
    CASES[name][0](_solution(name))
    assert f"{name}: correct" in capsys.readouterr().out


@pytest.mark.parametrize("name, wrong", [(name, wrong) for name, (_, wrongs) in CASES.items() for wrong in wrongs])
def test_check_fails_with_a_wrong_version(name, wrong):
    with pytest.raises(AssertionError):
        CASES[name][0](wrong)


@pytest.mark.parametrize("name", CASES)
def test_a_stub_falls_back_to_the_solution(name, capsys):
    def stub(*args):
        raise NotImplementedError

    CASES[name][0](stub)
    out = capsys.readouterr().out
    assert "not done yet" in out and f"{name}: correct" in out


def test_schematics_have_titles_and_labelled_axes():
    figures = [plots.corrflow_schematic(),
               plots.memory_timeline({1: [0], 6: [0, 5, 1, 3], 9: [0, 5, 8, 6, 4]}, (0, 5), "memory")]
    for fig in figures:
        ax = fig.axes[0]
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    grid = figures[1].axes[0].images[0].get_array()
    assert grid.shape == (10, 3) and grid[5, 1] == 2 and grid[8, 2] == 1 and grid[7, 2] == 0
