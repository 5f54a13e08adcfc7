"""Restricted (windowed) attention: each target cell attends only to a (2R+1)^2 window of each reference.

CorrFlow (Lai & Xie 2019, Sec. 3.3) and MAST (Lai et al. 2020, Sec. 3.2) restrict the affinity to a
window around each target position, because objects move little between nearby frames and the full
affinity (h w)^2 does not fit in memory at 480p. Positions of the window that fall outside the frame
are masked before the softmax; with dilation d the window samples every d-th cell (+-dR cells), which
MAST uses for its coarse search.

One implementation serves training and test, in pure PyTorch: target cells are grouped in tile x tile
blocks; each block is compared with the (tile + 2R)^2 region of every reference around it (one batched
matrix product per row of blocks), and cells outside each target cell's own window are masked. A dilated
window only sees cells of its own phase (y mod d, x mod d), so it is an ordinary window on each of the d^2
sub-sampled maps. Memory
grows with the window, not with the frame size squared. `dense_attention` is the plain version (the full
affinity, then the mask) for teaching and testing: both agree wherever the window lies inside the frame.

Shapes: query (B, C, h, w); keys (B, N, C, h, w) and values (B, N, V, h, w) for N references (4-D keys
and values mean N = 1); the result is (B, V, h, w). `topk=None` is a softmax over every valid position of
all N windows (differentiable, as in training); `topk=k` keeps the k best over all windows jointly and
renormalises (the evaluation protocol).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F

Candidates = tuple[torch.Tensor, torch.Tensor]  # scores (B, h, w, k) and their values (B, h, w, k, V)


def _with_references(x: torch.Tensor) -> torch.Tensor:
    return x if x.dim() == 5 else x[:, None]


def neighbourhood_mask(h: int, w: int, radius: int | None, device: torch.device | None = None,
                       dilation: int = 1) -> torch.Tensor:
    """(h*w, h*w) bool: target cell i may attend to reference cell j (|dy|, |dx| <= dR, multiples of d)."""
    if radius is None:
        return torch.ones(h * w, h * w, dtype=torch.bool, device=device)

    def near(n: int) -> torch.Tensor:  # (n, n): rows (or columns) within reach
        offset = torch.arange(n, device=device)[None, :] - torch.arange(n, device=device)[:, None]
        return (offset.abs() <= radius * dilation) & (offset % dilation == 0)

    return (near(h)[:, None, :, None] & near(w)[None, :, None, :]).reshape(h * w, h * w)


def window_mask(tile: int, radius: int, dilation: int = 1, device: torch.device | None = None) -> torch.Tensor:
    """(tile^2, S^2) bool, S = tile + 2 d R: which cells of a block's region are in each block cell's window."""
    span = radius * dilation
    offset = torch.arange(tile + 2 * span, device=device)[None, :] - span - torch.arange(tile, device=device)[:, None]
    near = (offset.abs() <= span) & (offset % dilation == 0)  # (tile, S): rows or columns
    return (near[:, None, :, None] & near[None, :, None, :]).reshape(tile * tile, -1)


def _bands(x: torch.Tensor, row: int, tile: int, size: int) -> torch.Tensor:
    """Regions (B * tiles_x, D, N * size^2) of a padded map (B, N, D, Hp, Wp) for the block row `row`."""
    band = x[..., row * tile: row * tile + size, :].unfold(-1, size, tile)  # (B, N, D, size, tx, size)
    b, n, d, _, tx, _ = band.shape
    return band.permute(0, 4, 2, 1, 3, 5).reshape(b * tx, d, n * size * size)


def _window_rows(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, radius: int, dilation: int,
                 tile: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """For each row of blocks: affinities (B*tx, tile^2, N*S^2), -inf outside the window or the frame,
    and the region's values (B*tx, V, N*S^2)."""
    b, c, h, w = query.shape
    n = keys.shape[1]
    ty, tx = math.ceil(h / tile), math.ceil(w / tile)
    extra_h, extra_w = ty * tile - h, tx * tile - w
    span = radius * dilation
    size = tile + 2 * span
    pad = (span, span + extra_w, span, span + extra_h)
    q = F.pad(query, (0, extra_w, 0, extra_h)).reshape(b, c, ty, tile, tx, tile)
    q = q.permute(2, 0, 4, 3, 5, 1).reshape(ty, b * tx, tile * tile, c)
    keys_p, values_p = F.pad(keys, pad), F.pad(values, pad)
    inside = F.pad(query.new_ones(1, 1, 1, h, w), pad)
    window = window_mask(tile, radius, dilation, query.device)
    for row in range(ty):
        valid = window[None] & (_bands(inside, row, tile, size) > 0)  # (tx, T^2, S^2)
        aff = torch.bmm(q[row], _bands(keys_p, row, tile, size)).view(b, tx, tile * tile, n, size * size)
        aff = aff.masked_fill(~valid[None, :, :, None, :], float("-inf"))
        yield aff.view(b * tx, tile * tile, n * size * size), _bands(values_p, row, tile, size)


