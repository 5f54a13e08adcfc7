"""vos_lab.metrics against the official DAVIS toolkit's metric functions (copied in esdft-segmetric).

The semi-supervised pipeline around them (void -> background, first/last frame skipped, objects split
from id maps, prediction padded, tables) is re-stated below from davis2017-evaluation
(davis.py get_all_masks, results.py read_masks, evaluation.py, evaluation_method.py).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from segmetric import metrics as ref_metrics
from segmetric import utils as ref_utils

from vos_lab.errors import VosLabError
from vos_lab.metrics import (
    ObjectScores,
    boundary_measure,
    decay_statistics,
    evaluate_sequence,
    region_similarity,
    summarize,
    write_toolkit_csvs,
)

# The reference divides by zero and overflows uint8 on purpose; vos_lab itself must stay silent.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning:segmetric")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


# ----------------------------------------------------------------------------------------- the reference
def toolkit_sequence(gt_ids: np.ndarray, pred_ids: np.ndarray) -> dict[int, tuple]:
    """Official semi-supervised evaluation of one sequence; gt_ids may hold 255 = void."""
    masks = gt_ids.astype(np.float64)
    masks[masks == 255] = 0  # davis.py: void set to background
    n_gt = int(np.max(masks[0]))
    gt = (np.arange(1, n_gt + 1)[:, None, None, None] == masks[None])[:, 1:-1]
    res = pred_ids[1:-1].astype(np.float64)  # results.py reads only the scored frames
    n_res = int(np.max(res))
    res = (np.arange(1, n_res + 1)[:, None, None, None] == res[None]) > 0
    if n_res > n_gt:
        raise SystemExit("index higher than the number of objects")
    if n_res < n_gt:
        res = np.concatenate([res, np.zeros((n_gt - n_res, *res.shape[1:]))], axis=0)
    out = {}
    for ii in range(n_gt):
        j = ref_metrics.db_eval_iou(gt[ii], res[ii], None)
        f = ref_metrics.db_eval_boundary(gt[ii], res[ii], None)
        out[ii + 1] = (j, f, ref_utils.db_statistics(j), ref_utils.db_statistics(f))
    return out


def assert_matches_toolkit(gt_ids, pred_ids, ours: dict[int, ObjectScores]) -> None:
    ref = toolkit_sequence(gt_ids, pred_ids)
    assert sorted(ours) == sorted(ref)
    for obj, (j, f, j_stats, f_stats) in ref.items():
        got = ours[obj]
        np.testing.assert_allclose(got.j, j, rtol=0, atol=1e-12)
        np.testing.assert_allclose(got.f, f, rtol=0, atol=1e-12)
        np.testing.assert_allclose([got.j_mean, got.j_recall, got.j_decay], j_stats, atol=1e-6)
        np.testing.assert_allclose([got.f_mean, got.f_recall, got.f_decay], f_stats, atol=1e-6)


# -------------------------------------------------------------------------------------------- test data
def blob(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A random filled polygon or ellipse, sometimes touching the image border."""
    h, w = shape
    canvas = np.zeros(shape, dtype=np.uint8)
    if rng.random() < 0.5:
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (int(rng.integers(1, max(2, w // 3))), int(rng.integers(1, max(2, h // 3))))
        cv2.ellipse(canvas, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    else:
        points = np.stack([rng.integers(-5, w + 5, 6), rng.integers(-5, h + 5, 6)], axis=1)
        cv2.fillPoly(canvas, [points.astype(np.int32)], 1)
    return canvas.astype(bool)


def perturb(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """A prediction derived from a ground-truth mask: shifted, eroded, dilated, noisy or dropped."""
    kind = rng.integers(0, 5)
    if kind == 0:
        return np.roll(mask, (int(rng.integers(-9, 10)), int(rng.integers(-9, 10))), axis=(0, 1))
    if kind in (1, 2):
        op = cv2.erode if kind == 1 else cv2.dilate
        size = int(rng.integers(2, 12))
        return op(mask.astype(np.uint8), np.ones((size, size), np.uint8)).astype(bool)
    if kind == 3:
        return mask ^ (rng.random(mask.shape) < 0.02)
    return np.zeros_like(mask)


def random_sequence(rng, t: int, shape: tuple[int, int], n_objects: int, void: bool):
    """gt ids (255 = void), pred ids; objects absent in some frames, some frames empty."""
    gt = np.zeros((t, *shape), dtype=np.uint8)
    pred = np.zeros_like(gt)
    for frame in range(t):
        for obj in range(1, n_objects + 1):
            if frame > 0 and rng.random() < 0.2:
                continue  # object absent (always present in the first frame, which fixes n_objects)
            mask = blob(rng, shape)
            gt[frame][mask] = obj
            pred[frame][perturb(rng, mask)] = obj
        if rng.random() < 0.1:
            pred[frame] = 0
        if rng.random() < 0.1:
            pred[frame][blob(rng, shape)] = rng.integers(1, n_objects + 1)  # a false positive elsewhere
        if void:
            gt[frame][blob(rng, shape) & (rng.random(shape) < 0.7)] = 255
    return gt, pred


# ------------------------------------------------------------------------------------------------ J and F
@pytest.mark.parametrize("shape", [(37, 53), (53, 37), (1, 9), (20, 1), (64, 64)])
def test_frame_metrics_match_toolkit_on_small_sizes(shape):
    rng = np.random.default_rng(sum(shape))
    for _ in range(40):
        gt = blob(rng, shape)
        pred = perturb(rng, gt) if rng.random() < 0.7 else blob(rng, shape)
        void = rng.random(shape) < 0.1 if rng.random() < 0.5 else None
        assert region_similarity(gt, pred, void) == pytest.approx(ref_metrics.db_eval_iou(gt, pred, void))
        for th in (0.008, 0.05, 3, 2.5):
            expected = ref_metrics.db_eval_boundary(gt, pred, void, bound_th=th)
            assert boundary_measure(gt, pred, void, bound_th=th) == pytest.approx(expected, abs=1e-12)


def test_empty_masks_follow_toolkit_conventions():
    empty, full = np.zeros((30, 40), bool), np.zeros((30, 40), bool)
    full[5:20, 5:30] = True
    for gt, pred, j, f in [(empty, empty, 1.0, 1.0), (full, empty, 0.0, 0.0), (empty, full, 0.0, 0.0)]:
        assert region_similarity(gt, pred) == j == ref_metrics.db_eval_iou(gt, pred)
        assert boundary_measure(gt, pred) == f == ref_metrics.db_eval_boundary(gt, pred)
    # Everything in the void: the union is empty, J = 1; both boundaries vanish, F = 1.
    assert region_similarity(full, full ^ True, np.ones_like(full)) == 1.0
    assert boundary_measure(full, full ^ True, np.ones_like(full)) == 1.0


def test_per_frame_metrics_on_stacks_with_void():
    rng = np.random.default_rng(1)
    gt = np.stack([blob(rng, (45, 70)) for _ in range(6)])
    pred = np.stack([perturb(rng, m) for m in gt])
    void = rng.random(gt.shape) < 0.05
    j, f = region_similarity(gt, pred, void), boundary_measure(gt, pred, void)
    assert j.shape == f.shape == (6,)
    np.testing.assert_allclose(j, ref_metrics.db_eval_iou(gt, pred, void), atol=1e-12)
    np.testing.assert_allclose(f, ref_metrics.db_eval_boundary(gt, pred, void), atol=1e-12)


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(VosLabError, match=r"\(4, 5\).*\(5, 4\)"):
        region_similarity(np.zeros((4, 5)), np.zeros((5, 4)))
    with pytest.raises(VosLabError, match=r"\(4, 5\).*\(4, 6\)"):
        boundary_measure(np.zeros((4, 5)), np.zeros((4, 6)))


# ----------------------------------------------------------------------------------------- statistics
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 10, 48, 77, 255, 256, 257, 300, 400, 600, 1100])
def test_decay_statistics_match_db_statistics(n):
    rng = np.random.default_rng(n)
    values = rng.random(n)
    values[rng.random(n) < 0.1] = np.nan
    ours = decay_statistics(values)
    np.testing.assert_allclose(ours, ref_utils.db_statistics(values), atol=1e-12, equal_nan=True)
    if n == 300:  # the uint8 wrap of the bin indices leaves the last bin empty
        assert math.isnan(ours[2])


def test_recall_counts_nan_as_failure():
    mean, recall, _ = decay_statistics(np.array([1.0, np.nan, 0.2, 0.9]))
    assert mean == pytest.approx(0.7)
    assert recall == pytest.approx(0.5)


# ------------------------------------------------------------------------------------------- sequences
@pytest.mark.parametrize(
    ("t", "shape", "n_objects", "void"),
    [(5, (37, 53), 1, False), (8, (53, 37), 3, True), (12, (60, 80), 2, True), (4, (48, 64), 5, False)],
)
def test_evaluate_sequence_matches_toolkit(t, shape, n_objects, void):
    rng = np.random.default_rng(t * 100 + n_objects)
    for _ in range(3):
        gt, pred = random_sequence(rng, t, shape, n_objects, void)
        # The raw ids with 255 and the project's representation (void -> 0 plus a void map) agree.
        assert_matches_toolkit(gt, pred, evaluate_sequence(gt, pred, None, n_objects))
        void_map = gt == 255
        assert_matches_toolkit(
            gt, pred, evaluate_sequence(np.where(void_map, 0, gt), pred, void_map, n_objects)
        )


def test_void_pixels_count_as_background_not_ignored():
    rng = np.random.default_rng(5)
    gt, pred = random_sequence(rng, 6, (40, 50), 2, void=False)
    void = np.zeros(gt.shape, bool)
    void[:, 10:25, 10:30] = True  # over the objects: the toolkit turns these pixels into background
    ours = evaluate_sequence(gt, pred, void, 2)
    assert_matches_toolkit(np.where(void, 255, gt), pred, ours)
    ignored = region_similarity(gt[1:-1] == 1, pred[1:-1] == 1, void[1:-1])
    assert not np.allclose(ours[1].j, ignored)


@pytest.mark.parametrize("shape", [(480, 910), (480, 1152)])
def test_evaluate_sequence_matches_toolkit_at_full_size(shape):
    rng = np.random.default_rng(shape[1])
    gt, pred = random_sequence(rng, 4, shape, 2, void=True)
    assert_matches_toolkit(gt, pred, evaluate_sequence(gt, pred, gt == 255, 2))


def test_missing_object_in_prediction_is_padded_and_scored_empty():
    rng = np.random.default_rng(7)
    gt, pred = random_sequence(rng, 6, (40, 50), 3, void=False)
    pred[pred == 3] = 0
    ours = evaluate_sequence(gt, pred, None, 3)
    assert_matches_toolkit(gt, pred, ours)
    present = [frame for frame in range(1, 5) if (gt[frame] == 3).any()]
    assert all(ours[3].j[frame - 1] == 0 for frame in present)


def test_ids_first_and_last_frame_are_not_scored():
    rng = np.random.default_rng(3)
    gt, pred = random_sequence(rng, 5, (30, 30), 1, void=False)
    wrong = pred.copy()
    wrong[0], wrong[-1] = 7, 0  # the toolkit never reads these frames
    first = evaluate_sequence(gt, pred, None, 1)[1]
    second = evaluate_sequence(gt, wrong, None, 1)[1]
    assert len(first.j) == 3
    np.testing.assert_array_equal(first.j, second.j)
    np.testing.assert_array_equal(first.f, second.f)


def test_evaluate_sequence_rejects_bad_input():
    gt = np.zeros((5, 10, 12), np.uint8)
    gt[:, 2:6, 3:8] = 1
    pred = gt.copy()
    pred[2, 0, 0] = 2
    with pytest.raises(VosLabError, match="object id 2.*only 1 objects"):
        evaluate_sequence(gt, pred, None, 1)
    with pytest.raises(VosLabError, match=r"\(5, 10, 12\).*\(5, 10, 11\)"):
        evaluate_sequence(gt, pred[..., :11], None, 1)
    with pytest.raises(VosLabError, match="T >= 3"):
        evaluate_sequence(gt[:2], gt[:2], None, 1)
    with pytest.raises(VosLabError, match="void shape"):
        evaluate_sequence(gt, gt, np.zeros((5, 10, 11), bool), 1)


@pytest.mark.davis
def test_real_davis_sequence_matches_toolkit():
    seq = SHARED_DATA / "davis2016-dev" / "Annotations" / "480p" / "boat"
    if not seq.is_dir():
        pytest.skip(f"{seq} is absent")
    from PIL import Image

    gt = np.stack([np.array(Image.open(seq / f"{i:05d}.png").convert("L")) > 0 for i in range(6)])
    gt = gt.astype(np.uint8)
    pred = np.roll(gt, (3, -5), axis=(1, 2))
    pred[0] = gt[0]
    ours = evaluate_sequence(gt, pred, None, 1)
    assert_matches_toolkit(gt, pred, ours)
    assert 0.5 < ours[1].j_mean < 1.0


# ------------------------------------------------------------------------------------ tables and CSVs
def toolkit_tables(results: dict[str, dict]) -> tuple[np.ndarray, list]:
    """evaluation.py + evaluation_method.py: global row and (name, J-Mean, F-Mean) rows."""
    J = {"M": [], "R": [], "D": []}
    F = {"M": [], "R": [], "D": []}
    rows = []
    for seq, objects in results.items():
        for obj, (_, _, j_stats, f_stats) in objects.items():
            for store, stats in ((J, j_stats), (F, f_stats)):
                for key, value in zip("MRD", stats, strict=True):
                    store[key].append(value)
            rows.append((f"{seq}_{obj}", j_stats[0], f_stats[0]))
    final_mean = (np.mean(J["M"]) + np.mean(F["M"])) / 2.0
    g_res = np.array([final_mean, np.mean(J["M"]), np.mean(J["R"]), np.mean(J["D"]),
                      np.mean(F["M"]), np.mean(F["R"]), np.mean(F["D"])])  # fmt: skip
    return g_res, rows


def test_summarize_matches_toolkit_tables():
    rng = np.random.default_rng(11)
    ours, ref = {}, {}
    for name, n_objects in (("bike-packing", 2), ("blackswan", 1), ("gold-fish", 4)):
        gt, pred = random_sequence(rng, 6, (40, 56), n_objects, void=True)
        ours[name] = evaluate_sequence(gt, pred, gt == 255, n_objects)
        ref[name] = toolkit_sequence(gt, pred)
    global_row, per_object = summarize(ours)
    g_res, rows = toolkit_tables(ref)
    assert list(global_row) == ["J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"]
    np.testing.assert_allclose(list(global_row.values()), g_res, atol=1e-9)
    assert [r["Sequence"] for r in per_object] == [name for name, _, _ in rows]
    assert [r["Sequence"] for r in per_object][:3] == ["bike-packing_1", "bike-packing_2", "blackswan_1"]
    np.testing.assert_allclose([[r["J-Mean"], r["F-Mean"]] for r in per_object], [r[1:] for r in rows])
    with pytest.raises(VosLabError, match="empty"):
        summarize({})


def test_csvs_are_byte_identical_to_pandas(tmp_path):
    global_row = {"J&F-Mean": 0.81234, "J-Mean": 0.7995, "J-Recall": 1.0, "J-Decay": -0.00004,
                  "F-Mean": 0.8251, "F-Recall": 0.9, "F-Decay": float("nan")}  # fmt: skip
    per_object = [
        {"Sequence": "bike-packing_1", "J-Mean": 0.12345, "F-Mean": 0.5},
        {"Sequence": "odd,name_2", "J-Mean": np.float64(0.0005), "F-Mean": 1.0},
        {"Sequence": 'quote"d_1', "J-Mean": 0.9999, "F-Mean": float("nan")},
    ]
    global_path, seq_path = write_toolkit_csvs(tmp_path, "val", global_row, per_object)
    assert global_path.name == "global_results-val.csv"
    assert seq_path.name == "per-sequence_results-val.csv"

    table_g = pd.DataFrame(data=np.array([list(global_row.values())]), columns=list(global_row))
    table_seq = pd.DataFrame(
        data=[(r["Sequence"], r["J-Mean"], r["F-Mean"]) for r in per_object],
        columns=["Sequence", "J-Mean", "F-Mean"],
    )
    for table, path in ((table_g, global_path), (table_seq, seq_path)):
        buffer = io.StringIO()
        table.to_csv(buffer, index=False, float_format="%.3f")
        assert path.read_bytes() == buffer.getvalue().encode()
    # 0.7995 is stored as 0.79949..., -0.00004 keeps its sign, NaN is an empty cell.
    assert global_path.read_text().splitlines()[1] == "0.812,0.799,1.000,-0.000,0.825,0.900,"


def test_write_toolkit_csvs_needs_an_existing_folder(tmp_path):
    with pytest.raises(VosLabError, match="does not exist"):
        write_toolkit_csvs(tmp_path / "missing", "val", dict.fromkeys(["J&F-Mean"], 0.0), [])
