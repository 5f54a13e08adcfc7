"""Read and write the DAVIS layout (Perazzi et al. CVPR 2016; Pont-Tuset et al. 2017).

Both mask formats are read into one representation, an *id map*: uint8 (H, W), 0 = background,
1..K = objects, plus a boolean *void* map.
- DAVIS-2016: 8-bit grayscale, 0 = background, 255 = the single object (-> id 1, no void).
- DAVIS-2017: indexed palette PNGs, ids 1..K, 255 = void (-> void map, id set to background).

Frames are loaded lazily, one at a time, so a 480p sequence never has to sit in memory as a whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from vos_lab.errors import VosLabError
from vos_lab.paths import atomic_path, plain_name

VOID_ID = 255
YEARS = (2016, 2017)


def davis_palette() -> np.ndarray:
    """The DAVIS (= PASCAL VOC) colour palette: 256 RGB rows, id 1 red, 2 green, 3 yellow, ..."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for index in range(256):
        value, colour = index, [0, 0, 0]
        for bit in range(8):
            for channel in range(3):
                colour[channel] |= ((value >> channel) & 1) << (7 - bit)
            value >>= 3
        palette[index] = colour
    return palette


def _atomic_save(image: Image.Image, path: Path, **options) -> None:
    """Save through a temporary file in the same folder, then rename: never a half-written file."""
    with atomic_path(path) as tmp:
        image.save(tmp, **options)


def save_palette_png(path: Path, mask: np.ndarray) -> None:
    """Write an id map as an indexed PNG with the DAVIS palette (the official submission format)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise VosLabError(f"{path}: a mask must be 2-D (H, W), got shape {mask.shape}")
    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    image.putpalette(davis_palette().ravel().tolist())
    _atomic_save(image, path, format="PNG")


def save_jpeg(path: Path, image: np.ndarray, quality: int = 95) -> None:
    """Write an RGB uint8 (H, W, 3) frame as JPEG, atomically."""
    _atomic_save(Image.fromarray(np.asarray(image, dtype=np.uint8)), path, format="JPEG", quality=quality)


def _open(path: Path) -> Image.Image:
    if not Path(path).is_file():
        raise VosLabError(f"{path}: file not found")
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise VosLabError(f"{path}: cannot read image ({error})") from None
    return image


def read_frame(path: Path) -> np.ndarray:
    """An RGB frame as uint8 (H, W, 3); a corrupt or truncated file raises VosLabError."""
    return np.asarray(_open(path).convert("RGB"))


def read_mask_raw(path: Path) -> np.ndarray:
    """The stored values of a mask PNG as uint8 (H, W): palette indices or gray levels, never RGB."""
    image = _open(path)
    if image.mode in ("P", "L"):
        return np.asarray(image)
    if image.mode in ("LA", "I", "I;16", "1"):  # e.g. DAVIS-2016 bear/00077.png is stored as LA
        return np.asarray(image.getchannel(0) if image.mode == "LA" else image.convert("L"))
    raise VosLabError(f"{path}: mask must be a palette or grayscale PNG, got mode {image.mode}")


def mask_to_ids(raw: np.ndarray, year: int) -> tuple[np.ndarray, np.ndarray]:
    """Convert stored mask values to (id map, void map) following each year's convention."""
    if year == 2016:
        return (raw > 127).astype(np.uint8), np.zeros(raw.shape, dtype=bool)
    void = raw == VOID_ID
    return np.where(void, 0, raw).astype(np.uint8), void