def _untile(rows: list[torch.Tensor], b: int, h: int, w: int, tile: int) -> torch.Tensor:
    """Rows of blocks [(B*tx, tile^2, ...)] -> (B, h, w, ...)."""
    ty, tx, rest = len(rows), rows[0].shape[0] // b, rows[0].shape[2:]
    out = torch.stack(rows).view(ty, b, tx, tile, tile, *rest).transpose(0, 1).transpose(2, 3)
    return out.reshape(b, ty * tile, tx * tile, *rest)[:, :h, :w]


def _phases(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, dilation: int):
    """A window of dilation d only sees cells of its own phase (y mod d, x mod d): yield, per phase, its
    (y, x) slices and the sub-sampled maps, on which the window is an ordinary one (no wasted positions)."""
    for py in range(min(dilation, query.shape[-2])):
        for px in range(min(dilation, query.shape[-1])):
            ys, xs = slice(py, None, dilation), slice(px, None, dilation)
            yield ys, xs, query[..., ys, xs], keys[..., ys, xs], values[..., ys, xs]


def window_topk(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, radius: int, topk: int,
                dilation: int = 1, tile: int = 8) -> Candidates:
    """The k best affinities over all N windows of each target cell and the values they point at."""
    keys, values = _with_references(keys), _with_references(values)
    b, _, h, w = query.shape
    if dilation > 1:
        k = min(topk, keys.shape[1] * (2 * radius + 1) ** 2)
        scores = query.new_full((b, h, w, k), float("-inf"))
        picked = values.new_zeros(b, h, w, k, values.shape[2])
        for ys, xs, q, kk, vv in _phases(query, keys, values, dilation):
            part_scores, part_picked = window_topk(q, kk, vv, radius, topk, 1, tile)
            scores[:, ys, xs, : part_scores.shape[-1]] = part_scores
            picked[:, ys, xs, : part_scores.shape[-1]] = part_picked
        return scores, picked
    scores, picked = [], []
    for aff, vals in _window_rows(query, keys, values, radius, dilation, tile):
        top, index = aff.topk(min(topk, aff.shape[-1]), dim=-1)  # (B*tx, T^2, k)
        chosen = vals.gather(2, index.flatten(1)[:, None].expand(-1, vals.shape[1], -1))  # (B*tx, V, T^2 k)
        scores.append(top)
        picked.append(chosen.view(*chosen.shape[:2], *top.shape[1:]).permute(0, 2, 3, 1))
    return _untile(scores, b, h, w, tile), _untile(picked, b, h, w, tile)


def combine_candidates(candidates: list[Candidates], temperature: float, topk: int | None = None) -> torch.Tensor:
    """Candidates from several sets of references -> (B, V, h, w): keep the k best of all jointly (all when
    topk is None), weights softmax(score / tau) over them, weighted sum of their values."""
    scores = torch.cat([s for s, _ in candidates], dim=-1)
    values = torch.cat([v for _, v in candidates], dim=-2)
    if topk is not None and topk < scores.shape[-1]:
        scores, index = scores.topk(topk, dim=-1)
        values = values.gather(-2, index[..., None].expand(*index.shape, values.shape[-1]))
    weights = torch.softmax(scores / temperature, dim=-1)
    return torch.einsum("bhwk,bhwkv->bvhw", weights, values)


def windowed_attention(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, radius: int,
                       temperature: float, topk: int | None = None, dilation: int = 1, tile: int = 8) -> torch.Tensor:
    """Attention restricted to a (2R+1)^2 window (dilation d) of each reference: (B, V, h, w)."""
    if topk is not None:
        return combine_candidates([window_topk(query, keys, values, radius, topk, dilation, tile)], temperature)
    keys, values = _with_references(keys), _with_references(values)
    b, _, h, w = query.shape
    if dilation > 1:
        out = query.new_zeros(b, values.shape[2], h, w)
        for ys, xs, q, kk, vv in _phases(query, keys, values, dilation):
            out[:, :, ys, xs] = windowed_attention(q, kk, vv, radius, temperature, None, 1, tile)
        return out
    rows = [torch.einsum("xqk,xvk->xqv", torch.softmax(aff / temperature, dim=-1), vals)
            for aff, vals in _window_rows(query, keys, values, radius, dilation, tile)]
    return _untile(rows, b, h, w, tile).permute(0, 3, 1, 2).contiguous()


