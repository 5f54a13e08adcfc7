import numpy as np
import pytest
from helpers import write_davis2017
from PIL import Image

from vos_lab.data.davis import DavisDataset, davis_palette, mask_to_ids, read_mask_raw, save_palette_png
from vos_lab.errors import VosLabError


def test_palette_matches_davis_colours():
    palette = davis_palette()
    assert palette[0].tolist() == [0, 0, 0]
    assert palette[1].tolist() == [128, 0, 0]
    assert palette[2].tolist() == [0, 128, 0]
    assert palette[3].tolist() == [128, 128, 0]
    assert palette[255].tolist() == [224, 224, 192]


def test_palette_png_round_trip(tmp_path):
    mask = np.random.default_rng(0).integers(0, 6, (17, 23)).astype(np.uint8)
    save_palette_png(tmp_path / "m.png", mask)
    assert Image.open(tmp_path / "m.png").mode == "P"
    assert np.array_equal(read_mask_raw(tmp_path / "m.png"), mask)
    assert not list(tmp_path.glob(".*")), "no temporary file left behind"


def test_2017_reader_ids_void_and_object_ids(tmp_path):
    dataset = DavisDataset(write_davis2017(tmp_path, ids=(1, 3)))
    assert dataset.year == 2017 and dataset.names == ["seq"]
    sequence = dataset.sequence("seq")
    ids, void = sequence.mask(0)
    assert set(np.unique(ids)) == {0, 1, 3} and void[-1, -1] and ids[-1, -1] == 0
    assert sequence.object_ids == [1, 2, 3]  # the toolkit tracks 1..max id
    masks, voids = sequence.masks()
    assert masks.shape == (3, 48, 64) and voids.sum() == 3


def test_2016_masks_map_255_to_object_one():
    ids, void = mask_to_ids(np.array([[0, 255], [255, 0]], dtype=np.uint8), 2016)
    assert ids.tolist() == [[0, 1], [1, 0]] and not void.any()


def test_real_2016_layout_and_la_mask(davis2016_root):
    dataset = DavisDataset(davis2016_root, split="train")
    assert dataset.year == 2016 and len(dataset.names) == 14
    bear = dataset.sequence("bear")
    ids, _ = bear.mask(77)  # stored as mode LA
    assert ids.shape == (480, 854) and set(np.unique(ids)) <= {0, 1} and ids.sum() > 1000


@pytest.mark.parametrize("problem", ["missing_root", "bad_split", "corrupt_jpeg", "size_mismatch", "no_annotation",
                                     "unknown_sequence"])
def test_bad_input_is_a_clear_error(tmp_path, problem):
    root = write_davis2017(tmp_path / "d")
    if problem == "missing_root":
        with pytest.raises(VosLabError, match="not found"):
            DavisDataset(tmp_path / "nope")
        return
    if problem == "bad_split":
        with pytest.raises(VosLabError, match="split 'train' not found"):
            DavisDataset(root, split="train")
        return
    dataset = DavisDataset(root)
    if problem == "unknown_sequence":
        with pytest.raises(VosLabError, match="not in split"):
            dataset.sequences(["other"])
        return
    if problem == "corrupt_jpeg":
        (root / "JPEGImages/480p/seq/00001.jpg").write_bytes(b"\xff\xd8 not a jpeg")
        with pytest.raises(VosLabError, match="00001.jpg: cannot read image"):
            dataset.sequence("seq").frame(1)
    if problem == "size_mismatch":
        save_palette_png(root / "Annotations/480p/seq/00002.png", np.zeros((10, 10), np.uint8))
        with pytest.raises(VosLabError, match="differs from its frame"):
            dataset.sequence("seq").mask(2)
    if problem == "no_annotation":
        for path in (root / "Annotations/480p/seq").glob("*.png"):
            path.unlink()
        with pytest.raises(VosLabError, match="no annotation for the first frame"):
            dataset.sequence("seq")


@pytest.mark.parametrize("year, line", [(2017, "../x"), (2017, "a/b"), (2017, ".."),
                                        (2016, "/JPEGImages/480p/../00000.jpg /Annotations/480p/../00000.png")])
def test_split_entries_that_are_not_plain_names_are_refused(tmp_path, year, line):
    # a sequence name becomes JPEGImages/480p/<name>, Annotations/480p/<name> and <results>/<name>
    lists = tmp_path / "ImageSets" / ("2017" if year == 2017 else "480p")
    lists.mkdir(parents=True)
    (lists / "val.txt").write_text(f"{line}\n")
    with pytest.raises(VosLabError, match=r"val.txt: sequence '.*' is not a plain name"):
        DavisDataset(tmp_path, year=year)
