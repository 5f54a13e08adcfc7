"""Run the protocol on a DAVIS folder: propagate every sequence to palette PNGs, then score them.

Results are written in the official submission layout (`<out>/<sequence>/<frame>.png`, indexed PNGs
with the DAVIS palette), so the official toolkit can score them as well; `score_results` reads them
back exactly as the toolkit does. With online adaptation (`vos_lab.adaptation`, chapter 4) each sequence's
propagated masks are the pseudo labels of a U-Net trained on that video, whose predictions are written instead.
Each sequence is written into a hidden folder beside its target and moved
into place when complete, so a failed or interrupted run never leaves a half-written sequence.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from vos_lab.adaptation import AdaptConfig, adapt_video
from vos_lab.data.davis import DavisDataset, DavisSequence, read_mask_raw, save_palette_png
from vos_lab.errors import VosLabError
from vos_lab.metrics import evaluate_sequence, summarize
from vos_lab.models.encoders import FrameEncoder
from vos_lab.paths import atomic_folder
from vos_lab.propagation import PropagationConfig, propagate_video


@dataclass
class PropagationRun:
    """What `propagate_dataset` did: sequences, frames and wall-clock seconds."""

    sequences: list[str] = field(default_factory=list)
    frames: int = 0
    seconds: float = 0.0

    @property
    def seconds_per_frame(self) -> float:
        return self.seconds / max(self.frames, 1)


def predict_sequence(encoder: FrameEncoder, sequence: DavisSequence,
                     config: PropagationConfig) -> Iterator[np.ndarray]:
    """Yield the predicted id map of every frame of one sequence (frame 0 = its annotation)."""
    first_ids, _ = sequence.mask(0)
    yield from propagate_video(lambda frame: encoder.encode(frame)[0], sequence.frame, len(sequence),
                               first_ids, config, encoder.stride)


def write_sequence(folder: Path, names: Iterable[str], id_maps: Iterable[np.ndarray],
                   bar: tqdm | None = None) -> None:
    """Write each id map as `folder/<name>.png`, all or nothing: into a temporary folder beside `folder`,
    which then replaces it (and a previous result of the sequence). `bar` counts the frames."""
    with atomic_folder(folder, replace=True) as tmp:  # hidden while partial: evaluate never reads it
        for name, ids in zip(names, id_maps, strict=True):
            save_palette_png(tmp / f"{name}.png", ids)
            if bar is not None:
                bar.update(1)


def adapt_sequence(sequence: DavisSequence, pseudo_ids: np.ndarray, adapt: AdaptConfig,
                   device: torch.device | str = "cpu", progress: bool = True) -> np.ndarray:
    """Online adaptation of one sequence on its propagated id maps (T, H, W): the U-Net's id maps."""
    frames = np.stack([sequence.frame(t) for t in range(len(sequence))])
    return adapt_video(frames, pseudo_ids, adapt, device, progress, desc=f"adapt {sequence.name}")


def propagate_dataset(encoder: FrameEncoder, dataset: DavisDataset, out_dir: Path, config: PropagationConfig,
                      names: list[str] | None = None, progress: bool = True,
                      adapt: AdaptConfig | None = None) -> PropagationRun:
    """Propagate the first-frame masks of each sequence and write `out_dir/<seq>/<frame>.png`; with `adapt`,
    write the predictions of a U-Net adapted to the propagated masks instead (online adaptation)."""
    run = PropagationRun()
    sequences = dataset.sequences(names)
    start = time.perf_counter()
    with tqdm(total=sum(len(s) for s in sequences), unit="frame", disable=not progress,
              desc=f"propagate ({encoder.name})") as bar:
        for sequence in sequences:
            bar.set_postfix_str(sequence.name)
            ids = predict_sequence(encoder, sequence, config)
            if adapt is not None:
                ids = adapt_sequence(sequence, np.stack(list(ids)), adapt, encoder.device, progress)
            write_sequence(Path(out_dir) / sequence.name, sequence.frame_names, ids, bar)
            run.sequences.append(sequence.name)
            run.frames += len(sequence)
    run.seconds = time.perf_counter() - start
    return run


def read_results(results_dir: Path, sequence: DavisSequence) -> np.ndarray:
    """The predicted id maps (T, H, W) of one sequence, checked for missing frames and sizes."""
    folder = Path(results_dir) / sequence.name
    paths = [folder / f"{name}.png" for name in sequence.frame_names]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise VosLabError(f"{folder}: {len(missing)} of {len(paths)} result frames missing (first: {missing[0]})")
    masks = [read_mask_raw(p) for p in paths]
    for path, mask in zip(paths, masks, strict=True):
        if mask.shape != sequence.frame_size:
            raise VosLabError(f"{path}: size {mask.shape[1]}x{mask.shape[0]} differs from the frames' "
                              f"{sequence.frame_size[1]}x{sequence.frame_size[0]}")
    return np.stack(masks)


def adapt_results(dataset: DavisDataset, pseudo_dir: Path, out_dir: Path, adapt: AdaptConfig,
                  names: list[str] | None = None, device: torch.device | str = "cpu", progress: bool = True) -> None:
    """Online adaptation on propagated masks already written in `pseudo_dir` (submission layout): the U-Net's
    masks of each sequence to `out_dir/<seq>/<frame>.png` (re-uses one propagation for several settings)."""
    for sequence in dataset.sequences(names):
        ids = adapt_sequence(sequence, read_results(pseudo_dir, sequence), adapt, device, progress)
        write_sequence(Path(out_dir) / sequence.name, sequence.frame_names, ids)


@dataclass
class Scores:
    """Global row and per-object rows with the toolkit's columns, plus every per-frame score."""

    global_row: dict[str, float]
    per_object_rows: list[dict]
    per_sequence: dict


def score_results(dataset: DavisDataset, results_dir: Path, names: list[str] | None = None,
                  progress: bool = True) -> Scores:
    """J and F of every object of every sequence, as the official DAVIS toolkit computes them."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise VosLabError(f"{results_dir}: results folder not found")
    per_sequence = {}
    for sequence in tqdm(dataset.sequences(names), desc="evaluate", unit="seq", disable=not progress):
        gt_ids, void = sequence.masks()
        n_objects = len(sequence.object_ids)
        per_sequence[sequence.name] = evaluate_sequence(gt_ids, read_results(results_dir, sequence), void,
                                                        n_objects)
    global_row, per_object_rows = summarize(per_sequence)
    return Scores(global_row, per_object_rows, per_sequence)


def validation_jf(dataset: DavisDataset, names: list[str] | None = None, max_frames: int | None = None,
                  config: PropagationConfig | None = None) -> Callable[[FrameEncoder], dict[str, float]]:
    """The training loop's periodic evaluation: J&F of an encoder on the first `max_frames` frames of
    `names` (default: all sequences), propagated in memory with the protocol (default config)."""
    config = config or PropagationConfig()
    sequences = [s.head(max_frames) for s in dataset.sequences(names)]
    ground_truth = {s.name: s.masks() for s in sequences}

    def evaluate(encoder: FrameEncoder) -> dict[str, float]:
        per_sequence = {}
        for sequence in sequences:
            gt_ids, void = ground_truth[sequence.name]
            predicted = np.stack(list(predict_sequence(encoder, sequence, config)))
            per_sequence[sequence.name] = evaluate_sequence(gt_ids, predicted, void, len(sequence.object_ids))
        row, _ = summarize(per_sequence)
        return {"J&F": row["J&F-Mean"], "J": row["J-Mean"], "F": row["F-Mean"]}

    return evaluate