def dense_attention(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, radius: int | None,
                    temperature: float, topk: int | None = None, dilation: int = 1) -> torch.Tensor:
    """The plain version: the full (h w) x (N h w) affinity, positions outside the window masked, softmax
    (over the top-k when given), weighted sum of values. radius None = the whole frame."""
    keys, values = _with_references(keys), _with_references(values)
    b, c, h, w = query.shape
    n, v = keys.shape[1], values.shape[2]
    aff = torch.einsum("bcq,bnck->bqnk", query.flatten(2), keys.flatten(3))
    aff = aff.masked_fill(~neighbourhood_mask(h, w, radius, query.device, dilation)[None, :, None, :], float("-inf"))
    flat_values = values.flatten(3).transpose(2, 3).reshape(b, 1, 1, n * h * w, v)  # (B, 1, 1, N hw, V)
    scores = aff.reshape(b, h, w, n * h * w)
    if topk is None:
        return combine_candidates([(scores, flat_values.expand(b, h, w, -1, -1))], temperature)
    scores, index = scores.topk(min(topk, n * h * w), dim=-1)
    picked = flat_values.expand(b, h, w, -1, -1).gather(3, index[..., None].expand(*index.shape, v))
    return combine_candidates([(scores, picked)], temperature)


def coordinate_grid(h: int, w: int, device: torch.device | None = None) -> torch.Tensor:
    """(2, h, w): the (y, x) cell coordinates of a feature map."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    return torch.stack([ys, xs]).float()


def localise(query: torch.Tensor, keys: torch.Tensor, radius: int, dilation: int, temperature: float,
             topk: int | None = None, tile: int = 8) -> torch.Tensor:
    """MAST's coarse search (Sec. 3.3): for each target cell, where it lies in each reference (B, N, 2, h, w).

    A dilated window attention whose values are the reference cells' own coordinates: the result is the
    attention-weighted mean position (a soft argmax) of the best matches, to centre the fine window on.
    """
    keys = _with_references(keys)
    b, n, _, h, w = keys.shape
    grid = coordinate_grid(h, w, query.device).expand(b, 1, 2, h, w)
    return torch.stack([windowed_attention(query, keys[:, i: i + 1], grid, radius, temperature, topk, dilation, tile)
                        for i in range(n)], dim=1)


def roi_topk(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, centres: torch.Tensor, radius: int,
             topk: int, chunk_bytes: int = 64 * 2**20) -> Candidates:
    """MAST's fine step: the (2R+1)^2 window of each reference centred at each target cell's located
    position `centres` (B, N, 2, h, w) instead of at the cell itself; the k best over all N jointly.

    Windows are gathered for chunks of target cells, so memory stays near `chunk_bytes`.
    """
    keys, values = _with_references(keys), _with_references(values)
    b, n, c, h, w = keys.shape
    side = 2 * radius + 1
    offsets = torch.arange(-radius, radius + 1, device=query.device)
    centre = centres.round().long()
    ys = (centre[:, :, 0].flatten(2)[..., None, None] + offsets[:, None])  # (B, N, hw, side, 1)
    xs = (centre[:, :, 1].flatten(2)[..., None, None] + offsets[None, :])  # (B, N, hw, 1, side)
    valid = ((ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)).flatten(-2)  # (B, N, hw, side^2)
    index = (ys.clamp(0, h - 1) * w + xs.clamp(0, w - 1)).flatten(-2)  # (B, N, hw, side^2)
    q = query.flatten(2)  # (B, C, hw)
    key_flat, value_flat = keys.flatten(3), values.flatten(3)  # (B, N, C|V, hw)
    step = max(1, chunk_bytes // (4 * n * c * side * side))
    scores, picked = [], []
    for start in range(0, h * w, step):
        idx = index[:, :, start: start + step]  # (B, N, Q, W)
        gathered = torch.stack([key_flat[i][torch.arange(n)[:, None, None], :, idx[i]] for i in range(b)])
        aff = torch.einsum("bcq,bnqwc->bqnw", q[:, :, start: start + step], gathered)
        aff = aff.masked_fill(~valid[:, :, start: start + step].permute(0, 2, 1, 3), float("-inf")).flatten(2)
        vals = torch.stack([value_flat[i][torch.arange(n)[:, None, None], :, idx[i]] for i in range(b)])
        vals = vals.permute(0, 2, 1, 3, 4).flatten(2, 3)  # (B, Q, N W, V)
        top, best = aff.topk(min(topk, aff.shape[-1]), dim=-1)
        scores.append(top)
        picked.append(vals.gather(2, best[..., None].expand(*best.shape, vals.shape[-1])))
    return torch.cat(scores, 1).view(b, h, w, -1), torch.cat(picked, 1).view(b, h, w, *picked[0].shape[2:])
