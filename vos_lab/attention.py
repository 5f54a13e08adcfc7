"""Attention as a copy mechanism: dense, windowed (restricted) and ROI attention, shared by training and test.

A target pixel j "points" at reference pixels i with weights A_ij = softmax_i(f_i . f_j / T); anything
attached to the references (colours, labels) is copied as sum_i A_ij v_i (Vondrick et al. 2018, Eq. 1-2).

CorrFlow (Lai & Xie 2019, Sec. 3.3) and MAST (Lai et al. 2020, Sec. 3.2) restrict the affinity to a
window around each target position, because objects move little between nearby frames and the full
affinity (h w)^2 does not fit in memory at 480p. Positions of the window that fall outside the frame
are masked before the softmax; with dilation d the window samples every d-th cell (+-dR cells), which
MAST uses for its coarse search.

`windowed_attention` / `window_topk`, in pure PyTorch: target cells are grouped in tile x tile blocks; each
block is compared with the (tile + 2R)^2 region of every reference around it, all references in one batched
matrix product, for as many blocks at once as `chunk_bytes` allows. An additive bias (0 or -inf, built once
per geometry and cached) removes the cells outside each target cell's own window or outside the frame. A
dilated window only sees cells of its own phase (y mod d, x mod d), so it is an ordinary window on each of
the d^2 sub-sampled maps. Memory grows with the window, not with the frame size squared. `dense_attention`
is the plain version (the full affinity, then the mask) for teaching and testing: both give the same result.

Shapes: query (B, C, h, w); keys (B, N, C, h, w) and values (B, N, V, h, w) for N references (4-D keys
and values mean N = 1); the result is (B, V, h, w). `topk=None` is a softmax over every valid position of
all N windows (differentiable, as in training); `topk=k` keeps the k best over all windows jointly and
renormalises (the evaluation protocol), keeping as DINO does every position tied with the k-th best. The k
best lie in the k region rows (of all N regions) with the highest maxima, so those rows are ranked first and
the k best taken from them: the same as one joint top-k over all windows, at the cost of one pass (a row
maximum) over the affinities. Positions tied with the k-th best beyond the k (`Ties`; tied as in DINO: equal
weights exp(score / tau) in float32, `dino_weight`) all weigh the same, so they enter as their count and the
sum of their values; only the few cells where one more candidate or one more row reaches the k-th best's
weight are searched for them, in the rows that reach it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

Candidates = tuple[torch.Tensor, torch.Tensor]  # scores (B, h, w, k) and their values (B, h, w, k, V)


class Ties(NamedTuple):
    """The positions scoring exactly the k-th best beyond the k candidates (DINO keeps them all): how many
    (B, h, w) and the sum of their values (B, h, w, V)."""

    count: torch.Tensor
    values: torch.Tensor

CHUNK_BYTES = 16 * 2**20  # working memory of one chunk of blocks in `windowed_attention` / `window_topk`
TILE = 8  # target cells per block side


def pointer_weights(query: torch.Tensor, keys: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """query (B, C, Nq), keys (B, C, Nk) -> A (B, Nq, Nk), each row a softmax over the Nk references."""
    return torch.softmax(torch.einsum("bcq,bck->bqk", query, keys) / temperature, dim=-1)


def copy_values(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """A (B, Nq, Nk) and values (B, Nk, V) -> the copied values (B, Nq, V)."""
    return torch.bmm(weights, values)


def flatten_frames(x: torch.Tensor) -> torch.Tensor:
    """(B, T, C, h, w) -> (B, C, T*h*w): the positions of several reference frames as one set."""
    b, t, c, h, w = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(b, c, t * h * w)


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


@dataclass(frozen=True)
class Tiling:
    """Blocks of tile x tile target cells over an h x w map, each with its (tile + 2R)^2 reference region.

    The maps are padded by R on every side (and up to whole blocks at the bottom and right): block (i, j)'s
    region starts at padded cell (i tile, j tile)."""

    h: int
    w: int
    tile: int
    radius: int

    @property
    def blocks(self) -> tuple[int, int]:
        return math.ceil(self.h / self.tile), math.ceil(self.w / self.tile)

    @property
    def size(self) -> int:
        """Side of a block's reference region."""
        return self.tile + 2 * self.radius

    @property
    def padding(self) -> tuple[int, int, int, int]:
        """F.pad's (left, right, top, bottom) that turns an h x w map into the padded one."""
        ty, tx = self.blocks
        r = self.radius
        return r, r + tx * self.tile - self.w, r, r + ty * self.tile - self.h

    @property
    def padded(self) -> tuple[int, int]:
        ty, tx = self.blocks
        return ty * self.tile + 2 * self.radius, tx * self.tile + 2 * self.radius

    def regions(self, x: torch.Tensor) -> torch.Tensor:
        """Padded maps (..., Hp, Wp) -> every block's region, a view (..., ty, tx, S, S)."""
        return x.unfold(-2, self.size, self.tile).unfold(-2, self.size, self.tile)

    def untile(self, x: torch.Tensor) -> torch.Tensor:
        """(B, ty, tx, tile^2, ...) per block cell -> (B, h, w, ...)."""
        b, ty, tx, _, *rest = x.shape
        x = x.view(b, ty, tx, self.tile, self.tile, *rest).transpose(2, 3)
        return x.reshape(b, ty * self.tile, tx * self.tile, *rest)[:, : self.h, : self.w]


