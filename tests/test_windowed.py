"""Restricted (windowed) attention: equal to the dense version, differentiable, and the ROI search."""

import pytest
import torch
import torch.nn.functional as F

from vos_lab import propagation
from vos_lab.attention import (
    coordinate_grid,
    dense_attention,
    localise,
    neighbourhood_mask,
    roi_topk,
    window_bias,
    windowed_attention,
)
from vos_lab.propagation import MEMORY_LAYOUTS, PropagationConfig, propagate_step, roi_propagation


def _problem(b, n, h, w, channels=8, values=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, channels, h, w, generator=g), torch.randn(b, n, channels, h, w, generator=g),
            torch.randn(b, n, values, h, w, generator=g))


@pytest.mark.parametrize("b,n,h,w,radius,dilation,topk", [
    (2, 3, 13, 17, 3, 1, None), (2, 2, 13, 17, 3, 2, None), (1, 1, 24, 24, 6, 1, None), (3, 2, 9, 30, 2, 3, 5),
    (1, 2, 20, 9, 12, 1, 7), (2, 1, 8, 8, 0, 1, None), (1, 1, 11, 5, 2, 1, 1000)])
def test_windowed_equals_dense(b, n, h, w, radius, dilation, topk):
    query, keys, values = _problem(b, n, h, w)
    windowed = windowed_attention(query, keys, values, radius, 0.5, topk, dilation)
    dense = dense_attention(query, keys, values, radius, 0.5, topk, dilation)
    assert windowed.shape == (b, 3, h, w)
    assert torch.allclose(windowed, dense, atol=1e-5)


@pytest.mark.parametrize("chunk_bytes", [1, 3 * 2**20, 2**30])  # one block per chunk, parts of rows, all at once
@pytest.mark.parametrize("b,n,h,w,radius,dilation,topk", [
    (1, 8, 21, 27, 12, 1, 5), (2, 3, 13, 17, 9, 1, 5), (1, 4, 11, 19, 3, 2, 5), (1, 3, 6, 10, 4, 1, None),
    (2, 2, 17, 13, 2, 1, 30)])
def test_chunks_of_blocks_equal_dense(b, n, h, w, radius, dilation, topk, chunk_bytes):
    # Several references, maps that are no multiple of the block, windows wider than a block and past the
    # frame's border, dilation, more candidates than some windows hold.
    query, keys, values = _problem(b, n, h, w)
    windowed = windowed_attention(query, keys, values, radius, 0.5, topk, dilation, chunk_bytes=chunk_bytes)
    assert torch.allclose(windowed, dense_attention(query, keys, values, radius, 0.5, topk, dilation), atol=1e-5)


def test_window_bias_is_built_once_per_geometry():
    query, keys, values = _problem(1, 2, 13, 17)
    windowed_attention(query, keys, values, 5, 0.5, topk=5)
    before = window_bias.cache_info()
    windowed_attention(query, keys, values, 5, 0.5, topk=5)
    after = window_bias.cache_info()
    assert after.hits > before.hits and after.misses == before.misses


def test_a_window_covering_the_frame_is_full_attention():
    query, keys, values = _problem(2, 1, 6, 7)
    full = torch.softmax(torch.einsum("bcq,bck->bqk", query.flatten(2), keys[:, 0].flatten(2)), dim=-1)
    expected = torch.bmm(full, values[:, 0].flatten(2).transpose(1, 2)).transpose(1, 2).reshape(2, 3, 6, 7)
    assert torch.allclose(windowed_attention(query, keys[:, 0], values[:, 0], 7, 1.0), expected, atol=1e-5)


def test_dilated_window_sees_only_every_dth_cell():
    mask = neighbourhood_mask(9, 9, radius=2, dilation=2).view(9, 9, 9, 9)
    assert mask[4, 4].nonzero().tolist() == [[y, x] for y in (0, 2, 4, 6, 8) for x in (0, 2, 4, 6, 8)]


def test_gradients_flow_to_query_and_keys():
    query, keys, values = _problem(2, 1, 10, 12)
    query.requires_grad_(True)
    keys.requires_grad_(True)
    out = windowed_attention(query, keys, values, 3, 1.0)
    out.square().sum().backward()
    assert query.grad.abs().sum() > 0 and keys.grad.abs().sum() > 0
    assert torch.isfinite(query.grad).all() and torch.isfinite(keys.grad).all(), "masked positions give no NaN"


def _shifted_patch(shift=(6, 9), size=(24, 32), channels=4):
    """A target whose distinctive cells appear in the reference moved by `shift` cells."""
    g = torch.Generator().manual_seed(1)
    reference = F.normalize(torch.randn(channels, *size, generator=g), dim=0)
    query = F.normalize(torch.randn(channels, *size, generator=g), dim=0)
    query[:, 4:10, 4:10] = reference[:, 4 + shift[0]: 10 + shift[0], 4 + shift[1]: 10 + shift[1]]
    labels = torch.zeros(2, *size)
    labels[0] = 1
    labels[:, 4 + shift[0]: 10 + shift[0], 4 + shift[1]: 10 + shift[1]] = torch.tensor([0.0, 1.0])[:, None, None]
    return query, reference, labels


