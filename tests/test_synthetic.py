"""The synthetic DAVIS-style generator: determinism, exact masks, exits, occlusion, lighting, layout."""

import hashlib

import numpy as np
import pytest
from PIL import Image

from vos_lab.data.davis import DavisDataset, davis_palette
from vos_lab.data.synthetic import (
    SyntheticVideo,
    _streams,
    flat_video,
    generate_video,
    sequence_seed,
    write_synthetic_davis,
)
from vos_lab.errors import VosLabError

SEEDS = range(4)


@pytest.fixture(scope="module")
def videos() -> dict[int, SyntheticVideo]:
    return {seed: generate_video(seed) for seed in SEEDS}


def visible_areas(video: SyntheticVideo) -> np.ndarray:
    """(T, K) pixel count of each id in each mask."""
    counts = [np.bincount(m.ravel(), minlength=video.num_objects + 1)[1:] for m in video.masks]
    return np.array(counts)


def test_shapes_and_types(videos):
    video = videos[0]
    assert video.frames.shape == (30, 240, 432, 3) and video.frames.dtype == np.uint8
    assert video.masks.shape == (30, 240, 432) and video.masks.dtype == np.uint8
    assert video.amodal_areas.shape == (30, 3)


def test_same_seed_same_bytes_and_different_seed_differs(videos):
    again = generate_video(0)
    assert again.frames.tobytes() == videos[0].frames.tobytes()
    assert again.masks.tobytes() == videos[0].masks.tobytes()
    assert not np.array_equal(videos[0].frames, videos[1].frames)
    assert not np.array_equal(videos[0].masks, videos[1].masks)


@pytest.mark.parametrize("objects,height,width", [(1, 240, 432), (3, 64, 96), (7, 120, 216), (20, 240, 432)])
def test_first_frame_holds_every_id_whole(objects, height, width):
    for seed in range(3):
        video = generate_video(seed, frames=2, height=height, width=width, objects=objects)
        assert set(np.unique(video.masks[0])) == set(range(objects + 1))
        # Frame 0: nothing occluded, nothing cut by the border of the frame.
        assert np.array_equal(visible_areas(video)[0], video.amodal_areas[0])
        border = np.concatenate([video.masks[0, 0], video.masks[0, -1], video.masks[0, :, 0], video.masks[0, :, -1]])
        assert not border.any()


def test_masks_are_exact_painter_composites():
    """Same geometry painted in flat id colours: every pixel shows exactly the id its mask holds."""
    for seed in SEEDS:
        flat, textured = flat_video(seed, objects=5), generate_video(seed, objects=5)
        assert np.array_equal(flat.masks, textured.masks)
        assert np.array_equal(flat.amodal_areas, textured.amodal_areas)
        for channel in range(3):
            assert np.array_equal(flat.frames[..., channel], flat.masks)


def test_an_object_leaves_the_frame_and_comes_back(videos):
    for video in videos.values():
        amodal, visible = video.amodal_areas, visible_areas(video)
        gone = amodal == 0  # not even occluded: outside the frame
        assert np.array_equal(visible[gone], np.zeros(gone.sum()))
        comes_back = [
            k for k in range(video.num_objects)
            if gone[:, k].any() and (amodal[np.argmax(gone[:, k]):, k] > 0).any()
        ]
        assert comes_back


def test_objects_occlude_each_other(videos):
    for video in videos.values():
        amodal, visible = video.amodal_areas, visible_areas(video)
        assert (visible <= amodal).all()
        assert ((visible < amodal) & (amodal > 0)).any()


def test_objects_scale_rotate_and_deform_while_the_camera_moves():
    scene, _, _ = _streams(0, 30, 240, 432, 4)
    for obj in scene.objects:
        assert obj.scale.max() / obj.scale.min() > 1.05
        assert np.ptp(obj.angle) > 0.05
        assert np.ptp(obj.stretch, axis=0).max() > 0.02  # the outline changes: elastic deformation
    translation = scene.camera[:, :, 2]
    assert np.abs(translation - translation[0]).max() > 5


def test_brightness_changes_over_time(videos):
    for video in videos.values():
        means = video.frames.reshape(len(video.frames), -1).mean(1)
        assert means.max() - means.min() > 8


@pytest.mark.parametrize("kwargs,name", [
    (dict(frames=1), "frames"), (dict(objects=0), "objects"), (dict(objects=21), "objects"),
    (dict(height=0), "height"), (dict(width=-5), "width"), (dict(seed=-1), "seed"),
    (dict(frames=2.5), "frames"), (dict(height=32, width=32, objects=20), "too small"),
])
def test_bad_arguments_raise_named_errors(kwargs, name):
    with pytest.raises(VosLabError, match=name):
        generate_video(**{"seed": 0, **kwargs})


def test_write_rejects_bad_arguments_before_writing(tmp_path):
    with pytest.raises(VosLabError, match="sequences"):
        write_synthetic_davis(tmp_path / "d", sequences=0)
    with pytest.raises(VosLabError, match="objects"):
        write_synthetic_davis(tmp_path / "d", objects=0)
    assert not (tmp_path / "d").exists()


def _digest(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_write_davis_layout(tmp_path):
    root = tmp_path / "synthetic"
    size = dict(frames=4, height=64, width=96, objects=2)
    names = write_synthetic_davis(root, sequences=2, seed=7, **size)
    assert names == ["synth-000", "synth-001"]
    assert (root / "ImageSets/2017/val.txt").read_text().split() == names
    assert not (root / "ImageSets/2017/train.txt").exists()
    for index, name in enumerate(names):
        video = generate_video(sequence_seed(7, index), **size)
        jpegs = sorted((root / "JPEGImages/480p" / name).iterdir())
        pngs = sorted((root / "Annotations/480p" / name).iterdir())
        assert [p.name for p in jpegs] == [f"{t:05d}.jpg" for t in range(4)]
        assert [p.name for p in pngs] == [f"{t:05d}.png" for t in range(4)]
        for t, (jpeg, png) in enumerate(zip(jpegs, pngs, strict=True)):
            with Image.open(png) as image:
                assert image.mode == "P"
                palette = np.array(image.getpalette()[:9]).reshape(3, 3)
                assert np.array_equal(palette, davis_palette()[:3])
                assert np.array_equal(np.array(image), video.masks[t])
            with Image.open(jpeg) as image:
                assert image.format == "JPEG" and image.size == (96, 64)
                error = np.abs(np.asarray(image.convert("RGB"), dtype=int) - video.frames[t]).mean()
                assert error < 6
    dataset = DavisDataset(root)
    assert dataset.year == 2017 and dataset.names == names
    assert dataset.sequences()[1].object_ids == [1, 2]


def test_write_is_idempotent_and_drops_stale_frames(tmp_path):
    root = tmp_path / "synthetic"
    write_synthetic_davis(root, sequences=1, frames=6, height=48, width=64, objects=1)
    write_synthetic_davis(root, sequences=1, frames=4, height=48, width=64, objects=1)
    first = _digest(root)
    assert write_synthetic_davis(root, sequences=1, frames=4, height=48, width=64, objects=1) == ["synth-000"]
    assert _digest(root) == first
    assert sorted(first) == sorted(
        [f"JPEGImages/480p/synth-000/{t:05d}.jpg" for t in range(4)]
        + [f"Annotations/480p/synth-000/{t:05d}.png" for t in range(4)]
        + ["ImageSets/2017/val.txt"]
    )
