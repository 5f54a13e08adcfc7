"""J (region similarity), F (boundary measure) and J&F exactly as the official DAVIS-2017 toolkit.

Reference: davisvideochallenge/davis2017-evaluation (Pont-Tuset et al. 2017; metrics from Perazzi et al.
CVPR 2016, Sec. 3): ``davis2017/metrics.py`` (db_eval_iou, db_eval_boundary, f_measure, _seg2bmap),
``davis2017/utils.py`` (db_statistics), ``davis2017/evaluation.py`` (semi-supervised evaluation) and
``evaluation_method.py`` (the two CSV tables). This is a rewrite, not a copy; it gives the same numbers,
quirks included. Each quirk is marked "Toolkit quirk" below. The tests compare with ``esdft-segmetric``, an
exact copy of the official metric functions.
"""

from __future__ import annotations

import csv
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from skimage.morphology import disk

from vos_lab.errors import VosLabError

BOUND_TH = 0.008
GLOBAL_COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
SEQUENCE_COLUMNS = ("Sequence", "J-Mean", "F-Mean")


def _check_same_shape(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None) -> None:
    if gt.shape != pred.shape:
        raise VosLabError(f"ground truth shape {gt.shape} and prediction shape {pred.shape} differ")
    if void is not None and np.shape(void) != gt.shape:
        raise VosLabError(f"ground truth shape {gt.shape} and void shape {np.shape(void)} differ")