def test_coarse_search_locates_a_shifted_patch():
    query, reference, _ = _shifted_patch()
    centres = localise(query[None], reference[None], radius=3, dilation=3, temperature=0.05, topk=1)
    assert centres.shape == (1, 1, 2, 24, 32)
    # The patch moved by (6, 9): both multiples of the dilation, so the coarse grid hits it exactly.
    assert torch.equal(centres[0, 0, :, 4:10, 4:10], torch.stack(torch.meshgrid(
        torch.arange(10, 16), torch.arange(13, 19), indexing="ij")).float())


def test_roi_finds_what_the_plain_window_cannot():
    query, reference, labels = _shifted_patch(channels=16)  # 4 random channels match too well for a soft search
    config = PropagationConfig(radius=3, topk=1, context=0, roi=True)  # 30 frames back: dilation 3, +-9 cells
    with_roi = roi_propagation(query, reference[None], labels[None], config, gaps=(30,))
    without = propagate_step(query, reference[None], labels[None], PropagationConfig(radius=3, topk=1))
    assert (with_roi[1, 4:10, 4:10] > 0.99).all(), "the ROI is centred on the moved patch"
    assert (without[1, 4:10, 4:10] < 0.01).all(), "a +-3 window cannot reach a (6, 9) move"


def test_roi_with_centres_on_the_cells_is_the_plain_window():
    query, keys, values = _problem(1, 2, 10, 13)
    grid = torch.stack(torch.meshgrid(torch.arange(10), torch.arange(13), indexing="ij")).float()
    scores, picked = roi_topk(query, keys, values, grid.expand(1, 2, 2, 10, 13), radius=3, topk=6,
                              chunk_bytes=4096)
    weights = torch.softmax(scores / 0.5, -1)
    assert torch.allclose(torch.einsum("bhwk,bhwkv->bvhw", weights, picked),
                          windowed_attention(query, keys, values, 3, 0.5, topk=6), atol=1e-5)


def test_memory_layouts():
    mast = PropagationConfig(**MEMORY_LAYOUTS["mast"])
    assert mast.references(12) == [0, 5, 7, 9, 11] and mast.gaps(12) == (12, 7, 5, 3, 1)
    # MAST's code searches coarse-to-fine only the references more than 15 frames back.
    assert [mast.far(t) for t in (12, 16, 20, 21, 40)] == [0, 1, 1, 2, 2]
    assert PropagationConfig(**MEMORY_LAYOUTS["previous"]).references(12) == [11]
    assert PropagationConfig(**MEMORY_LAYOUTS["default"]) == PropagationConfig()


def test_attention_benchmark_measures_both():
    from vos_lab.bench import _attention_run

    for name in ("dense", "windowed"):
        seconds, peak = _attention_run(name, (8, 10), 8, 2, 2, 5, "cpu", 1)
        assert seconds > 0 and peak >= 0


@pytest.mark.parametrize("chunk_bytes", [1, 2**30])
@pytest.mark.parametrize("n,h,w,radius,dilation,topk", [(3, 13, 17, 3, 1, 5), (2, 11, 19, 3, 2, 4),
                                                        (1, 9, 9, 2, 1, 30)])
def test_windowed_keeps_ties_like_dense(n, h, w, radius, dilation, topk, chunk_bytes):
    # Integer features: affinities tie exactly; every position tied with the k-th best is kept by both.
    g = torch.Generator().manual_seed(1)
    query, keys = torch.randint(-1, 2, (2, 4, h, w), generator=g), torch.randint(-1, 2, (2, n, 4, h, w), generator=g)
    values = torch.randn(2, n, 3, h, w, generator=g)
    windowed = windowed_attention(query.float(), keys.float(), values, radius, 0.5, topk, dilation,
                                  chunk_bytes=chunk_bytes)
    dense = dense_attention(query.float(), keys.float(), values, radius, 0.5, topk, dilation)
    aff = torch.einsum("bcq,bnck->bqnk", query.flatten(2).float(), keys.flatten(3).float())
    aff = aff.masked_fill(~neighbourhood_mask(h, w, radius, None, dilation)[None, :, None], float("-inf")).flatten(2)
    kept = aff >= aff.topk(topk, dim=-1).values[..., -1:]
    expected = torch.einsum("bqk,bkv->bvq", torch.softmax(aff.masked_fill(~kept, float("-inf")) / 0.5, dim=-1),
                            values.permute(0, 1, 3, 4, 2).reshape(2, -1, 3)).reshape(2, 3, h, w)
    assert torch.allclose(dense, expected, atol=1e-5) and torch.allclose(windowed, expected, atol=1e-5)