@dataclass(frozen=True)
class DavisSequence:
    """One video: frame paths, its mask paths (all frames for train/val, only frame 0 for test-dev)."""

    name: str
    frame_paths: tuple[Path, ...]
    mask_paths: tuple[Path, ...]
    year: int

    def __len__(self) -> int:
        return len(self.frame_paths)

    @property
    def frame_names(self) -> list[str]:
        return [p.stem for p in self.frame_paths]

    def head(self, frames: int | None) -> DavisSequence:
        """The first `frames` frames (all when None): quick runs on long sequences."""
        if frames is None:
            return self
        return DavisSequence(self.name, self.frame_paths[:frames], self.mask_paths[:frames], self.year)

    def frame(self, index: int) -> np.ndarray:
        return read_frame(self.frame_paths[index])

    def mask(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(id map, void map) of frame `index`, checked against the frame's size."""
        path = self.mask_paths[index]
        ids, void = mask_to_ids(read_mask_raw(path), self.year)
        if ids.shape != self.frame_size:
            raise VosLabError(
                f"{path}: mask size {ids.shape[1]}x{ids.shape[0]} differs from its frame "
                f"{self.frame_size[1]}x{self.frame_size[0]}"
            )
        return ids, void

    @cached_property
    def frame_size(self) -> tuple[int, int]:
        """(H, W) of the first frame."""
        return read_frame(self.frame_paths[0]).shape[:2]

    @cached_property
    def object_ids(self) -> list[int]:
        """Objects to track: the ids present in the first frame's annotation (toolkit: 1..max)."""
        ids, _ = self.mask(0)
        return list(range(1, int(ids.max()) + 1))

    def masks(self) -> tuple[np.ndarray, np.ndarray]:
        """All annotations stacked: ids (T, H, W) uint8 and void (T, H, W) bool."""
        if len(self.mask_paths) != len(self.frame_paths):
            raise VosLabError(
                f"{self.name}: {len(self.mask_paths)} annotations for {len(self.frame_paths)} frames"
            )
        pairs = [self.mask(i) for i in range(len(self))]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def _visible_files(folder: Path, pattern: str) -> tuple[Path, ...]:
    """Sorted matches, skipping hidden files (e.g. temporaries of an interrupted atomic write)."""
    return tuple(sorted(p for p in folder.glob(pattern) if not p.name.startswith(".")))


def detect_year(root: Path) -> int:
    """2017 if `ImageSets/2017` exists, else 2016 if `ImageSets/480p` exists."""
    root = Path(root)
    if (root / "ImageSets" / "2017").is_dir():
        return 2017
    if (root / "ImageSets" / "480p").is_dir():
        return 2016
    raise VosLabError(
        f"{root}: not a DAVIS folder (expected ImageSets/2017/ or ImageSets/480p/ with split lists)"
    )


class DavisDataset:
    """A DAVIS root folder: `JPEGImages/<res>/<seq>/*.jpg`, `Annotations/<res>/<seq>/*.png`, `ImageSets`."""

    def __init__(self, root: Path | str, year: int | None = None, split: str = "val",
                 resolution: str = "480p", max_frames: int | None = None) -> None:
        """max_frames: every sequence cut to its first `max_frames` frames (None: all), for quick runs; the
        propagation, its results and their scores then all cover the same frames."""
        self.root = Path(root).expanduser()
        self.max_frames = max_frames
        if not self.root.is_dir():
            raise VosLabError(f"{self.root}: DAVIS root folder not found")
        self.year = detect_year(self.root) if year is None else int(year)
        if self.year not in YEARS:
            raise VosLabError(f"year must be one of {YEARS}, got {year}")
        self.split = split
        self.resolution = resolution
        self.names = self._read_split()

    @property
    def split_file(self) -> Path:
        folder = "2017" if self.year == 2017 else self.resolution
        return self.root / "ImageSets" / folder / f"{self.split}.txt"

    def _read_split(self) -> list[str]:
        path = self.split_file
        if not path.is_file():
            found = sorted(p.stem for p in path.parent.glob("*.txt"))
            raise VosLabError(f"{path}: split '{self.split}' not found (available: {', '.join(found) or 'none'})")
        names: list[str] = []
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line:
                continue
            # DAVIS-2016 lists frames: "/JPEGImages/480p/bear/00000.jpg /Annotations/..."; 2017 lists names.
            # A name becomes a folder name (frames, masks, results): one plain path component only.
            first = line.split()[0]
            name = plain_name(Path(first).parent.name if self.year == 2016 and "/" in first else line,
                              f"{path}: sequence")
            if name not in names:
                names.append(name)
        return names

    def sequence(self, name: str) -> DavisSequence:
        frames_dir = self.root / "JPEGImages" / self.resolution / name
        masks_dir = self.root / "Annotations" / self.resolution / name
        if not frames_dir.is_dir():
            raise VosLabError(f"{frames_dir}: frames of sequence '{name}' not found")
        frame_paths = _visible_files(frames_dir, "*.jpg")
        if not frame_paths:
            raise VosLabError(f"{frames_dir}: no .jpg frames")
        mask_paths = _visible_files(masks_dir, "*.png")
        if not mask_paths or mask_paths[0].stem != frame_paths[0].stem:
            raise VosLabError(f"{masks_dir}: no annotation for the first frame of '{name}'")
        return DavisSequence(name, frame_paths, mask_paths, self.year).head(self.max_frames)

    def sequences(self, names: Sequence[str] | None = None) -> list[DavisSequence]:
        """The split's sequences, or the named subset (unknown names raise VosLabError)."""
        if names:
            unknown = [n for n in names if n not in self.names]
            if unknown:
                raise VosLabError(f"sequences not in split '{self.split}': {', '.join(unknown)}")
        return [self.sequence(n) for n in (names or self.names)]
