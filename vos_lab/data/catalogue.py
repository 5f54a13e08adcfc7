"""The downloadable datasets, and preparing and checking DAVIS (davischallenge.org).

Catalogue sources: the URLs are the official ones on davischallenge.org (davis2016/code.html,
davis2017/code.html). DAVIS does not publish checksums. The DAVIS-2017 trainval size and sha256 are the
values recorded independently by several public projects that downloaded the official archive (e.g.
tensorflow_datasets, video/davis/checksums.tsv); the DAVIS-2016 md5 is the one in the get_davis.sh script
of the original DAVIS-2016 code release. For test-dev no published or independently recorded checksum
was found, so it is marked `unpinned` and `prepare_davis` refuses it unless the caller passes a sha256
or explicitly turns verification off.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vos_lab.data.archive import safe_extract
from vos_lab.data.davis import DavisDataset, detect_year
from vos_lab.data.download import download
from vos_lab.errors import VosLabError
from vos_lab.paths import DOWNLOADS_DIR, ENV_VAR, inside, writable_dir

RESOLUTION = "480p"


@dataclass(frozen=True)
class RemoteArchive:
    """One downloadable archive: where it is, what is known about it, where it goes under the data root."""

    key: str
    url: str
    target: str
    approx_size: str
    description: str
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None
    unpinned: str = ""  # why no checksum is pinned (then installing needs an explicit sha256 or no check)
    max_bytes: int = 8 * 2**30  # refuse to extract more than this

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


CATALOGUE: dict[str, RemoteArchive] = {
    "2017-trainval": RemoteArchive(
        key="2017-trainval",
        url="https://data.vision.ee.ethz.ch/csergi/share/davis/DAVIS-2017-trainval-480p.zip",
        target="davis2017",
        approx_size="833 MB",
        description="DAVIS-2017 train+val 480p: 90 sequences (60 train, 30 val), 6208 frames, all masks",
        size=832_766_765,
        sha256="e3d0b5b77c3d031b000a19e0e25e3e2cac65d183755601bc2cf066df1a2aa492",
        max_bytes=4 * 2**30,
    ),
    "2016": RemoteArchive(
        key="2016",
        url="https://graphics.ethz.ch/Downloads/Data/Davis/DAVIS-data.zip",
        target="davis2016",
        approx_size="about 1.9 GB (480p and 1080p)",
        description="DAVIS-2016: 50 sequences (30 train, 20 val), 3455 frames, one object, all masks",
        md5="0cb3cf9c5617209fa3cc4794e52a2ffa",
        max_bytes=16 * 2**30,
    ),
    "2017-test-dev": RemoteArchive(
        key="2017-test-dev",
        url="https://data.vision.ee.ethz.ch/csergi/share/davis/DAVIS-2017-test-dev-480p.zip",
        target="davis2017-test-dev",
        approx_size="a few hundred MB (size not published)",
        description="DAVIS-2017 test-dev 480p: 30 sequences, first-frame masks only",
        unpinned="none is published, none found in tensorflow_datasets or public download scripts",
        max_bytes=4 * 2**30,
    ),
}


@dataclass(frozen=True)
class SequenceCounts:
    """Files found for one sequence."""

    frames: int
    masks: int


@dataclass
class LayoutReport:
    """What `verify_davis_layout` found; `ok` when no problem was found."""

    root: Path
    year: int
    splits: dict[str, list[str]] = field(default_factory=dict)
    sequences: dict[str, SequenceCounts] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self, max_problems: int = 10) -> str:
        frames = sum(c.frames for c in self.sequences.values())
        masks = sum(c.masks for c in self.sequences.values())
        splits = ", ".join(f"{name} {len(names)}" for name, names in self.splits.items())
        status = "OK" if self.ok else f"{len(self.problems)} problems"
        lines = [f"DAVIS-{self.year} at {self.root}: {len(self.sequences)} sequences ({splits}), "
                 f"{frames} frames, {masks} masks: {status}"]
        lines += [f"  - {problem}" for problem in self.problems[:max_problems]]
        if len(self.problems) > max_problems:
            lines.append(f"  ... and {len(self.problems) - max_problems} more")
        return "\n".join(lines)


def _stems(folder: Path, suffix: str) -> list[str]:
    return sorted(p.stem for p in folder.glob(f"*{suffix}")) if folder.is_dir() else []


def _check_sequence(root: Path, name: str, first_mask_only: bool, report: LayoutReport) -> None:
    frames = _stems(root / "JPEGImages" / RESOLUTION / name, ".jpg")
    masks = _stems(root / "Annotations" / RESOLUTION / name, ".png")
    report.sequences[name] = SequenceCounts(len(frames), len(masks))
    if not frames:
        report.problems.append(f"{name}: no frames in JPEGImages/{RESOLUTION}/{name}")
    elif not masks or masks[0] != frames[0]:
        report.problems.append(f"{name}: no annotation for the first frame {frames[0]}")
    elif not first_mask_only and masks != frames:
        report.problems.append(f"{name}: {len(frames)} frames but {len(masks)} masks with matching names")
    elif first_mask_only and not set(masks) <= set(frames):
        report.problems.append(f"{name}: masks without a frame of the same name")


def _check_frame_list(root: Path, split_file: Path, report: LayoutReport) -> None:
    """DAVIS-2016 split files list frame/mask pairs: every listed file must exist (and be inside `root`)."""
    listed = [line.lstrip("/") for line in split_file.read_text().split()]
    missing = [path for path in listed
               if not inside(root, path, f"{split_file}: listed file", resolve=False).is_file()]
    if missing:
        report.problems.append(f"{split_file.name}: {len(missing)} listed files are missing, "
                               f"first {missing[0]}")


def verify_davis_layout(root: str | Path) -> LayoutReport:
    """Check a DAVIS folder: split lists, and for every listed sequence its frames and masks.

    Both layouts: 2017 (`ImageSets/2017/<split>.txt`, one name per line) and 2016
    (`ImageSets/480p/<split>.txt`, frame/mask path pairs). Train/val sequences need one mask per frame
    with the same names; test splits (test-dev, test-challenge) need only the first frame's mask.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise VosLabError(f"{root}: DAVIS folder not found")
    year = detect_year(root)
    report = LayoutReport(root, year)
    list_dir = root / "ImageSets" / ("2017" if year == 2017 else RESOLUTION)
    split_files = sorted(list_dir.glob("*.txt"))
    if not split_files:
        report.problems.append(f"{list_dir}: no split lists (*.txt)")
    for split_file in split_files:
        names = DavisDataset(root, year=year, split=split_file.stem, resolution=RESOLUTION).names
        report.splits[split_file.stem] = names
        if year == 2016:
            _check_frame_list(root, split_file, report)
        for name in names:
            if name not in report.sequences:
                _check_sequence(root, name, split_file.stem.startswith("test"), report)
    return report


