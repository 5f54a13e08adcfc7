"""Label propagation through feature affinities: the evaluation protocol shared by every method.

The protocol is the one of CRW (Jabri et al. 2020, Sec. 3.3) and DINO's video evaluation
(Caron et al. 2021, `eval_video_segmentation.py`): for each target frame,
1. context = the first frame (with its ground-truth labels) + the n most recent frames (with their
   *soft* predicted labels), optionally more long-term frames (MAST's memory, Lai et al. 2020 Sec. 3.3);
2. affinity between L2-normalised features, restricted to a +-radius neighbourhood of feature cells;
3. keep the top-k over all context positions jointly, weights = softmax(affinity / tau) over those k;
4. the target's soft labels are the weighted sum of the context labels; upsample, argmax.

`windowed_propagation` computes step 2-4 only inside the window (tiles of target cells against the
reference region around them), so its memory grows with the window, not with the frame size squared.
`dense_propagation` is the plain version (full affinity per context frame, then mask), for teaching,
testing and benchmarking.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from vos_lab.errors import VosLabError


@dataclass(frozen=True)
class PropagationConfig:
    """Hyper-parameters of the protocol (defaults: DINO's evaluation, COURSE.md "evaluation protocol").

    temperature: tau in softmax(cos / tau).   topk: matches kept per target cell (over all context).
    radius: neighbourhood half-size in feature cells (None = whole frame).
    context: how many recent frames; context_stride: their spacing (MAST: 3 frames, stride 2 = t-1, t-3, t-5).
    long_term: absolute frame indices always kept (frame 0 = the annotation; MAST adds frame 5).
    """

    temperature: float = 0.1
    topk: int = 5
    radius: int | None = 12
    context: int = 7
    context_stride: int = 1
    long_term: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        checks = {
            "temperature": self.temperature > 0,
            "topk": self.topk >= 1,
            "radius": self.radius is None or self.radius >= 0,
            "context": self.context >= 0,
            "context_stride": self.context_stride >= 1,
            "long_term": 0 in self.long_term and all(i >= 0 for i in self.long_term),
        }
        for name, ok in checks.items():
            if not ok:
                raise VosLabError(f"invalid propagation parameter {name}={getattr(self, name)!r}")

    def references(self, t: int) -> list[int]:
        """Indices of the context frames used to predict frame t (long-term first, then recent)."""
        recent = [t - 1 - k * self.context_stride for k in range(self.context)]
        anchors = [i for i in self.long_term if i < t]
        return anchors + sorted(i for i in recent if i >= 0 and i not in anchors)


def _window_mask(tile: int, radius: int, device: torch.device) -> torch.Tensor:
    """(tile^2, R^2) bool, R = tile + 2 radius: which region cells lie within +-radius of each tile cell."""
    size = tile + 2 * radius
    local = torch.arange(tile, device=device)
    region = torch.arange(size, device=device)
    near = (region[None, :] - radius - local[:, None]).abs() <= radius  # (tile, R): rows or columns
    return (near[:, None, :, None] & near[None, :, None, :]).reshape(tile * tile, size * size)


def _bands(x: torch.Tensor, row: int, tile: int, size: int) -> torch.Tensor:
    """Regions (tiles_x, D, N * size^2) of a padded map (N, D, Hp, Wp) for the tile row `row`."""
    band = x[:, :, row * tile: row * tile + size, :].unfold(3, size, tile)  # (N, D, size, tx, size)
    n, d, _, tx, _ = band.shape
    return band.permute(3, 1, 0, 2, 4).reshape(tx, d, n * size * size)  # last axis stays contiguous


def windowed_propagation(query: torch.Tensor, keys: torch.Tensor, labels: torch.Tensor, radius: int,
                         topk: int, temperature: float, tile: int = 8) -> torch.Tensor:
    """Soft labels (L, h, w) of the query frame from context keys (N, C, h, w) and labels (N, L, h, w).

    Target cells are grouped in tile x tile blocks; each block is compared with the (tile + 2 radius)^2
    region of every context frame around it, positions outside the +-radius window or outside the
    frame are masked, and the top-k over all N regions is kept.
    """
    c, h, w = query.shape
    n, n_labels = keys.shape[0], labels.shape[1]
    ty, tx = math.ceil(h / tile), math.ceil(w / tile)
    extra_h, extra_w = ty * tile - h, tx * tile - w
    size = tile + 2 * radius
    pad = (radius, radius + extra_w, radius, radius + extra_h)

    q = F.pad(query, (0, extra_w, 0, extra_h)).reshape(c, ty, tile, tx, tile)
    q = q.permute(1, 3, 2, 4, 0).reshape(ty, tx, tile * tile, c)
    keys_p, labels_p = F.pad(keys, pad), F.pad(labels, pad)
    inside = F.pad(torch.ones(1, 1, h, w, device=query.device), pad)
    window = _window_mask(tile, radius, query.device)

    out = query.new_empty(ty, tx, tile * tile, n_labels)
    k = min(topk, n * size * size)
    for row in range(ty):
        k_reg = _bands(keys_p, row, tile, size)  # (tx, C, N*R^2)
        l_reg = _bands(labels_p, row, tile, size)  # (tx, L, N*R^2)
        valid = window[None] & (_bands(inside, row, tile, size) > 0)  # (tx, T^2, R^2)
        aff = torch.bmm(q[row], k_reg).view(tx, tile * tile, n, size * size)
        aff = aff.masked_fill_(~valid[:, :, None, :], float("-inf")).view(tx, tile * tile, -1)
        values, index = aff.topk(k, dim=-1)
        weights = torch.softmax(values / temperature, dim=-1)  # = exp(a/tau) renormalised over the top-k
        picked = l_reg.gather(2, index.reshape(tx, 1, -1).expand(-1, n_labels, -1))  # (tx, L, T^2 k)
        out[row] = torch.einsum("xqk,xlqk->xql", weights, picked.view(tx, n_labels, tile * tile, k))
    out = out.reshape(ty, tx, tile, tile, n_labels).permute(4, 0, 2, 1, 3).reshape(n_labels, ty * tile, tx * tile)
    return out[:, :h, :w]


def neighbourhood_mask(h: int, w: int, radius: int | None, device: torch.device | None = None) -> torch.Tensor:
    """(h*w, h*w) bool: target cell i may attend to reference cell j (|dy| <= radius and |dx| <= radius)."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    if radius is None:
        return torch.ones(h * w, h * w, dtype=torch.bool, device=device)
    return ((ys[:, None] - ys[None]).abs() <= radius) & ((xs[:, None] - xs[None]).abs() <= radius)


def dense_propagation(query: torch.Tensor, keys: torch.Tensor, labels: torch.Tensor, radius: int | None,
                      topk: int, temperature: float) -> torch.Tensor:
    """The plain version, as in DINO's evaluation code: full affinity per context frame, mask, top-k."""
    c, h, w = query.shape
    n, n_labels = keys.shape[0], labels.shape[1]
    aff = torch.exp(torch.einsum("cq,nck->qnk", query.reshape(c, -1), keys.reshape(n, c, -1)) / temperature)
    aff = aff * neighbourhood_mask(h, w, radius, query.device)[:, None, :]  # (hw, N, hw)
    values, index = aff.reshape(h * w, -1).topk(min(topk, n * h * w), dim=-1)
    weights = values / values.sum(-1, keepdim=True)
    flat_labels = labels.reshape(n, n_labels, -1).permute(0, 2, 1).reshape(-1, n_labels)
    return torch.einsum("qk,qkl->lq", weights, flat_labels[index]).reshape(n_labels, h, w)


def propagate_step(query: torch.Tensor, keys: torch.Tensor, labels: torch.Tensor,
                   config: PropagationConfig) -> torch.Tensor:
    """One target frame: windowed when a radius is set, dense over the whole frame otherwise."""
    if config.radius is None:
        return dense_propagation(query, keys, labels, None, config.topk, config.temperature)
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


def propagate_video(encode: Callable[[np.ndarray], torch.Tensor], frames: Callable[[int], np.ndarray],
                    length: int, first_ids: np.ndarray, config: PropagationConfig, stride: int = 8,
                    n_labels: int | None = None, step: Callable = propagate_step) -> Iterator[np.ndarray]:
    """Yield the predicted id map (H, W) uint8 of every frame, the first being the given annotation.

    encode: uint8 frame (H, W, 3) -> L2-normalised features (C, h, w).  frames: index -> uint8 frame.
    step: (query, keys, labels, config) -> soft labels; `propagate_step` unless comparing implementations.
    Only the features and soft labels of frames still needed as context are kept in memory.
    """
    n_labels = int(first_ids.max()) + 1 if n_labels is None else n_labels
    size = first_ids.shape
    memory: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    first = encode(frames(0))
    memory[0] = (first, downsample_labels(ids_to_onehot(first_ids, n_labels).to(first.device),
                                          first.shape[-2:], stride))
    yield np.asarray(first_ids, dtype=np.uint8)
    for t in range(1, length):
        refs = config.references(t)
        query = encode(frames(t))
        keys = torch.stack([memory[i][0] for i in refs])
        labels = torch.stack([memory[i][1] for i in refs])
        soft = step(query, keys, labels, config)
        memory[t] = (query, soft)
        keep = set(config.references(t + 1))
        for old in [i for i in memory if i not in keep]:
            del memory[old]
        yield upsample_labels(soft, size, stride).argmax(0).to(torch.uint8).cpu().numpy()
