"""Unlabeled training clips: videos held in memory or read on demand, sampled as frame tuples with one shared crop.

Every method trains on short clips of a few frames with gaps between them (pairs for CorrFlow and
ContrastCorr, 3 references + 1 target for Vondrick et al., gaps {2, 5, 8} for MAST). Frames are resized so
their short side is `short_side`. The small embedded data is decoded once and kept as uint8 arrays (`Video`);
a folder of frame folders or video files is only indexed (`FrameFolder`, `VideoFile`: names, frame counts,
sizes) and a clip reads just its frames, so a folder larger than the memory trains (`ClipDataset`,
`clip_batches`: a `torch.utils.data` pipeline with workers).

One sampling rule: clip number i is drawn from a generator seeded with (seed, i), whoever draws it (the main
process, any data-loader worker, any rank of a distributed run). So the clips do not depend on the number of
workers or processes, a resumed run only needs the count of clips drawn, and the ranks of a distributed run
split each global batch into disjoint parts (`ClipBatches`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from vos_lab.errors import VosLabError


class ClipSource(Protocol):
    """A video as the sampler sees it: a name, a frame count, the (height, width) of its resized frames, and
    its frames at given indices (N, H, W, 3) uint8."""

    name: str

    @property
    def length(self) -> int: ...

    @property
    def size(self) -> tuple[int, int]: ...

    def read(self, indices: Sequence[int]) -> np.ndarray: ...


@dataclass(frozen=True)
class Video:
    """A named stack of RGB frames (T, H, W, 3) uint8, held in memory."""

    name: str
    frames: np.ndarray

    @property
    def length(self) -> int:
        return len(self.frames)

    @property
    def size(self) -> tuple[int, int]:
        return self.frames.shape[1], self.frames.shape[2]

    def read(self, indices: Sequence[int]) -> np.ndarray:
        return self.frames[np.asarray(indices)]


def _short_side_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) of a frame resized so that its short side is `short_side`."""
    scale = short_side / min(height, width)
    return max(short_side, round(width * scale)), max(short_side, round(height * scale))


def _resize_short(frame: np.ndarray, short_side: int) -> np.ndarray:
    h, w = frame.shape[:2]
    return np.asarray(Image.fromarray(frame).resize(_short_side_size(w, h, short_side), Image.BILINEAR))


def _jpegs(folder: Path, max_frames: int | None) -> list[Path]:
    paths = sorted(p for p in Path(folder).glob("*.jpg") if not p.name.startswith("."))[:max_frames]
    if not paths:
        raise VosLabError(f"{folder}: no .jpg frames")
    return paths


@dataclass(frozen=True)
class FrameFolder:
    """A folder of JPEG frames read on demand: indexing it opens only the first frame's header."""

    name: str
    paths: tuple[Path, ...]
    short_side: int
    size: tuple[int, int]

    @classmethod
    def index(cls, folder: Path, short_side: int, max_frames: int | None = None) -> FrameFolder:
        paths = _jpegs(folder, max_frames)
        try:
            with Image.open(paths[0]) as image:
                width, height = _short_side_size(*image.size, short_side)
        except OSError as error:
            raise VosLabError(f"{paths[0]}: cannot read image ({error})") from None
        return cls(Path(folder).name, tuple(paths), short_side, (height, width))

    @property
    def length(self) -> int:
        return len(self.paths)

    def read(self, indices: Sequence[int]) -> np.ndarray:
        from vos_lab.data.davis import read_frame

        frames = [_resize_short(read_frame(self.paths[i]), self.short_side) for i in indices]
        odd = [self.paths[i] for i, f in zip(indices, frames, strict=True) if f.shape[:2] != self.size]
        if odd:
            raise VosLabError(f"{odd[0]}: frame size differs from the first frame of {self.name}")
        return np.stack(frames)