def prepare_davis(root: str | Path | None = None, which: str | RemoteArchive = "2017-trainval", *,
                  keep_archive: bool = False, verify_checksum: bool = True, sha256: str | None = None,
                  progress: bool = True, log: Callable[[str], None] = print) -> LayoutReport:
    """Download, verify, extract and check one DAVIS archive into `<root>/<target>` (e.g. davis2017/).

    `root` defaults to $VOS_LAB_DATA. A target that is already complete is skipped; one that exists but
    is incomplete is reported and left untouched. The archive is kept in `<root>/downloads/` until the
    extracted tree passed `verify_davis_layout`, so a failed run can be repeated without downloading again.
    `sha256` replaces the catalogue's size and checksum (for an entry without a pinned one, or an archive
    the publisher re-released); `verify_checksum=False` skips the check, only the layout is checked. An
    entry without a pinned checksum is refused unless one of the two is given.
    """
    spec = CATALOGUE.get(which) if isinstance(which, str) else which
    if spec is None:
        raise VosLabError(f"unknown DAVIS archive '{which}' (choose {', '.join(CATALOGUE)})")
    if sha256 is not None and (not verify_checksum or not re.fullmatch(r"[0-9a-fA-F]{64}", sha256)):
        raise VosLabError(f"--sha256 must be 64 hex digits and cannot go with --no-checksum, got '{sha256}'")
    pinned = (None, sha256, None) if sha256 else (spec.size, spec.sha256, spec.md5)
    known = pinned if verify_checksum else (None, None, None)
    value = root if root not in (None, "") else os.environ.get(ENV_VAR)
    if not value:
        raise VosLabError(f"no data root: pass a folder or set {ENV_VAR}")
    base = writable_dir(value)
    target = base / spec.target
    if target.exists():
        report = verify_davis_layout(target)
        if not report.ok:
            raise VosLabError(f"{target}: exists but is incomplete ({report.problems[0]}); "
                              "move it away to prepare it again")
        log(f"{target}: already prepared, skipped")
        return report
    if verify_checksum and known[1] is None and known[2] is None:
        raise VosLabError(f"{spec.filename}: no checksum is pinned for this archive ({spec.unpinned or 'unknown'});"
                          " pass --sha256 HEX if you know it, or --no-checksum to check only its layout")
    archive = writable_dir(base / DOWNLOADS_DIR) / spec.filename
    log(f"{spec.description}\n  from {spec.url} ({spec.approx_size})\n  to {target}")
    fetched = download(spec.url, archive, size=known[0], sha256=known[1], md5=known[2], progress=progress)
    if not verify_checksum:
        log(f"  {archive.name}: {fetched.size} bytes, sha256 {fetched.sha256} (not checked against a "
            "published value: pass --sha256 with it next time to check it)")

    def check(folder: Path) -> None:
        found = verify_davis_layout(folder)
        if not found.ok:
            more = f" (and {len(found.problems) - 1} more)" if len(found.problems) > 1 else ""
            raise VosLabError(f"{archive}: unexpected layout, nothing installed: {found.problems[0]}{more}")

    safe_extract(archive, target, max_bytes=spec.max_bytes, strip_top=True, check=check)
    if not keep_archive:
        archive.unlink()
    return verify_davis_layout(target)
