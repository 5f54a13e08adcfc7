"""Chapters on training data given as video files: the clips are then streamed (`VideoFile`, read on demand),
not held in memory as `Video` stacks, and a chapter must use only what every clip source offers (`length`,
`read`). The smoke profile otherwise trains on the embedded in-memory clips, so CI would not see it."""

from pathlib import Path

import av
import papermill
import pytest

from vos_lab.data.synthetic import generate_video

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def write_textured_video(path: Path, seed: int, frames: int = 16, size: tuple[int, int] = (96, 112)) -> Path:
    """An mp4 of the synthetic generator's moving objects (texture, so that training moves the weights)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.height, stream.width = size
        stream.pix_fmt, stream.bit_rate = "yuv420p", 4_000_000
        for image in generate_video(seed, frames, *size).frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


@pytest.mark.parametrize("chapter", ["02_colourisation_bottleneck"])
def test_chapter_runs_on_a_folder_of_video_files(chapter, tmp_path, monkeypatch):
    videos = tmp_path / "videos"
    videos.mkdir()
    for seed in range(2):
        write_textured_video(videos / f"clip{seed}.mp4", seed)
    monkeypatch.setenv("VOS_LAB_HOME", str(tmp_path / "home"))
    papermill.execute_notebook(NOTEBOOKS / f"{chapter}.ipynb", tmp_path / f"{chapter}.ipynb", cwd=tmp_path,
                               parameters={"PROFILE": "smoke", "TRAIN_DATA": str(videos)},
                               kernel_name="python3", progress_bar=False)
