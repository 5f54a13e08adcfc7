"""Label propagation through feature affinities: the evaluation protocol shared by every method.

The protocol is the one of CRW (Jabri et al. 2020, Sec. 3.3) and DINO's video evaluation
(Caron et al. 2021, `eval_video_segmentation.py`): for each target frame,
1. context = the first frame (with its ground-truth labels) + the n most recent frames (with their
   *soft* predicted labels), optionally more long-term frames (MAST's memory, Lai et al. 2020 Sec. 3.3);
2. affinity between L2-normalised features, restricted to a +-radius neighbourhood of feature cells;
3. keep the top-k over all context positions jointly and, as DINO, every position whose weight
   exp(affinity / tau) equals the k-th best's; weights = softmax(affinity / tau) over those kept (DINO's
   exp(affinity / tau), renormalised);
4. the target's soft labels are the weighted sum of the context labels; upsample, argmax.

`windowed_propagation` computes step 2-4 only inside the window (`vos_lab.attention`: tiles of target cells
against the reference region around them), so its memory grows with the window, not with the frame size
squared. `dense_propagation` is the plain version (full affinity per context frame, then mask), for
teaching and testing; on small maps it is also the faster one. `propagate_step` is the one place that
chooses between them. With `roi=True` the references far in time are read through MAST's coarse-to-fine ROI
localisation (`roi_propagation`); `MEMORY_LAYOUTS` names the memories of chapter 3.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from vos_lab.attention import (
    combine_candidates,
    coordinate_grid,
    dense_attention,
    localise,
    roi_topk,
    window_topk,
    windowed_attention,
)
from vos_lab.errors import VosLabError

DENSE_CELLS = 1024  # maps up to this many cells propagate with the full affinity (faster at 15 x 27, not at 30 x 54)


@dataclass(frozen=True)
class PropagationConfig:
    """Hyper-parameters of the protocol (defaults: DINO's evaluation, COURSE.md "evaluation protocol").

    temperature: tau in softmax(cos / tau).   topk: matches kept per target cell (over all context); None:
    a softmax over every position of the windows (MAST's read-out).
    radius: neighbourhood half-size in feature cells (None = whole frame).
    context: how many recent frames; context_stride: their spacing (MAST: 3 frames, stride 2 = t-1, t-3, t-5).
    long_term: absolute frame indices always kept (frame 0 = the annotation; MAST adds frame 5; () = none,
    as CorrFlow's "previous frame only").
    roi: MAST's coarse-to-fine ROI localisation for the references more than `roi_gap` frames back (MAST's
    code: 15); its coarse search has dilation gap // roi_gap + 1, at most `roi_max_dilation` (MAST: 4).
    """

    temperature: float = 0.1
    topk: int | None = 5
    radius: int | None = 12
    context: int = 7
    context_stride: int = 1
    long_term: tuple[int, ...] = (0,)
    roi: bool = False
    roi_gap: int = 15
    roi_max_dilation: int = 4

    def __post_init__(self) -> None:
        checks = {
            "temperature": self.temperature > 0,
            "topk": self.topk is None or self.topk >= 1,
            "radius": self.radius is None or self.radius >= 0,
            "context": self.context >= 0,
            "context_stride": self.context_stride >= 1,
            "long_term": (0 in self.long_term or (not self.long_term and self.context >= 1))
            and all(i >= 0 for i in self.long_term),
            "roi_gap": self.roi_gap >= 0,
            "roi_max_dilation": self.roi_max_dilation >= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise VosLabError(f"invalid propagation parameter {name}={getattr(self, name)!r}")

    def references(self, t: int) -> list[int]:
        """Indices of the context frames used to predict frame t (long-term first, then recent)."""
        recent = [t - 1 - k * self.context_stride for k in range(self.context)]
        anchors = [i for i in self.long_term if i < t]
        return anchors + sorted(i for i in recent if i >= 0 and i not in anchors)

    def gaps(self, t: int) -> tuple[int, ...]:
        """How many frames back each of `references(t)` lies."""
        return tuple(t - i for i in self.references(t))

    def dilation(self, gap: int) -> int:
        """The coarse search's dilation for a reference `gap` frames back; 1 (no coarse search) when it is
        near (MAST's code: `min(4, gap // 15 + 1)` for gaps over 15)."""
        return min(self.roi_max_dilation, gap // max(self.roi_gap, 1) + 1) if gap > self.roi_gap else 1

    def far(self, t: int) -> int:
        """How many of `references(t)` are searched coarse-to-fine with `roi` (more than `roi_gap` back)."""
        return sum(1 for gap in self.gaps(t) if gap > self.roi_gap)


# Memory layouts of the course (chapter 3): which frames the target reads from.
MEMORY_LAYOUTS: dict[str, dict] = {
    "default": {},  # the protocol: frame 0 + the `context` most recent frames
    "previous": {"context": 1, "long_term": ()},  # CorrFlow's test: the previous frame only
    "mast": {"context": 3, "context_stride": 2, "long_term": (0, 5)},  # MAST: {0, 5} + {t-1, t-3, t-5}
}


def windowed_propagation(query: torch.Tensor, keys: torch.Tensor, labels: torch.Tensor, radius: int,
                         topk: int | None, temperature: float) -> torch.Tensor:
    """Soft labels (L, h, w) of the query frame (C, h, w) from context keys (N, C, h, w) and labels
    (N, L, h, w): top-k over the +-radius windows of all N frames jointly (`vos_lab.attention.window_topk`),
    with every position tied with the k-th best, as DINO; topk None: a softmax over all their positions."""
    if topk is None:
        return windowed_attention(query[None], keys[None], labels[None], radius, temperature)[0]
    candidates, ties = window_topk(query[None], keys[None], labels[None], radius, topk, temperature)
    return combine_candidates([candidates], temperature, ties=ties)[0]


def dense_propagation(query: torch.Tensor, keys: torch.Tensor, labels: torch.Tensor, radius: int | None,
                      topk: int | None, temperature: float) -> torch.Tensor:
    """The plain version, as in DINO's evaluation code: full affinity per context frame, mask, top-k."""
    return dense_attention(query[None], keys[None], labels[None], radius, temperature, topk)[0]


def roi_propagation(query: torch.Tensor, keys: torch.Tensor, labels: torch.Tensor, config: PropagationConfig,
                    gaps: tuple[int, ...]) -> torch.Tensor:
    """MAST's memory read-out (Lai et al. 2020, Sec. 3.3; their `Colorizer.forward`): a reference more than
    `roi_gap` frames back (`gaps[i]` frames) is first searched coarsely, a softmax over its whole +-radius
    window at dilation `config.dilation(gap)` whose soft-argmax locates each target cell; the fine +-radius
    window is centred there (the ROI). Near references keep the window around the cell itself. One softmax
    over every position of all windows (top-k of them jointly when `config.topk` is set)."""
    radius = config.radius if config.radius is not None else max(query.shape[-2:])
    q, k, v = query[None], keys[None], labels[None]
    far = [i for i, gap in enumerate(gaps) if gap > config.roi_gap]
    near = [i for i, gap in enumerate(gaps) if gap <= config.roi_gap]
    h, w = query.shape[-2:]
    centres = coordinate_grid(h, w, query.device).expand(1, len(gaps), 2, h, w).clone()  # (1, N, 2, h, w)
    for i in far:
        centres[:, i] = localise(q, k[:, i], radius, config.dilation(gaps[i]), config.temperature)[:, 0]
    if config.topk is None or not near:  # every window position: the near windows are ROIs at the cells
        candidates = [roi_topk(q, k, v, centres, radius, config.topk)]
    else:  # the near windows' k best through the faster windowed search (ties with the k-th best left out)
        candidates = [roi_topk(q, k[:, far], v[:, far], centres[:, far], radius, config.topk),
                      window_topk(q, k[:, near], v[:, near], radius, config.topk, config.temperature)[0]]
    return combine_candidates(candidates, config.temperature, config.topk)[0]


def propagate_step(query: torch.Tensor, keys: torch.Tensor, labels: torch.Tensor,
                   config: PropagationConfig, gaps: tuple[int, ...] = ()) -> torch.Tensor:
    """One target frame, its references `gaps` frames back: with `config.roi` and a reference more than
    `roi_gap` back, through ROI localisation; otherwise dense over the whole frame without a radius or on
    small maps (up to DENSE_CELLS cells, where it is faster), windowed on larger ones (the same result)."""
    if config.roi and any(gap > config.roi_gap for gap in gaps):
        return roi_propagation(query, keys, labels, config, gaps)
    if config.radius is None or query.shape[-2] * query.shape[-1] <= DENSE_CELLS:
        return dense_propagation(query, keys, labels, config.radius, config.topk, config.temperature)
    return windowed_propagation(query, keys, labels, config.radius, config.topk, config.temperature)


def ids_to_onehot(ids: np.ndarray, n_labels: int) -> torch.Tensor:
    """Id map (H, W) -> one-hot float (L, H, W); ids >= n_labels are an error."""
    tensor = torch.from_numpy(np.asarray(ids, dtype=np.int64))
    if int(tensor.max()) >= n_labels:
        raise VosLabError(f"mask has id {int(tensor.max())} but only {n_labels - 1} objects were expected")
    return F.one_hot(tensor, n_labels).permute(2, 0, 1).float()


def downsample_labels(onehot: torch.Tensor, size: tuple[int, int], stride: int) -> torch.Tensor:
    """(L, H, W) -> (L, h, w): the fraction of each stride x stride cell covered by each label."""
    h, w = size
    pad_h, pad_w = h * stride - onehot.shape[-2], w * stride - onehot.shape[-1]
    padded = F.pad(onehot[None], (0, max(pad_w, 0), 0, max(pad_h, 0)), mode="replicate")
    return F.avg_pool2d(padded[..., : h * stride, : w * stride], stride)[0]


def upsample_labels(soft: torch.Tensor, size: tuple[int, int], stride: int) -> torch.Tensor:
    """(L, h, w) -> (L, H, W): bilinear by the stride (cell i covers pixels [stride i, stride (i+1))), cropped."""
    up = F.interpolate(soft[None], scale_factor=stride, mode="bilinear", align_corners=False)[0]
    return up[:, : size[0], : size[1]]


def labels_to_ids(soft: torch.Tensor, size: tuple[int, int], stride: int) -> np.ndarray:
    """Soft labels (L, h, w) -> the id map (H, W) uint8: upsampled, then the most likely label of each pixel
    (the first on a tie; `max(0)` rather than `argmax(0)`, whose kernel is ~15x slower over the first dim)."""
    return upsample_labels(soft, size, stride).max(0).indices.to(torch.uint8).cpu().numpy()


def propagate_video(encode: Callable[[np.ndarray], torch.Tensor], frames: Callable[[int], np.ndarray],
                    length: int, first_ids: np.ndarray, config: PropagationConfig, stride: int = 8,
                    n_labels: int | None = None, step: Callable = propagate_step) -> Iterator[np.ndarray]:
    """Yield the predicted id map (H, W) uint8 of every frame, the first being the given annotation.

    encode: uint8 frame (H, W, 3) -> L2-normalised features (C, h, w).  frames: index -> uint8 frame.
    step: (query, keys, labels, config, gaps) -> soft labels, gaps = how many frames back each reference is;
    `propagate_step` unless comparing implementations.
    Only the features and soft labels of frames still needed as context are kept in memory.
    """
    n_labels = int(first_ids.max()) + 1 if n_labels is None else n_labels
    size = first_ids.shape
    memory: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    first = encode(frames(0))
    memory[0] = (first, downsample_labels(ids_to_onehot(first_ids, n_labels).to(first.device),
                                          first.shape[-2:], stride))
    if not config.references(1):
        raise VosLabError("propagation config has no reference frames (set context >= 1 or long_term)")
    yield np.asarray(first_ids, dtype=np.uint8)
    for t in range(1, length):
        refs = config.references(t)
        query = encode(frames(t))
        keys = torch.stack([memory[i][0] for i in refs])
        labels = torch.stack([memory[i][1] for i in refs])
        soft = step(query, keys, labels, config, config.gaps(t))
        memory[t] = (query, soft)
        oldest = t - (config.context - 1) * config.context_stride  # no later frame reads anything older
        for old in [i for i in memory if i < oldest and i not in config.long_term]:
            del memory[old]
        yield labels_to_ids(soft, size, stride)