def region_similarity(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None) -> np.ndarray | float:
    """J: intersection over union of two binary masks, void pixels left out (db_eval_iou).

    (H, W) gives a float, (T, H, W) one value per frame. An empty union (both masks empty) scores 1.
    """
    gt, pred = np.asarray(gt).astype(bool), np.asarray(pred).astype(bool)
    _check_same_shape(gt, pred, void)
    valid = np.ones_like(gt) if void is None else ~np.asarray(void).astype(bool)
    inter = np.sum(gt & pred & valid, axis=(-2, -1))
    union = np.sum((gt | pred) & valid, axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        j = inter / union
    j = np.where(union == 0, 1.0, j)
    return float(j) if j.ndim == 0 else j


def _boundary_map(mask: np.ndarray) -> np.ndarray:
    """1-pixel-wide boundary of a binary mask (D. Martin's seg2bmap, as in the toolkit's _seg2bmap).

    A pixel is on the boundary when it differs from its east, south or south-east neighbour (pixels
    outside the image count as background). The boundary thus sits half a pixel towards the origin.
    Toolkit quirk: in the last row only the east neighbour is compared, in the last column only the
    south one (which is outside, so the pixel itself), and the bottom-right pixel is never a boundary.
    """
    seg = mask.astype(bool)
    east, south, south_east = (np.zeros_like(seg) for _ in range(3))
    east[:, :-1] = seg[:, 1:]
    south[:-1, :] = seg[1:, :]
    south_east[:-1, :-1] = seg[1:, 1:]
    bmap = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    bmap[-1, :] = seg[-1, :] ^ east[-1, :]
    bmap[:, -1] = seg[:, -1] ^ south[:, -1]
    bmap[-1, -1] = False
    return bmap


def _dilation_radius(shape: tuple[int, int], bound_th: float) -> float:
    """bound_th >= 1 is a radius in pixels, else a fraction of the image diagonal, rounded up (8 at 480p)."""
    return bound_th if bound_th >= 1 else float(np.ceil(bound_th * np.linalg.norm(shape)))


def _matched(boundary: np.ndarray, other: np.ndarray, kernel: np.ndarray) -> int:
    """Number of `boundary` pixels within the disk `kernel` of a pixel of `other`.

    Same as the toolkit's sum(boundary * cv2.dilate(other, disk)), computed on the bounding box of both
    boundaries only: every pixel that can light up a boundary pixel lies in that box, so it is exact.
    """
    rows = np.flatnonzero(np.any(boundary | other, axis=1))
    cols = np.flatnonzero(np.any(boundary | other, axis=0))
    box = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    dilated = cv2.dilate(other[box].astype(np.uint8), kernel)
    return int(np.count_nonzero(boundary[box] & (dilated > 0)))


def _frame_f(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None, bound_th: float) -> float:
    """Boundary F-measure of one frame (the toolkit's f_measure; no thinning of the boundaries)."""
    valid = np.ones(gt.shape, dtype=bool) if void is None else ~void.astype(bool)
    pred_b = _boundary_map(pred.astype(bool) & valid)
    gt_b = _boundary_map(gt.astype(bool) & valid)
    n_pred, n_gt = int(np.count_nonzero(pred_b)), int(np.count_nonzero(gt_b))
    # Toolkit conventions for empty boundaries: a missing side counts as perfect precision / recall.
    if n_pred == 0 and n_gt == 0:
        return 1.0
    if n_pred == 0 or n_gt == 0:
        return 0.0  # precision 1 and recall 0 (or the reverse): F = 0
    # Toolkit quirk: disk() gets the radius as computed (a float), so bound_th = 2.5 gives a 6x6 kernel.
    kernel = disk(_dilation_radius(gt.shape, bound_th)).astype(np.uint8)
    precision = _matched(pred_b, gt_b, kernel) / n_pred
    recall = _matched(gt_b, pred_b, kernel) / n_gt
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def boundary_measure(
    gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None, bound_th: float = BOUND_TH
) -> np.ndarray | float:
    """F: boundary F-measure (db_eval_boundary): boundaries matched within a disk of radius
    ceil(bound_th x diagonal); (H, W) gives a float, (T, H, W) one value per frame."""
    gt, pred = np.asarray(gt), np.asarray(pred)
    _check_same_shape(gt, pred, void)
    if gt.ndim == 2:
        return _frame_f(gt, pred, void, bound_th)
    if gt.ndim != 3:
        raise VosLabError(f"boundary_measure needs (H, W) or (T, H, W) masks, got shape {gt.shape}")
    voids = [None] * len(gt) if void is None else np.asarray(void)
    return np.array([_frame_f(g, p, v, bound_th) for g, p, v in zip(gt, pred, voids, strict=True)])


def decay_statistics(per_frame: np.ndarray) -> tuple[float, float, float]:
    """Mean, recall (fraction of frames > 0.5) and decay (first quarter minus last quarter) of a
    per-frame score (db_statistics).

    Toolkit quirks, reproduced:
    - NaNs are dropped from the mean, but count as failures (not > 0.5) in the recall.
    - The four "quarters" overlap by one frame: bin i is frames ids[i]..ids[i+1] inclusive, with
      ids = round(linspace(1, n, 5) + 1e-10) - 1 (round half to even).
    - ids are uint8, so they and the bin ends ids[i+1] + 1 wrap modulo 256: from 256 frames on, the
      last bin can come out empty, making the decay NaN (256 or 300 frames, not 257), or hold the
      wrong frames (400 frames: frames 43..143). The mean of an empty bin is NaN, without a warning.
    """
    values = np.asarray(per_frame, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        mean = np.nanmean(values)
        recall = np.nanmean(values > 0.5)
        ids = (np.round(np.linspace(1, len(values), 5) + 1e-10) - 1).astype(np.int64) % 256
        bins = [values[ids[i] : (ids[i + 1] + 1) % 256] for i in range(4)]
        decay = np.nanmean(bins[0]) - np.nanmean(bins[3])
    return float(mean), float(recall), float(decay)


@dataclass(frozen=True)
class ObjectScores:
    """Per-frame J and F of one object (evaluated frames only) and their mean / recall / decay."""

    j: np.ndarray
    f: np.ndarray
    j_mean: float
    j_recall: float
    j_decay: float
    f_mean: float
    f_recall: float
    f_decay: float

    @classmethod
    def from_frames(cls, j: np.ndarray, f: np.ndarray) -> ObjectScores:
        return cls(j, f, *decay_statistics(j), *decay_statistics(f))


def evaluate_sequence(
    gt_ids: np.ndarray, pred_ids: np.ndarray, void: np.ndarray | None, n_objects: int
) -> dict[int, ObjectScores]:
    """Semi-supervised evaluation of one sequence, as the toolkit's DAVISEvaluation.evaluate.

    gt_ids, pred_ids: id maps (T, H, W) of ALL frames, 0 = background, 1..n_objects = objects.
    n_objects: the toolkit's count, the largest id in the first ground-truth frame (void excluded).
    Returns {object id: scores} for ids 1..n_objects.

    - The first frame (given as input) and the last frame are not scored.
    - Void: the toolkit sets void ground-truth pixels (255) to background and, in semi-supervised mode,
      does NOT leave them out (it passes void_pixels=None): an object predicted on void is a false
      positive. `void` (or an id 255 left in gt_ids) is treated the same way.
    - Ground-truth ids above n_objects are ignored; objects the prediction never mentions are scored
      against an empty mask (the toolkit pads the prediction with empty objects).
    - Prediction ids above n_objects in a scored frame are an error, as in the toolkit; ids in the first
      and last frame are never read.
    """
    gt_ids, pred_ids = np.asarray(gt_ids), np.asarray(pred_ids)
    if gt_ids.shape != pred_ids.shape:
        raise VosLabError(f"ground truth shape {gt_ids.shape} and prediction shape {pred_ids.shape} differ")
    if gt_ids.ndim != 3 or gt_ids.shape[0] < 3:
        raise VosLabError(f"a sequence needs (T, H, W) id maps with T >= 3 frames, got shape {gt_ids.shape}")
    if void is not None and np.shape(void) != gt_ids.shape:
        raise VosLabError(f"ground truth shape {gt_ids.shape} and void shape {np.shape(void)} differ")
    if n_objects < 0:
        raise VosLabError(f"n_objects must be >= 0, got {n_objects}")
    gt, pred = gt_ids[1:-1], pred_ids[1:-1]
    if void is not None:
        gt = np.where(np.asarray(void)[1:-1].astype(bool), 0, gt)
    pred_max = int(pred.max())
    if pred_max > n_objects:
        raise VosLabError(
            f"the prediction has object id {pred_max} but the sequence has only {n_objects} objects"
        )
    scores = {}
    for obj in range(1, n_objects + 1):
        gt_obj, pred_obj = gt == obj, pred == obj
        scores[obj] = ObjectScores.from_frames(
            region_similarity(gt_obj, pred_obj), boundary_measure(gt_obj, pred_obj)
        )
    return scores


def summarize(results: dict[str, dict[int, ObjectScores]]) -> tuple[dict[str, float], list[dict]]:
    """The toolkit's two tables: one global row and one row per object ('<sequence>_<id>').

    Every global figure is a plain mean over all objects of all sequences (np.mean, so one NaN decay
    makes the global decay NaN, as in the toolkit); J&F-Mean = (J-Mean + F-Mean) / 2.
    """
    objects = [(f"{seq}_{obj}", scores[obj]) for seq, scores in results.items() for obj in sorted(scores)]
    if not objects:
        raise VosLabError("no objects to summarize: the results are empty")
    every = [score for _, score in objects]
    j_mean, f_mean = np.mean([o.j_mean for o in every]), np.mean([o.f_mean for o in every])
    values = (
        (j_mean + f_mean) / 2.0,
        j_mean, np.mean([o.j_recall for o in every]), np.mean([o.j_decay for o in every]),
        f_mean, np.mean([o.f_recall for o in every]), np.mean([o.f_decay for o in every]),
    )  # fmt: skip
    global_row = {name: float(v) for name, v in zip(GLOBAL_COLUMNS, values, strict=True)}
    per_object = [{"Sequence": name, "J-Mean": o.j_mean, "F-Mean": o.f_mean} for name, o in objects]
    return global_row, per_object


def _csv_cell(value: object) -> str:
    """A cell as pandas' to_csv(float_format="%.3f") writes it: floats with 3 decimals, NaN empty."""
    if isinstance(value, float | np.floating):
        return "" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def _write_table(path: Path, columns: tuple[str, ...], rows: list[dict]) -> None:
    # pandas writes through the csv module: minimal quoting, '"' doubled, lines ended by "\n" (Linux).
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        writer.writerow(columns)
        writer.writerows([_csv_cell(row[c]) for c in columns] for row in rows)


def write_toolkit_csvs(
    out_dir: Path, split: str, global_row: dict[str, float], per_object_rows: list[dict]
) -> tuple[Path, Path]:
    """Write global_results-<split>.csv and per-sequence_results-<split>.csv byte for byte as the
    toolkit's evaluation_method.py (pandas to_csv(index=False, float_format="%.3f"))."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise VosLabError(f"{out_dir}: the output folder for the results CSVs does not exist")
    for name in GLOBAL_COLUMNS:
        if name not in global_row:
            raise VosLabError(f"global_row: column {name!r} is missing")
    global_path = out_dir / f"global_results-{split}.csv"
    sequence_path = out_dir / f"per-sequence_results-{split}.csv"
    _write_table(global_path, GLOBAL_COLUMNS, [global_row])
    _write_table(sequence_path, SEQUENCE_COLUMNS, per_object_rows)
    return global_path, sequence_path