def test_roi_dilation_grows_with_the_gap():
    """MAST's code: dilation min(4, gap // 15 + 1) for references more than 15 frames back, none otherwise."""
    config = PropagationConfig(roi=True)
    gaps = (1, 15, 16, 29, 30, 44, 45, 200)
    assert [config.dilation(gap) for gap in gaps] == [1, 1, 2, 2, 3, 3, 4, 4]
    assert PropagationConfig(roi_gap=5, roi_max_dilation=2).dilation(11) == 2
    assert [PropagationConfig(roi_gap=0).dilation(gap) for gap in (1, 2, 9)] == [2, 3, 4], "every reference searched"


def _recorded_localise(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = propagation.localise

    def localise(query, keys, radius, dilation, temperature, topk=None):
        calls.append(dilation)
        assert topk is None, "the coarse search is a softmax over the whole window"
        return real(query, keys, radius, dilation, temperature, topk)

    monkeypatch.setattr(propagation, "localise", localise)
    return calls


def test_near_references_skip_the_coarse_search(monkeypatch):
    calls = _recorded_localise(monkeypatch)
    query, keys, labels = (x[0] for x in _problem(1, 3, 9, 11))
    config = PropagationConfig(radius=2, topk=None, roi=True)
    plain = propagate_step(query, keys, labels, PropagationConfig(radius=2, topk=None), gaps=(15, 3, 1))
    assert torch.allclose(propagate_step(query, keys, labels, config, gaps=(15, 3, 1)), plain, atol=1e-6)
    assert calls == [], "no reference more than 15 frames back: no coarse search"
    propagate_step(query, keys, labels, config, gaps=(47, 20, 1))
    assert calls == [4, 2], "one coarse search per far reference, dilation growing with the gap"


def test_roi_readout_is_a_dense_softmax_over_the_windows():
    """From scratch on the full affinity: the far reference's window centred at the soft-argmax of a softmax
    over its whole dilated window, the near one's at the cell; one softmax over both windows' positions."""
    query, keys, labels = (x[0] for x in _problem(1, 2, 10, 12, seed=3))
    query, keys = F.normalize(query, dim=0), F.normalize(keys, dim=1)
    radius, tau, (h, w) = 2, 0.1, query.shape[-2:]
    cells = coordinate_grid(h, w).flatten(1).T  # (hw, 2)
    aff = torch.einsum("cq,nck->nqk", query.flatten(1), keys.flatten(2)) / tau  # (N, hw, hw)
    coarse = torch.softmax(aff[0].masked_fill(~neighbourhood_mask(h, w, radius, dilation=3), float("-inf")), -1)
    centres = (coarse @ cells).round()  # gap 31: dilation 3
    far_window = ((cells[None] - centres[:, None]).abs() <= radius).all(-1)  # (hw, hw)
    windows = torch.cat([far_window, neighbourhood_mask(h, w, radius)], dim=1)
    weights = torch.softmax(torch.cat([aff[0], aff[1]], 1).masked_fill(~windows, float("-inf")), -1)
    expected = (weights @ labels.flatten(2).transpose(1, 2).reshape(-1, labels.shape[1])).T.reshape(-1, h, w)
    config = PropagationConfig(radius=radius, topk=None, temperature=tau, roi=True)
    assert torch.allclose(roi_propagation(query, keys, labels, config, gaps=(31, 2)), expected, atol=1e-5)


def test_softmax_over_every_window_position_on_large_maps():
    """topk None (MAST's read-out) takes the windowed path on maps over DENSE_CELLS, equal to the dense one;
    `propagate --topk 0` asks for it."""
    from vos_lab.cli import _config, build_parser

    query, keys, labels = (x[0] for x in _problem(1, 2, 33, 32, seed=4))
    assert 33 * 32 > propagation.DENSE_CELLS
    config = PropagationConfig(radius=3, topk=None)
    assert torch.allclose(propagate_step(query, keys, labels, config),
                          propagation.dense_propagation(query, keys, labels, 3, None, 0.1), atol=1e-5)
    args = build_parser().parse_args(["propagate", "--davis", "d", "--out", "o", "--topk", "0"])
    assert _config(args).topk is None


def test_roi_topk_readout_equals_the_top_k_of_every_window_position():
    query, keys, labels = (x[0] for x in _problem(1, 3, 10, 12, seed=5))
    config = PropagationConfig(radius=2, topk=4, roi=True)
    every = propagation.roi_topk(query[None], keys[None], labels[None], torch.stack([
        propagation.localise(query[None], keys[None, 0], 2, 2, 0.1)[:, 0],
        *[coordinate_grid(10, 12)[None]] * 2], dim=1), 2, 4)
    expected = propagation.combine_candidates([every], 0.1, 4)[0]
    assert torch.allclose(roi_propagation(query, keys, labels, config, gaps=(20, 3, 1)), expected, atol=1e-5)
