"""Small DAVIS folders written by the tests themselves."""

from pathlib import Path

import numpy as np
from PIL import Image

from vos_lab.data.davis import save_palette_png


def write_davis2017(root: Path, name: str = "seq", frames: int = 3, size=(48, 64), ids=(1, 2)) -> Path:
    """A DAVIS-2017 folder with one static textured sequence, rectangular objects and one void pixel."""
    (root / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text(f"{name}\n")
    frame = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)  # static texture
    for t in range(frames):
        (root / "JPEGImages" / "480p" / name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(frame).save(root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg")
        mask = np.zeros(size, dtype=np.uint8)
        for k, object_id in enumerate(ids):
            mask[8 + 16 * k: 16 + 16 * k, 8:32] = object_id  # aligned with the 8x8 feature cells
        mask[-1, -1] = 255
        save_palette_png(root / "Annotations" / "480p" / name / f"{t:05d}.png", mask)
    return root
