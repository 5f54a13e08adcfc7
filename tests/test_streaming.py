"""Training clips streamed from folders through the DataLoader: the same batches as in memory, with any number
of workers or ranks, and one clear error for a file that cannot be decoded."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_videos import SHARED_VIDEOS, write_video

from vos_lab.cli import main
from vos_lab.data.clips import ClipSampler, FrameFolder, Video, VideoFile, clip_batches, load_video_file
from vos_lab.data.sources import load_source
from vos_lab.errors import VosLabError
from vos_lab.profiles import get_profile


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A DAVIS-style root of 2 synthetic sequences x 12 frames, indexed as frame folders (short side 80)."""
    from vos_lab.data.synthetic import write_synthetic_davis

    root = tmp_path_factory.mktemp("frames")
    write_synthetic_davis(root, sequences=2, frames=12, height=96, width=128, seed=0)
    return root, load_source(str(root), 80, get_profile("smoke"))


def test_folders_are_indexed_not_decoded(folders):
    _, sources = folders
    assert [type(s) for s in sources] == [FrameFolder, FrameFolder]
    assert [(s.length, s.size) for s in sources] == [(12, (80, 107))] * 2


def test_streamed_batches_equal_in_memory_ones_with_any_workers(folders):
    _, sources = folders
    in_memory = [Video(s.name, s.read(range(s.length))) for s in sources]
    expected = ClipSampler(in_memory, length=3, gaps=(1, 2), crop=64, seed=5, jitter=4).batch(8)
    assert expected.shape == (8, 3, 64, 64, 3) and expected.dtype == np.uint8
    assert len({clip.tobytes() for clip in expected}) == 8, "eight different clips"
    streamed = ClipSampler(sources, length=3, gaps=(1, 2), crop=64, seed=5, jitter=4)
    for workers in (0, 2):
        batches = list(clip_batches(streamed, 4, steps=2, workers=workers))
        assert [b.shape for b in batches] == [torch.Size((4, 3, 64, 64, 3))] * 2
        assert all(b.dtype == torch.uint8 for b in batches)
        assert np.array_equal(torch.cat(batches).numpy(), expected), f"{workers} workers"
    assert streamed.position == 0, "the loader does not move the sampler"


def test_ranks_read_disjoint_parts_of_the_global_batch(folders):
    _, sources = folders
    sampler = ClipSampler(sources, length=2, gaps=(1, 2), crop=64, seed=1)
    sampler.position = 6  # a resumed run starts after the clips already drawn
    whole = torch.cat(list(clip_batches(sampler, 4, steps=2)))
    ranks = [list(clip_batches(sampler, 4, steps=2, rank=r, world=2)) for r in range(2)]
    assert [b.shape[0] for b in ranks[0] + ranks[1]] == [2] * 4
    assert torch.equal(torch.cat([ranks[0][0], ranks[1][0], ranks[0][1], ranks[1][1]]), whole)
    firsts = {tuple(b[0].flatten()[:64].tolist()) for b in ranks[0] + ranks[1]}
    assert len(firsts) == 4, "no clip is read by two ranks"
    assert torch.equal(whole[:4], torch.from_numpy(ClipSampler(sources, 2, (1, 2), 64, 1).batch(10)[6:]))


def test_a_corrupt_frame_is_one_error_line_from_a_worker(folders, tmp_path):
    root, _ = folders
    folder = tmp_path / "broken"
    folder.mkdir()
    for i, frame in enumerate(sorted(next((root / "JPEGImages" / "480p").iterdir()).glob("*.jpg"))):
        target = folder / frame.name
        target.write_bytes(frame.read_bytes() if i == 0 else b"not a jpeg")
    sampler = ClipSampler([FrameFolder.index(folder, 80)], length=2, gaps=(1,), crop=64)
    with pytest.raises(VosLabError) as error:
        list(clip_batches(sampler, 2, steps=1, workers=1))
    message = str(error.value)
    assert "\n" not in message and message.startswith(str(folder)) and "cannot read image" in message


def test_a_corrupt_video_in_the_folder_stops_training_before_anything_is_written(tmp_path, capsys):
    """The choice: an error, not a skip. Indexing decodes each video once (to count its frames), so a broken
    file is found before training starts; it is named, and the run writes nothing."""
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "good.mp4", frames=12, fps=8, size=(112, 96))
    (videos / "broken.mp4").write_bytes(b"garbage" * 100)
    out = tmp_path / "run" / "c.pt"
    status = main(["train", "corrflow", "--profile", "smoke", "--data", str(videos), "--steps", "1",
                   "--out", str(out)])
    err = capsys.readouterr().err  # after the indexing progress bar
    assert status == 2 and err.count("error:") == 1 and f"error: {videos / 'broken.mp4'}: cannot decode video" in err
    assert not out.exists()


def test_video_files_are_read_on_demand_as_decoded_up_front(tmp_path):
    """Reading seeks to the key frame before a clip (every 12th frame here) and gives the frames a whole
    decoding at 8 fps gives, in the order asked."""
    path = write_video(tmp_path / "clip.mp4", frames=50, fps=25, size=(112, 96))
    streamed, = load_source(str(path), 72, get_profile("smoke"))
    whole = load_video_file(path, 72).frames
    assert isinstance(streamed, VideoFile) and streamed.length == len(whole) == 16 and streamed.size == (72, 84)
    for indices in ([0, 7, 15], [12, 9, 10], [15]):
        assert np.array_equal(streamed.read(indices), whole[indices])


@pytest.mark.skipif(SHARED_VIDEOS is None, reason="../shared/data/videos not found")
@pytest.mark.parametrize("name", ["bikes.mp4", "vtest.avi"])
def test_seeking_in_real_videos_gives_the_decoded_frames(name):
    path = SHARED_VIDEOS / name
    streamed = VideoFile.index(path, 64, max_frames=40)
    whole = load_video_file(path, 64, max_frames=40).frames
    for indices in ([39, 2], [20, 21, 25]):
        assert np.array_equal(streamed.read(indices), whole[indices])


def test_bench_sampler_measures_clips_per_second_for_each_worker_count(capsys):
    from vos_lab.bench import bench_sampler

    figures = bench_sampler("smoke", batches=2, workers=(0, 1))
    assert figures["clips_per_s_0_workers"] > 0 and figures["clips_per_s_1_workers"] > 0
    assert "1 workers:" in capsys.readouterr().out


@pytest.mark.parametrize("workers", ["", "1,a", "-1"])
def test_bench_sampler_refuses_bad_worker_counts(workers, capsys):
    assert main(["bench", "sampler", "--workers", workers]) == 2
    assert capsys.readouterr().err.startswith("error: --workers")


def test_training_data_is_held_in_memory_when_it_fits_the_profile_budget(folders):
    """Small data is decoded once (a clip read on demand costs a decode: 66x fewer clips/s on the real videos);
    data over `clips_in_memory_mib` stays on disk. Both give the same clips."""
    from vos_lab.data.sources import decoded_bytes, load_training_videos

    root, on_disk = folders
    assert decoded_bytes(on_disk) == 2 * 12 * 80 * 107 * 3
    held = load_training_videos([str(root)], 80, get_profile("smoke"))
    streamed = load_training_videos([str(root)], 80, get_profile("smoke", clips_in_memory_mib=0))
    assert [type(v) for v in held] == [Video, Video] and [type(v) for v in streamed] == [FrameFolder, FrameFolder]
    batches = [ClipSampler(videos, 2, (1, 2), 64, seed=3).batch(4) for videos in (held, streamed)]
    assert np.array_equal(*batches)
