"""Benchmark: windowed vs plain dense propagation, same features, same video.

Each implementation runs in its own fresh process, so its peak resident memory (ru_maxrss) above the
memory it had once the features were computed is the propagation's own peak. Prints seconds per frame,
peak memory, their ratios, and the J&F of both outputs against the ground truth.
"""

from __future__ import annotations

import multiprocessing
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vos_lab.data.davis import DavisDataset, DavisSequence
from vos_lab.features import build_encoder
from vos_lab.metrics import evaluate_sequence, summarize
from vos_lab.propagation import PropagationConfig, dense_propagation, propagate_video, windowed_propagation

IMPLEMENTATIONS = {"windowed": windowed_propagation, "dense": dense_propagation}


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _run(implementation: str, features: list[torch.Tensor], first_ids: np.ndarray,
         config: PropagationConfig) -> tuple[float, int, np.ndarray]:
    """In a child process: propagate with one implementation; (s/frame, peak bytes, predictions)."""
    function = IMPLEMENTATIONS[implementation]

    def step(query, keys, labels, c: PropagationConfig) -> torch.Tensor:
        return function(query, keys, labels, c.radius, c.topk, c.temperature)

    before = _peak_rss_bytes()
    start = time.perf_counter()
    # The features are precomputed: the "frame" of index i is i itself, and encoding it looks it up.
    predictions = list(propagate_video(features.__getitem__, lambda i: i, len(features), first_ids, config,
                                       step=step))
    seconds = (time.perf_counter() - start) / (len(features) - 1)
    return seconds, _peak_rss_bytes() - before, np.stack(predictions)


def _video(davis: Path | None, sequence: str | None, split: str | None, height: int, width: int,
           frames: int) -> DavisSequence:
    if davis is None:
        from vos_lab.data.synthetic import write_synthetic_davis

        root = Path(tempfile.mkdtemp(prefix="vos_lab-bench-"))
        write_synthetic_davis(root, sequences=1, frames=frames, height=height, width=width, seed=0)
        davis, split = root, "val"
    dataset = DavisDataset(davis, split=split or "val")
    return dataset.sequence(sequence or dataset.names[0])


def bench_propagation(features: str, config: PropagationConfig, height: int = 480, width: int = 854,
                      frames: int = 12, davis: Path | None = None, sequence: str | None = None,
                      split: str | None = None) -> dict[str, dict[str, float]]:
    """Time and peak memory of both implementations; returns and prints the figures."""
    video = _video(davis, sequence, split, height, width, frames)
    encoder = build_encoder(features)
    encoded = [encoder.encode(video.frame(i))[0] for i in range(len(video))]
    gt_ids, void = video.masks()
    print(f"video: {video.name}, {len(video)} frames of {video.frame_size[1]}x{video.frame_size[0]}; "
          f"features: {features}, {tuple(encoded[0].shape)}; {config}")
    figures: dict[str, dict[str, float]] = {}
    spawn = multiprocessing.get_context("spawn")
    for name in IMPLEMENTATIONS:
        with spawn.Pool(1) as pool:
            seconds, peak, predicted = pool.apply(_run, (name, encoded, gt_ids[0], config))
        scores = evaluate_sequence(gt_ids, predicted, void, int(gt_ids[0].max()))
        global_row, _ = summarize({video.name: scores})
        figures[name] = {"seconds_per_frame": seconds, "peak_mib": peak / 2**20, "J&F": global_row["J&F-Mean"]}
        print(f"{name:>9}: {seconds:7.3f} s/frame  peak {peak / 2**20:8.1f} MiB  J&F {global_row['J&F-Mean']:.4f}")
    win, dense = figures["windowed"], figures["dense"]
    print(f"windowed is {dense['seconds_per_frame'] / win['seconds_per_frame']:.1f}x faster, uses "
          f"{win['peak_mib'] / max(dense['peak_mib'], 1e-9):.3f} of the dense peak memory; "
          f"J&F difference {abs(win['J&F'] - dense['J&F']):.4f}")
    return figures
