"""`bench propagation`: figures measured per run in fresh processes, identical masks, no folder left behind."""

import tempfile

import torch

from vos_lab.bench import _in_fresh_process, _measure, bench_propagation
from vos_lab.propagation import PropagationConfig


def _touch(megabytes: int) -> float:
    """Allocate and write `megabytes` MiB (none for 0)."""
    return float(torch.ones(megabytes * 2**18).sum()) if megabytes else 0.0


def test_peak_is_measured_per_run():
    _, seconds, big = _in_fresh_process(_measure, "cpu", _touch, 200)
    _, _, small = _in_fresh_process(_measure, "cpu", _touch, 0)
    assert seconds > 0
    assert big >= 180 * 2**20, "the 200 MiB buffer is counted"
    assert small < 20 * 2**20, "a run that allocates nothing does not inherit another run's peak"


def test_bench_propagation_on_a_tiny_synthetic_video(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    config = PropagationConfig(radius=3, topk=5, context=2)
    figures = bench_propagation("lab", config, height=64, width=112, frames=4)
    for name in ("windowed", "dense"):
        assert figures[name]["seconds_per_frame"] > 0
        assert figures[name]["peak_mib"] > 0
        assert 0 <= figures[name]["J&F"] <= 1
    assert figures["masks"]["differing_pixels"] == 0 and figures["masks"]["identical"] == 1.0
    assert figures["windowed"]["J&F"] == figures["dense"]["J&F"]
    assert not list(tmp_path.glob("vos_lab-bench-*")), "the synthetic video's folder is removed"


def test_bench_adapt_on_a_tiny_synthetic_video(tmp_path, monkeypatch, capsys):
    from vos_lab.adaptation import AdaptConfig
    from vos_lab.bench import bench_adapt

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    figures = bench_adapt(AdaptConfig(iters=2, size=32, width=4), "lab", PropagationConfig(radius=3, context=2),
                          height=64, width=112, frames=4)
    assert figures["seconds_per_frame"] > 0 and figures["peak_mib"] > 0
    assert 0 <= figures["J&F propagated"] <= 1 and 0 <= figures["J&F adapted"] <= 1
    assert "s/frame of the video" in capsys.readouterr().out