@dataclass(frozen=True)
class VideoFile:
    """A video file decoded on demand (PyAV, at `fps`): indexing it decodes it once to note the timestamps of
    the frames kept, converting none; reading seeks to the key frame before a clip's first frame and decodes to
    its last. A file without timestamps is decoded from its start to the clip's last frame instead."""

    path: Path
    short_side: int
    fps: float | None
    stamps: tuple[int | None, ...]
    size: tuple[int, int]

    @classmethod
    def index(cls, path: Path, short_side: int, fps: float | None = 8, max_frames: int | None = None) -> VideoFile:
        from vos_lab.data.videos import index_video

        stamps, size = index_video(path, fps=fps, short_side=short_side, max_frames=max_frames)
        return cls(Path(path), short_side, fps, tuple(stamps), size)

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def length(self) -> int:
        return len(self.stamps)

    def read(self, indices: Sequence[int]) -> np.ndarray:
        from vos_lab.data.videos import frames_at, read_video

        if None in self.stamps:
            return read_video(self.path, max(indices) + 1, self.short_side, self.fps)[np.asarray(indices)]
        return frames_at(self.path, [self.stamps[i] for i in indices], self.short_side)


def load_video_file(path: Path, short_side: int, fps: float | None = 8, max_frames: int | None = None) -> Video:
    """A video file decoded with PyAV at `fps` (the papers subsample to 6-10 fps), in memory."""
    from vos_lab.data.videos import read_video

    return Video(Path(path).stem, read_video(path, max_frames=max_frames, short_side=short_side, fps=fps))


def synthetic_videos(count: int, frames: int, height: int, width: int, seed: int) -> list[Video]:
    """Videos of the procedural generator, used without their masks."""
    from vos_lab.data.synthetic import generate_video, sequence_seed

    return [Video(f"synth-{i:03d}", generate_video(sequence_seed(seed, i), frames, height, width).frames)
            for i in range(count)]


class ClipDataset(torch.utils.data.Dataset):
    """Clip number `index` (any integer >= 0) of the endless stream of `seed`: a video drawn with probability
    proportional to its frame count, consecutive gaps drawn from `gaps`, one random crop of `crop` x `crop`
    shared by all frames (so a pixel's correspondence stays inside the crop), each frame's crop moved by up to
    `jitter` pixels (a simulated camera motion: without it, a static camera lets "same position" pass for
    correspondence), the same horizontal flip for all frames. Only the clip's frames are read."""

    def __init__(self, videos: Sequence[ClipSource], length: int = 2, gaps: Sequence[int] = (1, 2, 3, 4),
                 crop: int = 192, seed: int = 0, jitter: int = 0) -> None:
        self.videos = [v for v in videos if v.length > max(gaps) * (length - 1)]
        if not self.videos:
            raise VosLabError(f"no video has the {max(gaps) * (length - 1) + 1} frames a clip needs")
        small = [v.name for v in self.videos if min(v.size) < crop]
        if small:
            raise VosLabError(f"crop {crop} is larger than the frames of: {', '.join(small[:5])}")
        self.length, self.gaps, self.crop, self.jitter, self.seed = length, tuple(gaps), crop, jitter, seed
        self.weights = np.array([v.length for v in self.videos], dtype=float)
        self.weights /= self.weights.sum()

    def __getitem__(self, index: int) -> np.ndarray:
        """Clip `index` (length, crop, crop, 3) uint8."""
        rng = np.random.default_rng([self.seed, index])
        video = self.videos[rng.choice(len(self.videos), p=self.weights)]
        steps = rng.choice(self.gaps, size=self.length - 1)
        start = rng.integers(0, video.length - steps.sum())
        frames_at = start + np.concatenate([[0], np.cumsum(steps)])
        h, w = video.size
        y, x = rng.integers(0, h - self.crop + 1), rng.integers(0, w - self.crop + 1)
        shifts = rng.integers(-self.jitter, self.jitter + 1, size=(self.length, 2))
        ys = np.clip(y + shifts[:, 0], 0, h - self.crop)
        xs = np.clip(x + shifts[:, 1], 0, w - self.crop)
        frames = video.read(frames_at)
        clip = np.stack([frame[y0: y0 + self.crop, x0: x0 + self.crop]
                         for frame, y0, x0 in zip(frames, ys, xs, strict=True)])
        return np.ascontiguousarray(clip[:, :, ::-1]) if rng.random() < 0.5 else clip