@functools.lru_cache(maxsize=16)
def target_cells(tiling: Tiling, device: torch.device) -> torch.Tensor:
    """(ty, tx, tile^2) bool: the block cells inside the frame (the others are cropped at the end)."""
    (ty, tx), tile = tiling.blocks, tiling.tile
    ys = torch.arange(ty * tile, device=device).view(ty, 1, tile, 1) < tiling.h
    xs = torch.arange(tx * tile, device=device).view(1, tx, 1, tile) < tiling.w
    return (ys & xs).flatten(-2)


@functools.lru_cache(maxsize=16)
def window_bias(tiling: Tiling, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(ty, tx, tile^2, S^2): 0 where a block cell's window meets its block's region inside the frame, -inf
    elsewhere; built once per geometry. Block cells beyond the frame (cropped later) see their whole region,
    so that no softmax is over -inf only (whose NaN would reach the gradients)."""
    span, tile = tiling.radius, tiling.tile
    offset = torch.arange(tiling.size, device=device)[None, :] - span - torch.arange(tile, device=device)[:, None]
    near = offset.abs() <= span  # (tile, S): region rows (or columns) in reach of each block row (or column)
    window = (near[:, None, :, None] & near[None, :, None, :]).reshape(tile * tile, -1)
    frame = F.pad(torch.ones(tiling.h, tiling.w, device=device), tiling.padding)
    inside = tiling.regions(frame) > 0  # (ty, tx, S, S)
    valid = (window & inside.flatten(-2)[:, :, None, :]) | ~target_cells(tiling, device)[..., None]
    return torch.zeros(valid.shape, device=device, dtype=dtype).masked_fill_(~valid, float("-inf"))


@functools.lru_cache(maxsize=16)
def region_index(tiling: Tiling, device: torch.device) -> torch.Tensor:
    """(ty, tx, S^2): the flat index, in a padded map, of every cell of every block's region."""
    (ty, tx), (_, wp), tile, size = tiling.blocks, tiling.padded, tiling.tile, tiling.size
    ys = torch.arange(ty, device=device)[:, None] * tile + torch.arange(size, device=device)  # (ty, S)
    xs = torch.arange(tx, device=device)[:, None] * tile + torch.arange(size, device=device)  # (tx, S)
    return (ys[:, None, :, None] * wp + xs[None, :, None, :]).flatten(-2)


def _chunks(tiling: Tiling, block_bytes: int, chunk_bytes: int) -> Iterator[tuple[slice, slice]]:
    """Rectangles of blocks (rows, columns) of about chunk_bytes each: whole rows of blocks when one fits."""
    ty, tx = tiling.blocks
    per_chunk = max(1, chunk_bytes // block_bytes)
    rows, cols = (max(1, per_chunk // tx), tx) if per_chunk >= tx else (1, per_chunk)
    for r in range(0, ty, rows):
        for c in range(0, tx, cols):
            yield slice(r, r + rows), slice(c, c + cols)


def _window_affinities(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor | None, radius: int,
                       tile: int, chunk_bytes: int) -> Iterator[tuple[slice, slice, torch.Tensor, torch.Tensor | None]]:
    """For each chunk of blocks (rows, columns): affinities (B, r, c, N, tile^2, S^2), -inf outside each
    cell's window or the frame, and (when values are given) the regions' values (B, r, c, N, V, S^2).

    Without gradients the chunks' buffers are re-used (a chunk is valid until the next one is produced):
    fresh large buffers cost page faults, which take longer than the products of small feature maps."""
    b, c, h, w = query.shape
    n = keys.shape[1]
    tiling = Tiling(h, w, tile, radius)
    (ty, tx), s2 = tiling.blocks, tiling.size**2
    q = F.pad(query, (0, tx * tile - w, 0, ty * tile - h)).view(b, c, ty, tile, tx, tile)
    q = q.permute(0, 2, 4, 3, 5, 1).reshape(b, ty, tx, 1, tile * tile, c)
    key_regions = tiling.regions(F.pad(keys, tiling.padding)).permute(0, 3, 4, 1, 2, 5, 6)  # (B,ty,tx,N,C,S,S)
    value_regions = None if values is None else tiling.regions(F.pad(values, tiling.padding)).permute(
        0, 3, 4, 1, 2, 5, 6)
    bias = window_bias(tiling, query.device, query.dtype)[:, :, None]  # (ty, tx, 1, T^2, S^2)
    block_bytes = b * n * s2 * (c + tile * tile + (0 if values is None else values.shape[2])) * query.element_size()
    reuse = not (torch.is_grad_enabled() and (query.requires_grad or keys.requires_grad))
    buffers: dict[str, torch.Tensor] = {}

    def buffer(name: str, shape: torch.Size) -> torch.Tensor | None:
        if not reuse:
            return None
        if name not in buffers:  # the first chunk is the largest
            buffers[name] = query.new_empty(shape)
        return buffers[name].flatten()[: math.prod(shape)].view(shape)

    for rows, cols in _chunks(tiling, block_bytes, chunk_bytes):
        view = key_regions[:, rows, cols]
        regions = view.flatten(-2) if not reuse else buffer("keys", view.shape).copy_(view).flatten(-2)
        queries = q[:, rows, cols].expand(*regions.shape[:4], *q.shape[-2:])
        shape = (*regions.shape[:4], tile * tile, s2)  # (B, r, c, N, T^2, S^2)
        out = buffer("affinities", shape)
        aff = torch.matmul(queries, regions) if out is None else torch.matmul(queries, regions, out=out)
        yield rows, cols, aff.add_(bias[rows, cols]), None if value_regions is None else value_regions[
            :, rows, cols].flatten(-2)


def _phases(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, dilation: int):
    """A window of dilation d only sees cells of its own phase (y mod d, x mod d): yield, per phase, its
    (y, x) slices and the sub-sampled maps, on which the window is an ordinary one (no wasted positions)."""
    for py in range(min(dilation, query.shape[-2])):
        for px in range(min(dilation, query.shape[-1])):
            ys, xs = slice(py, None, dilation), slice(px, None, dilation)
            yield ys, xs, query[..., ys, xs], keys[..., ys, xs], values[..., ys, xs]


def dino_weight(scores: torch.Tensor, temperature: float) -> torch.Tensor:
    """exp(score / tau), computed as DINO's evaluation does: positions tie with the k-th best when these
    weights (float32) are equal, even if their scores differ in the last bits."""
    return torch.exp(scores / temperature)


def window_topk(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, radius: int, topk: int,
                temperature: float, dilation: int = 1, tile: int = TILE,
                chunk_bytes: int = CHUNK_BYTES) -> tuple[Candidates, Ties]:
    """The k best affinities over all N windows of each target cell and the values they point at, and the
    positions tied with the k-th best beyond them (tied: the same weight `dino_weight`)."""
    keys, values = _with_references(keys), _with_references(values)
    b, _, h, w = query.shape
    n, v = values.shape[1], values.shape[2]
    if dilation > 1:
        k = min(topk, n * (2 * radius + 1) ** 2)
        scores = query.new_full((b, h, w, k), float("-inf"))
        picked = values.new_zeros(b, h, w, k, v)
        ties = Ties(values.new_zeros(b, h, w), values.new_zeros(b, h, w, v))
        for ys, xs, q, kk, vv in _phases(query, keys, values, dilation):
            (part_scores, part_picked), part_ties = window_topk(q, kk, vv, radius, topk, temperature, 1, tile,
                                                                 chunk_bytes)
            scores[:, ys, xs, : part_scores.shape[-1]] = part_scores
            picked[:, ys, xs, : part_scores.shape[-1]] = part_picked
            ties.count[:, ys, xs], ties.values[:, ys, xs] = part_ties
        return (scores, picked), ties
    tiling = Tiling(h, w, tile, radius)
    size, k = tiling.size, min(topk, n * tiling.size**2)
    scores = query.new_empty(b, *tiling.blocks, tile * tile, k)
    where = torch.empty(b, *tiling.blocks, tile * tile, k, dtype=torch.long, device=query.device)
    tied = Ties(values.new_zeros(b, *tiling.blocks, tile * tile), values.new_zeros(b, *tiling.blocks, tile * tile, v))
    crowded = torch.zeros(b, *tiling.blocks, tile * tile, dtype=torch.bool, device=query.device)
    index, inside = region_index(tiling, query.device), target_cells(tiling, query.device)
    flat_values = F.pad(values, tiling.padding).permute(0, 1, 3, 4, 2).reshape(b, -1, v)  # (B, N Hp Wp, V)
    for rows, cols, aff, _ in _window_affinities(query, keys, None, radius, tile, chunk_bytes):
        # The k best lie in the k region rows (of all N regions) with the best maxima: rank the rows first.
        lines = aff.unflatten(-1, (size, size))  # (B, r, c, N, T^2, S, S)
        maxima = lines.amax(-1).transpose(3, 4).flatten(-2)  # (B, r, c, T^2, N S)
        ranked = maxima.topk(min(k + 1, n * size), dim=-1)  # one row more: does it reach the k-th best?
        best_lines = ranked.indices[..., :k]
        line = best_lines.div(size, rounding_mode="floor") * (tile * tile * size) + best_lines % size
        line = line + torch.arange(tile * tile, device=query.device)[:, None] * size  # row in (N, T^2, S)
        candidates = lines.flatten(3, 5).gather(3, line.flatten(-2)[..., None].expand(-1, -1, -1, -1, size))
        candidates = candidates.view(*line.shape[:-1], -1)
        top, best = candidates.topk(min(k + 1, candidates.shape[-1]), dim=-1)  # (B, r, c, T^2, k [+ 1])
        # More than k positions reach the k-th best when the next candidate or the next row's maximum does.
        following = dino_weight(torch.cat([top[..., k:], ranked.values[..., k:]], dim=-1), temperature)
        reach = following >= dino_weight(top[..., k - 1: k], temperature)
        top, best = top[..., :k], best[..., :k]
        scores[:, rows, cols] = top
        chosen = best_lines.gather(-1, best.div(size, rounding_mode="floor"))  # n S + region row
        cell = chosen % size * size + best % size  # region cell
        regions = index[rows, cols][None, :, :, None].expand(*cell.shape[:-1], -1)
        where[:, rows, cols] = chosen.div(size, rounding_mode="floor") * math.prod(tiling.padded) + regions.gather(
            -1, cell)
        crowded[:, rows, cols] = reach.any(-1) & (top[..., -1] > float("-inf")) & inside[rows, cols]  # -inf: no weight
        _sum_ties(aff, maxima, top[..., -1], temperature, crowded[:, rows, cols], index[rows, cols],
                  math.prod(tiling.padded), flat_values, Ties(tied.count[:, rows, cols], tied.values[:, rows, cols]))
    where, scores, crowded = tiling.untile(where), tiling.untile(scores), tiling.untile(crowded)  # (B, h, w, k)
    picked = flat_values.gather(1, where.reshape(b, -1, 1).expand(-1, -1, v)).view(b, h, w, k, v)
    weights = dino_weight(scores, temperature)
    among = (weights == weights[..., -1:]) & crowded[..., None]  # tied candidates, counted in `tied` too
    ties = Ties(tiling.untile(tied.count) - among.sum(-1),
                tiling.untile(tied.values) - (picked * among[..., None]).sum(-2))
    return (scores, picked), ties


def _sum_ties(aff: torch.Tensor, maxima: torch.Tensor, kth: torch.Tensor, temperature: float, crowded: torch.Tensor,
              regions: torch.Tensor, plane: int, flat_values: torch.Tensor, out: Ties) -> None:
    """For the crowded cells of a chunk, write into `out` (views of the chunk) how many positions of all N
    windows weigh exactly as much as the k-th best `kth` (B, r, c, T^2) and the sum of their values; only the
    region rows whose maximum reaches it are read. aff: the chunk's affinities (B, r, c, N, T^2, S^2), contiguous;
    maxima: their row maxima (B, r, c, T^2, N S), contiguous; regions: the chunk's `region_index` (r, c,
    S^2); plane: cells of one padded map."""
    if not crowded.any():
        return
    _, r, c, n, cells, s2 = aff.shape
    size, v = math.isqrt(s2), flat_values.shape[-1]
    cell = crowded.flatten().nonzero()[:, 0]  # (M,) in (B, r, c, T^2)
    level = dino_weight(kth.reshape(-1)[cell], temperature)
    reach = dino_weight(maxima.view(-1, n * size)[cell], temperature) >= level[:, None]
    hit, line = reach.nonzero(as_tuple=True)  # the rows reaching it
    cell, level, ref, y = cell[hit], level[hit], line.div(size, rounding_mode="floor"), line % size
    block = cell.div(cells, rounding_mode="floor")  # in (B, r, c)
    rows = aff.view(-1, size)[((block * n + ref) * cells + cell % cells) * size + y]  # (rows, S)
    hit, x = (dino_weight(rows, temperature) == level[:, None]).nonzero(as_tuple=True)
    cell, block, ref = cell[hit], block[hit], ref[hit]
    position = regions.view(-1)[block % (r * c) * s2 + y[hit] * size + x]
    picked = flat_values.view(-1, v)[block.div(r * c, rounding_mode="floor") * (flat_values.shape[1]) + ref * plane
                                     + position]
    out.count.copy_(torch.bincount(cell, minlength=crowded.numel()).view(crowded.shape))
    out.values.copy_(flat_values.new_zeros(crowded.numel(), v).index_add_(0, cell, picked).view(*crowded.shape, v))


def combine_candidates(candidates: list[Candidates], temperature: float, topk: int | None = None,
                       ties: Ties | None = None) -> torch.Tensor:
    """Candidates from several sets of references -> (B, V, h, w): keep the k best of all jointly (all when
    topk is None), weights softmax(score / tau) over them, weighted sum of their values. `ties` (of a single
    set, from `window_topk`) are further positions scoring exactly the lowest candidate, each weighing as much."""
    scores = torch.cat([s for s, _ in candidates], dim=-1)
    values = torch.cat([v for _, v in candidates], dim=-2)
    if topk is not None and topk < scores.shape[-1]:
        scores, index = scores.topk(topk, dim=-1)
        values = values.gather(-2, index[..., None].expand(*index.shape, values.shape[-1]))
    best = scores.amax(-1, keepdim=True)
    weights = torch.exp((scores - best) / temperature)  # softmax(score / tau), normalised below
    out, total = torch.einsum("bhwk,bhwkv->bhwv", weights, values), weights.sum(-1)
    if ties is not None:
        tie = torch.exp((scores.amin(-1) - best[..., 0]) / temperature)  # the weight of each tied position
        out, total = out + tie[..., None] * ties.values, total + tie * ties.count
    return (out / total[..., None]).permute(0, 3, 1, 2)


def windowed_attention(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, radius: int,
                       temperature: float, topk: int | None = None, dilation: int = 1, tile: int = TILE,
                       chunk_bytes: int = CHUNK_BYTES) -> torch.Tensor:
    """Attention restricted to a (2R+1)^2 window (dilation d) of each reference: (B, V, h, w)."""
    if topk is not None:
        candidates, ties = window_topk(query, keys, values, radius, topk, temperature, dilation, tile, chunk_bytes)
        return combine_candidates([candidates], temperature, ties=ties)
    keys, values = _with_references(keys), _with_references(values)
    b, _, h, w = query.shape
    if dilation > 1:
        out = query.new_zeros(b, values.shape[2], h, w)
        for ys, xs, q, kk, vv in _phases(query, keys, values, dilation):
            out[:, :, ys, xs] = windowed_attention(q, kk, vv, radius, temperature, None, 1, tile, chunk_bytes)
        return out
    tiling = Tiling(h, w, tile, radius)
    out = query.new_empty(b, *tiling.blocks, tile * tile, values.shape[2])
    for rows, cols, aff, vals in _window_affinities(query, keys, values, radius, tile, chunk_bytes):
        aff = aff / temperature
        weights = torch.exp(aff - torch.logsumexp(aff, dim=(3, 5), keepdim=True))  # softmax over all N windows
        out[:, rows, cols] = torch.matmul(weights, vals.transpose(-1, -2)).sum(3)
    return tiling.untile(out).permute(0, 3, 1, 2).contiguous()


def dense_attention(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, radius: int | None,
                    temperature: float, topk: int | None = None, dilation: int = 1) -> torch.Tensor:
    """The plain version: the full (h w) x (N h w) affinity, positions outside the window masked, softmax
    (over the top-k and every position tied with the k-th best when topk is given), weighted sum of values.
    radius None = the whole frame."""
    keys, values = _with_references(keys), _with_references(values)
    b, c, h, w = query.shape
    n, v = keys.shape[1], values.shape[2]
    aff = torch.einsum("bcq,bnck->bqnk", query.flatten(2), keys.flatten(3))
    aff = aff.masked_fill(~neighbourhood_mask(h, w, radius, query.device, dilation)[None, :, None, :], float("-inf"))
    scores = aff.reshape(b, h * w, n * h * w)
    if topk is not None:  # as DINO: every position weighing at least as much as the k-th best
        weights = dino_weight(scores, temperature)
        kth = weights.topk(min(topk, n * h * w), dim=-1).values[..., -1:]
        scores = scores.masked_fill(weights < kth, float("-inf"))
    weights = torch.softmax(scores / temperature, dim=-1)
    out = torch.bmm(weights, values.flatten(3).transpose(2, 3).reshape(b, n * h * w, v))  # (B, hw, V)
    return out.transpose(1, 2).reshape(b, v, h, w)


def coordinate_grid(h: int, w: int, device: torch.device | None = None) -> torch.Tensor:
    """(2, h, w): the (y, x) cell coordinates of a feature map."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    return torch.stack([ys, xs]).float()


def localise(query: torch.Tensor, keys: torch.Tensor, radius: int, dilation: int, temperature: float,
             topk: int | None = None, tile: int = TILE) -> torch.Tensor:
    """MAST's coarse search (Sec. 3.3): for each target cell, where it lies in each reference (B, N, 2, h, w).

    A dilated window attention whose values are the reference cells' own coordinates: the result is the
    attention-weighted mean position (a soft argmax), to centre the fine window on. MAST's code takes the
    softmax over the whole dilated window (topk None); topk=k keeps only the k best matches.
    """
    keys = _with_references(keys)
    b, n, _, h, w = keys.shape
    grid = coordinate_grid(h, w, query.device).expand(b, 1, 2, h, w)
    return torch.stack([windowed_attention(query, keys[:, i: i + 1], grid, radius, temperature, topk, dilation, tile)
                        for i in range(n)], dim=1)


def roi_topk(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, centres: torch.Tensor, radius: int,
             topk: int | None, chunk_bytes: int = CHUNK_BYTES) -> Candidates:
    """MAST's fine step: the (2R+1)^2 window of each reference centred at each target cell's located
    position `centres` (B, N, 2, h, w) instead of at the cell itself; the k best over all N jointly (topk
    None: every position of the N windows, -inf outside the frame).

    For a chunk of target cells the affinities to every reference cell are one matrix product, from which each
    cell's window is gathered (cheaper than gathering the windows' features); memory stays near `chunk_bytes`.
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
    step = max(1, chunk_bytes // (4 * n * max(h * w, side * side * (1 + values.shape[2]))))
    scores, picked = [], []
    for start in range(0, h * w, step):
        idx = index[:, :, start: start + step]  # (B, N, Q, W)
        every = torch.einsum("bcq,bnck->bnqk", q[:, :, start: start + step], key_flat)  # (B, N, Q, hw)
        aff = every.gather(-1, idx).masked_fill(~valid[:, :, start: start + step], float("-inf"))
        aff = aff.permute(0, 2, 1, 3).flatten(2)  # (B, Q, N W)
        vals = value_flat[:, :, :, None, :].expand(-1, -1, -1, idx.shape[2], -1).gather(
            -1, idx[:, :, None].expand(-1, -1, value_flat.shape[2], -1, -1))  # (B, N, V, Q, W)
        vals = vals.permute(0, 3, 1, 4, 2).flatten(2, 3)  # (B, Q, N W, V)
        if topk is None:
            scores.append(aff)
            picked.append(vals)
            continue
        top, best = aff.topk(min(topk, aff.shape[-1]), dim=-1)
        scores.append(top)
        picked.append(vals.gather(2, best[..., None].expand(*best.shape, vals.shape[-1])))
    return torch.cat(scores, 1).view(b, h, w, -1), torch.cat(picked, 1).view(b, h, w, *picked[0].shape[2:])
