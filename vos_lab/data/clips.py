"""Unlabeled training clips: videos held in memory, sampled as frame tuples with one shared crop.

Every method trains on short clips of a few frames with gaps between them (pairs for CorrFlow and
ContrastCorr, 3 references + 1 target for Vondrick et al., gaps {2, 5, 8} for MAST). Frames are
decoded once, resized so their short side is `short_side`, and kept as uint8 arrays, so sampling costs
a crop and a copy: the accelerator never waits for disk or decoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vos_lab.errors import VosLabError


@dataclass(frozen=True)
class Video:
    """A named stack of RGB frames (T, H, W, 3) uint8."""

    name: str
    frames: np.ndarray


def _resize_short(frame: np.ndarray, short_side: int) -> np.ndarray:
    h, w = frame.shape[:2]
    scale = short_side / min(h, w)
    size = (max(short_side, round(w * scale)), max(short_side, round(h * scale)))
    return np.asarray(Image.fromarray(frame).resize(size, Image.BILINEAR))


def video_from_frames(name: str, frames: Sequence[np.ndarray] | np.ndarray, short_side: int) -> Video:
    return Video(name, np.stack([_resize_short(f, short_side) for f in frames]))


def load_frame_folder(folder: Path, short_side: int, max_frames: int | None = None) -> Video:
    """A folder of JPEGs (a DAVIS sequence used without labels, or a `videos_to_frames` output)."""
    from vos_lab.data.davis import read_frame

    paths = sorted(p for p in Path(folder).glob("*.jpg") if not p.name.startswith("."))[:max_frames]
    if not paths:
        raise VosLabError(f"{folder}: no .jpg frames")
    return video_from_frames(Path(folder).name, [read_frame(p) for p in paths], short_side)


def load_video_file(path: Path, short_side: int, fps: float | None = 8, max_frames: int | None = None) -> Video:
    """A video file decoded with PyAV at `fps` (the papers subsample to 6-10 fps)."""
    from vos_lab.data.videos import read_video

    return Video(Path(path).stem, read_video(path, max_frames=max_frames, short_side=short_side, fps=fps))


def synthetic_videos(count: int, frames: int, height: int, width: int, seed: int) -> list[Video]:
    """Videos of the procedural generator, used without their masks."""
    from vos_lab.data.synthetic import generate_video, sequence_seed

    return [Video(f"synth-{i:03d}", generate_video(sequence_seed(seed, i), frames, height, width).frames)
            for i in range(count)]


class ClipSampler:
    """Draws clips of `length` frames from random videos: consecutive gaps drawn from `gaps`, one random
    crop of `crop` x `crop` shared by all frames (so a pixel's correspondence stays inside the crop),
    each frame's crop moved by up to `jitter` pixels (a simulated camera motion: without it, a static
    camera lets "same position" pass for correspondence).

    The generator state is part of a checkpoint, so a resumed run sees the same clips.
    """

    def __init__(self, videos: Sequence[Video], length: int = 2, gaps: Sequence[int] = (1, 2, 3, 4),
                 crop: int = 192, seed: int = 0, jitter: int = 0) -> None:
        self.videos = [v for v in videos if len(v.frames) > max(gaps) * (length - 1)]
        if not self.videos:
            raise VosLabError(f"no video has the {max(gaps) * (length - 1) + 1} frames a clip needs")
        small = [v.name for v in self.videos if min(v.frames.shape[1:3]) < crop]
        if small:
            raise VosLabError(f"crop {crop} is larger than the frames of: {', '.join(small[:5])}")
        self.length, self.gaps, self.crop, self.jitter = length, tuple(gaps), crop, jitter
        self.rng = np.random.default_rng(seed)
        self.weights = np.array([len(v.frames) for v in self.videos], dtype=float)
        self.weights /= self.weights.sum()

    def clip(self) -> np.ndarray:
        """One clip (length, crop, crop, 3) uint8."""
        video = self.videos[self.rng.choice(len(self.videos), p=self.weights)]
        steps = self.rng.choice(self.gaps, size=self.length - 1)
        start = self.rng.integers(0, len(video.frames) - steps.sum())
        index = start + np.concatenate([[0], np.cumsum(steps)])
        h, w = video.frames.shape[1:3]
        y, x = self.rng.integers(0, h - self.crop + 1), self.rng.integers(0, w - self.crop + 1)
        shifts = self.rng.integers(-self.jitter, self.jitter + 1, size=(self.length, 2))
        ys = np.clip(y + shifts[:, 0], 0, h - self.crop)
        xs = np.clip(x + shifts[:, 1], 0, w - self.crop)
        clip = np.stack([video.frames[i, y0: y0 + self.crop, x0: x0 + self.crop]
                         for i, y0, x0 in zip(index, ys, xs, strict=True)])
        return clip[:, :, ::-1] if self.rng.random() < 0.5 else clip  # the same horizontal flip for all frames

    def batch(self, size: int) -> np.ndarray:
        """A batch of clips (B, length, crop, crop, 3) uint8."""
        return np.stack([self.clip() for _ in range(size)])

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def load_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state