class ClipSampler:
    """The clip stream of a `ClipDataset` read in order, in the calling process: `position` clips drawn so
    far. Its state (the position) is part of a checkpoint, so a resumed run sees the same clips."""

    def __init__(self, videos: Sequence[ClipSource], length: int = 2, gaps: Sequence[int] = (1, 2, 3, 4),
                 crop: int = 192, seed: int = 0, jitter: int = 0) -> None:
        self.dataset = ClipDataset(videos, length, gaps, crop, seed, jitter)
        self.videos, self.crop, self.position = self.dataset.videos, crop, 0

    def clip(self) -> np.ndarray:
        """The next clip (length, crop, crop, 3) uint8."""
        self.position += 1
        return self.dataset[self.position - 1]

    def batch(self, size: int) -> np.ndarray:
        """The next `size` clips (B, length, crop, crop, 3) uint8."""
        return np.stack([self.clip() for _ in range(size)])

    def state(self) -> dict:
        return {"position": self.position}

    def load_state(self, state: dict) -> None:
        if "position" not in state:
            raise VosLabError("the checkpoint's clip sampler state is from an older vos_lab: delete it (or use "
                              "another --out) to train anew")
        self.position = int(state["position"])


class ClipBatches(torch.utils.data.Sampler):
    """The clip numbers of this rank's part of each global batch, from clip `start` for `steps` steps: global
    batch s holds clips start + s*B ... start + (s+1)*B - 1, and rank r of `world` takes the r-th slice of
    B / world. The ranks' parts are disjoint and together are the global batch of one process."""

    def __init__(self, start: int, batch_size: int, steps: int, rank: int = 0, world: int = 1) -> None:
        if batch_size % world:
            raise VosLabError(f"batch size {batch_size} does not split over {world} processes")
        self.start, self.batch_size, self.steps, self.rank, self.world = start, batch_size, steps, rank, world

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        part = self.batch_size // self.world
        for step in range(self.steps):
            first = self.start + step * self.batch_size + self.rank * part
            yield list(range(first, first + part))


def _seed_worker(worker: int) -> None:
    """NumPy's and Python's global generators of a worker, seeded from the loader's seed (torch seeds its own
    with it): the clips need none of them (each has its own generator), a method's `prepare` might."""
    import random

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def _stack(clips: list[np.ndarray]) -> torch.Tensor:
    """A batch as one tensor (NumPy's copy: torch.stack's threads only contend with the training's)."""
    return torch.from_numpy(np.stack(clips))


def clip_batches(sampler: ClipSampler, batch_size: int, steps: int, rank: int = 0, world: int = 1,
                 workers: int = 0, pin_memory: bool = False) -> Iterator[torch.Tensor]:
    """This rank's batches (B / world, length, crop, crop, 3) uint8 tensors of the next `steps` global batches of
    `batch_size` clips after `sampler.position` (which it does not move), read by `workers` processes (0: this
    one), in pinned memory for a fast copy to the GPU when `pin_memory`. The loader's own torch generator
    (seeded with the sampler's seed) seeds the workers, so the caller's torch generator is untouched. A frame
    that cannot be read stops it with that error's one line (a worker's comes with its traceback otherwise)."""
    batches = ClipBatches(sampler.position, batch_size, steps, rank, world)
    generator = torch.Generator().manual_seed(sampler.dataset.seed)
    loader = torch.utils.data.DataLoader(sampler.dataset, batch_sampler=batches, num_workers=workers,
                                         pin_memory=pin_memory, worker_init_fn=_seed_worker, generator=generator,
                                         collate_fn=_stack)
    try:
        yield from loader
    except VosLabError as error:
        last = str(error).strip().splitlines()[-1]
        raise VosLabError(last.removeprefix(f"{VosLabError.__module__}.{VosLabError.__name__}: ")) from None
