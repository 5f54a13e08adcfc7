"""Automatic checks for the chapters' exercises.

Each `check_*` takes the student's function, compares it with the package's version on a few cases, and
raises AssertionError with a message that says which case failed and how. A stub that still raises
NotImplementedError is reported, and the check then runs on the solution in `notebooks/solutions/` (shipped
with the package) so the notebook still executes from top to bottom (CI runs every chapter).
`solution(chapter, name)` returns a solution function and `show_solution(chapter, name)` prints its code,
for when you choose to look.
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
from collections.abc import Callable
from functools import cache

import numpy as np
import torch

from vos_lab.attention import neighbourhood_mask
from vos_lab.colour import quantise_ab
from vos_lab.course.notebook import pareto_front
from vos_lab.data.davis import mask_to_ids
from vos_lab.errors import VosLabError
from vos_lab.methods.colourisation import channel_dropout
from vos_lab.methods.contrastcorr import batch_pointer_weights
from vos_lab.methods.ino import in_generative_loss
from vos_lab.methods.mast import dropped_channel
from vos_lab.methods.momentum import momentum_update
from vos_lab.paths import chapters_dir
from vos_lab.propagation import PropagationConfig


@cache
def _solutions(chapter: int):
    path = chapters_dir() / "solutions" / f"ch{chapter:02d}.py"
    if not path.is_file():
        raise VosLabError(f"{path}: solutions of chapter {chapter} not found")
    spec = importlib.util.spec_from_file_location(f"vos_lab_solutions_ch{chapter:02d}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def solution(chapter: int, name: str) -> Callable:
    """The solution function `name` of chapter `chapter`."""
    module = _solutions(chapter)
    if not hasattr(module, name):
        raise VosLabError(f"chapter {chapter} has no solution named '{name}'")
    return getattr(module, name)


def show_solution(chapter: int, name: str) -> None:
    """Print the code of a solution."""
    print(inspect.getsource(solution(chapter, name)))


def _attempted(fn: Callable, chapter: int, name: str, *probe) -> Callable:
    """`fn`, or the solution when `fn` still raises NotImplementedError (with a note saying so)."""
    try:
        fn(*probe)
    except NotImplementedError:
        print(f"Exercise '{name}' is not done yet: checking the solution instead. "
              f"Write your version, then run this check again.")
        return solution(chapter, name)
    return fn


def _masks(seed: int, shape=(24, 32)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    raw = rng.choice(np.array([0, 1, 2, 3, 255], dtype=np.uint8), size=shape, p=[0.5, 0.2, 0.1, 0.1, 0.1])
    return [raw, np.zeros(shape, np.uint8), np.full(shape, 255, np.uint8)]


def check_ids_from_2017(fn: Callable) -> None:
    """Exercise 0.1: DAVIS-2017 stored values -> (ids, void), as `vos_lab.data.davis.mask_to_ids`."""
    cases = _masks(0)
    fn = _attempted(fn, 0, "ids_from_2017", cases[0])
    for k, raw in enumerate(cases):
        ids, void = fn(raw.copy())
        want_ids, want_void = mask_to_ids(raw, 2017)
        assert np.shape(ids) == raw.shape and np.shape(void) == raw.shape, \
            f"case {k}: both outputs must have the mask's shape {raw.shape}, got {np.shape(ids)}, {np.shape(void)}"
        assert np.array_equal(np.asarray(void, dtype=bool), want_void), \
            f"case {k}: void must be True exactly where the stored value is 255"
        assert np.array_equal(ids, want_ids), \
            f"case {k}: ids differ at {int((ids != want_ids).sum())} pixels (void must become 0, others keep their id)"
    print("ids_from_2017: correct")


def check_j_recall(fn: Callable) -> None:
    """Exercise 0.2: recall = fraction of frames scoring above 0.5 (not >=)."""
    cases = [np.array([0.9, 0.4, 0.6, 0.1]), np.array([0.5, 0.5]), np.array([1.0]), np.linspace(0, 1, 11)]
    fn = _attempted(fn, 0, "j_recall", cases[0])
    for k, scores in enumerate(cases):
        got, want = fn(scores), float(np.mean(scores > 0.5))
        assert np.isclose(got, want), f"case {k} {scores.round(2).tolist()}: expected {want:.3f}, got {got}" + (
            " (a frame at exactly 0.5 does not count)" if np.isclose(got, np.mean(scores >= 0.5)) else "")
    print("j_recall: correct")


def check_context_frames(fn: Callable) -> None:
    """Exercise 1.2: frame 0 + the n most recent frames, as `PropagationConfig(context=n).references(t)`."""
    cases = [(1, 3), (2, 3), (5, 3), (10, 7), (4, 7), (9, 1), (6, 0)]
    fn = _attempted(fn, 1, "context_frames", 5, 3)
    for t, n in cases:
        got, want = list(fn(t, n)), PropagationConfig(context=n).references(t)
        assert got == want, f"t={t}, n={n}: expected {want}, got {got}" + (
            " (frame 0 must appear once, first)" if got.count(0) != 1 else "")
    print("context_frames: correct")


def check_topk_weights(fn: Callable) -> None:
    """Exercise 1.1: softmax over the top-k scores of each row, zeros elsewhere."""
    scores = torch.randn(4, 30, generator=torch.Generator().manual_seed(0))
    fn = _attempted(fn, 1, "topk_weights", scores, 3, 0.1)
    for k, tau in ((1, 0.1), (3, 0.1), (5, 1.0), (30, 0.05)):
        got = fn(scores.clone(), k, tau)
        assert tuple(got.shape) == tuple(scores.shape), f"k={k}: shape must stay {tuple(scores.shape)}, got {got.shape}"
        assert torch.allclose(got.sum(-1), torch.ones(4), atol=1e-5), f"k={k}: each row must sum to 1"
        assert ((got > 0).sum(-1) <= k).all(), f"k={k}: at most k weights per row may be non-zero"
        top, index = scores.topk(k, dim=-1)
        want = torch.zeros_like(scores).scatter(-1, index, torch.softmax(top / tau, -1))
        error = float((got - want).abs().max())
        assert torch.allclose(got, want, atol=1e-5), \
            f"k={k}, tau={tau}: weights differ by up to {error:.3g} (divide by tau before the softmax)"
    print("topk_weights: correct")


def check_nearest_centre(fn: Callable) -> None:
    """Exercise 2.1: nearest ab centre per pixel, as `vos_lab.colour.quantise_ab`."""
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(16, 2, generator=generator) * 40
    ab = torch.randn(2, 9, 11, generator=generator) * 50
    fn = _attempted(fn, 2, "nearest_centre", ab, centres)
    got = torch.as_tensor(fn(ab.clone(), centres.clone()))
    assert tuple(got.shape) == (9, 11), f"the output must be (H, W) = (9, 11), got {tuple(got.shape)}"
    want = quantise_ab(ab, centres)
    assert torch.equal(got.long(), want), f"{int((got != want).sum())} of 99 pixels got another centre"
    assert torch.equal(torch.as_tensor(fn(centres.T.reshape(2, 4, 4), centres)).flatten().long(), torch.arange(16)), \
        "each centre must map to itself"
    print("nearest_centre: correct")


def check_copy_colours(fn: Callable) -> None:
    """Exercise 2.2: attention-weighted copy of one-hot reference colours."""
    generator = torch.Generator().manual_seed(0)
    weights = torch.softmax(torch.randn(2, 5, 7, generator=generator), -1)
    classes = torch.randint(0, 4, (2, 7), generator=generator)
    fn = _attempted(fn, 2, "copy_colours", weights, classes, 4)
    got = fn(weights, classes, 4)
    assert tuple(got.shape) == (2, 5, 4), f"the output must be (B, Nq, k) = (2, 5, 4), got {tuple(got.shape)}"
    assert torch.allclose(got.sum(-1), torch.ones(2, 5), atol=1e-5), "each distribution must sum to 1"
    want = torch.einsum("bqk,bkc->bqc", weights, torch.nn.functional.one_hot(classes, 4).float())
    assert torch.allclose(got, want, atol=1e-5), "the copied distribution differs: sum weights per colour class"
    print("copy_colours: correct")


def check_valid_positions(fn: Callable) -> None:
    """Exercise 3.1: valid window positions of one cell, as `vos_lab.attention.neighbourhood_mask`."""
    cases = [(20, 20, (0, 0), 6, 1), (20, 20, (0, 0), 6, 2), (20, 20, (10, 10), 4, 1), (13, 17, (12, 3), 3, 2),
             (5, 7, (2, 3), 6, 1), (9, 9, (4, 4), 2, 3)]
    fn = _attempted(fn, 3, "valid_positions", *cases[0])
    for h, w, cell, radius, dilation in cases:
        got = fn(h, w, cell, radius, dilation)
        want = int(neighbourhood_mask(h, w, radius, dilation=dilation)[cell[0] * w + cell[1]].sum())
        hint = " (count the rows reached, times the columns reached)" if got != (2 * radius + 1) ** 2 else \
            " (positions outside the map do not count)"
        assert got == want, f"{h}x{w} map, cell {cell}, R={radius}, d={dilation}: expected {want}, got {got}{hint}"
    print("valid_positions: correct")


def check_scheduled_colours(fn: Callable) -> None:
    """Exercise 3.2: scheduled sampling, one choice per sample: the truth when its draw is below eps."""
    generator = torch.Generator().manual_seed(0)
    truth, predicted = torch.rand(4, 3, 2, 2, generator=generator), torch.rand(4, 3, 2, 2, generator=generator)
    draws = torch.tensor([0.05, 0.5, 0.7, 0.95])
    fn = _attempted(fn, 3, "scheduled_colours", truth, predicted, 0.6, draws)
    for eps in (0.0, 0.6, 0.9, 1.0):
        got = fn(truth.clone(), predicted.clone(), eps, draws.clone())
        assert tuple(got.shape) == tuple(truth.shape), f"eps={eps}: shape must stay {tuple(truth.shape)}"
        for b, draw in enumerate(draws.tolist()):
            source, name = (truth, "ground truth") if draw < eps else (predicted, "prediction")
            assert torch.equal(got[b], source[b]), \
                f"eps={eps}, sample {b} (draw {draw}): expected the {name} (truth with probability eps: draw < eps)"
    print("scheduled_colours: correct")


def check_huber_target(fn: Callable) -> None:
    """Exercise 3.3: MAST's regression target, as `vos_lab.methods.mast.dropped_channel` (scale 20)."""
    generator = torch.Generator().manual_seed(0)
    lab = torch.randn(3, 2, 3, 16, 24, generator=generator) * 40
    fn = _attempted(fn, 3, "huber_target", lab, torch.tensor([1, 2, 1]), (2, 3))
    for channel, size in ((torch.tensor([1, 2, 1]), (2, 3)), (torch.tensor([2, 2, 1]), (4, 6)),
                          (torch.tensor([1, 1, 1]), (1, 1))):
        got, want = fn(lab.clone(), channel.clone(), size), dropped_channel(lab, channel, size, 20.0)
        assert tuple(got.shape) == tuple(want.shape), \
            f"size {size}: expected shape {tuple(want.shape)}, got {tuple(got.shape)}"
        for b, c in enumerate(channel.tolist()):
            name = "ab"[c - 1]
            assert torch.allclose(got[b], want[b], atol=1e-4), f"channels {channel.tolist()}, size {size}: sample " \
                f"{b} must regress channel {c} ({name}), averaged per cell, / 110 x 20"
    print("huber_target: correct")


def _dropout_masks(out: torch.Tensor) -> torch.Tensor:
    """Which channels of each frame were zeroed, (B, T, 3), for an input of ones."""
    return out.flatten(3).abs().sum(-1) == 0


def check_channel_dropout(fn: Callable) -> Callable:
    """Exercise 2.3: CorrFlow's bottleneck, as `vos_lab.methods.colourisation.channel_dropout`. Returns the
    function checked (yours, or the solution while yours is not done)."""
    ones = torch.ones(4000, 3, 3, 2, 2)  # (B, T, 3, H, W): many samples, to measure the probabilities
    fn = _attempted(fn, 2, "channel_dropout", ones[:4], 0.7, torch.Generator().manual_seed(0))
    out = fn(ones.clone(), 1.0, torch.Generator().manual_seed(1))
    assert tuple(out.shape) == tuple(ones.shape), f"the shape must stay {tuple(ones.shape)}, got {tuple(out.shape)}"
    masks = _dropout_masks(out)
    assert (masks == masks[:, :1]).all(), "every frame of a sample must lose the same channels (draw once per sample)"
    dropped = masks[:, 0].sum(1)
    assert set(dropped.tolist()) <= {1, 2}, \
        f"with probability 1 each sample must lose 1 or 2 channels, got {sorted(set(dropped.tolist()))}"
    share = float((dropped == 2).float().mean())
    assert 0.45 < share < 0.55, f"1 and 2 dropped channels must be equally likely; 2 happened {share:.0%} of the time"
    per_channel = masks[:, 0].float().mean(0)
    assert (per_channel - per_channel.mean()).abs().max() < 0.05, \
        f"every channel must be dropped equally often, got {per_channel.tolist()}"
    kept_values = out.flatten(3)[..., 0][~masks]
    want = (3.0 / (3 - dropped)).repeat_interleave(ones.shape[1] * (3 - dropped))  # kept values, sample by sample
    assert torch.allclose(kept_values, want.float()), "rescale the kept channels by 3 / (number of channels kept)"
    assert torch.equal(fn(ones[:8].clone(), 0.0, torch.Generator().manual_seed(2)), ones[:8]), \
        "with probability 0 the input must come back unchanged"
    share = float(_dropout_masks(fn(ones.clone(), 0.7, torch.Generator().manual_seed(3)))[:, 0].any(1).float().mean())
    assert 0.66 < share < 0.74, f"with probability 0.7, {share:.0%} of the samples lost channels (expected about 70%)"
    inputs = torch.randn(8, 2, 3, 5, 6, generator=torch.Generator().manual_seed(4))
    for seed in range(3):
        got, want = (f(inputs.clone(), 0.7, torch.Generator().manual_seed(seed)) for f in (fn, channel_dropout))
        assert torch.allclose(got, want), f"seed {seed}: the rules hold but the random draws differ from vos_lab's; " \
            "draw rand(B) < p, then randint(1, 3, (B,)), then argsort(rand(B, 3)), in this order"
    print("channel_dropout: correct")
    return fn


def check_momentum_update(fn: Callable) -> None:
    """Exercise 4.1: the key encoder's moving average, as `vos_lab.methods.momentum.momentum_update`
    (in place, parameters only, the query untouched)."""

    def nets(seed: int) -> tuple[torch.nn.Module, torch.nn.Module]:
        torch.manual_seed(seed)
        return (torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3), torch.nn.Linear(4, 2))
                for _ in range(2))

    fn = _attempted(fn, 4, "momentum_update", *nets(0), 0.9)
    for seed, m in ((1, 0.9), (2, 0.999), (3, 0.0), (4, 1.0)):
        key, query = nets(seed)
        want, query_before = copy.deepcopy(key), copy.deepcopy(query)
        momentum_update(want, query, m)
        fn(key, query, m)
        for (name, got), expected in zip(key.named_parameters(), want.parameters(), strict=True):
            assert torch.allclose(got, expected, atol=1e-6), \
                f"m={m}: key parameter {name} must become m * key + (1 - m) * query (in place)"
        for (name, got), before in zip(query.named_parameters(), query_before.parameters(), strict=True):
            assert torch.equal(got, before), f"m={m}: the query's {name} changed; only the key follows"
        assert all(p.grad is None for p in key.parameters()), "no gradient: update under torch.no_grad()"
    print("momentum_update: correct")


def check_inter_video_softmax(fn: Callable) -> None:
    """Exercise 5.1: ContrastCorr's inter-video affinity, as `vos_lab.methods.contrastcorr.batch_pointer_weights`."""
    generator = torch.Generator().manual_seed(0)
    cases = [(torch.randn(b, 6, nq, generator=generator), torch.randn(b, 6, nk, generator=generator), t)
             for b, nq, nk, t in ((3, 4, 5, 0.5), (2, 3, 3, 1.0), (4, 2, 6, 0.1), (1, 5, 4, 0.3))]
    fn = _attempted(fn, 5, "inter_video_softmax", *cases[0])
    for k, (queries, keys, temperature) in enumerate(cases):
        b, _, nq = queries.shape
        nk = keys.shape[2]
        got, want = fn(queries.clone(), keys.clone(), temperature), batch_pointer_weights(queries, keys, temperature)
        assert tuple(got.shape) == (b * nq, b * nk), \
            f"case {k}: expected shape (B Nq, B Nk) = {(b * nq, b * nk)}, got {tuple(got.shape)}"
        assert torch.allclose(got.sum(1), torch.ones(b * nq), atol=1e-5), \
            f"case {k}: each row must be ONE softmax over the reference cells of all {b} videos (rows sum to 1)"
        own = torch.stack([got[i * nq: (i + 1) * nq, i * nk: (i + 1) * nk].sum(1) for i in range(b)])
        assert b == 1 or (own < 1 - 1e-4).any(), \
            f"case {k}: all the mass stays in the own video: the other videos' keys are missing from the softmax"
        assert torch.allclose(got, want, atol=1e-5), f"case {k}: the values differ: row i Nq + q is video i's " \
            f"query q, column j Nk + r is video j's key r, scores q . k / temperature"
    print("inter_video_softmax: correct")


def check_masked_token_loss(fn: Callable) -> None:
    """Exercise 6.1: INO's in-generative loss, as `vos_lab.methods.ino.in_generative_loss` (one view per sample)."""
    generator = torch.Generator().manual_seed(0)
    teacher = torch.softmax(torch.randn(3, 10, 6, generator=generator) / 0.04, -1)
    student = torch.randn(3, 10, 6, generator=generator)
    mask = torch.rand(3, 10, generator=generator) < 0.4
    fn = _attempted(fn, 6, "masked_token_loss", teacher, student, mask)
    for name, m in (("a random mask", mask), ("one masked patch", torch.eye(3, 10, dtype=torch.bool)),
                    ("no masked patch", torch.zeros(3, 10, dtype=torch.bool))):
        got = torch.as_tensor(fn(teacher.clone(), student.clone(), m.clone()))
        want = in_generative_loss(teacher[:, None, None], student[:, None, None], m)
        assert got.shape == (), f"{name}: return one number (a 0-d tensor), got shape {tuple(got.shape)}"
        hint = " (with no masked patch the loss is 0: divide by max(count, 1))" if not m.any() else \
            " (cross-entropy -sum p_t log softmax(s / 0.1), averaged over the masked patches only)"
        assert torch.allclose(got.float(), want, atol=1e-5), \
            f"{name}: expected {float(want):.5f}, got {float(got):.5f}{hint}"
    print("masked_token_loss: correct")


def check_pareto_front(fn: Callable) -> None:
    """Exercise 7.1: the methods on the J&F-against-cost Pareto front, as `vos_lab.course.notebook.pareto_front`."""
    rng = np.random.default_rng(0)
    names = [f"m{i}" for i in range(8)]
    cases = {
        "random methods": ({n: float(c) for n, c in zip(names, rng.uniform(0.01, 2, 8), strict=True)},
                           {n: float(s) for n, s in zip(names, rng.uniform(0.2, 0.8, 8), strict=True)}),
        "one method": ({"lab": 0.1}, {"lab": 0.6}),
        "a tie in cost": ({"a": 0.1, "b": 0.1, "c": 0.5}, {"a": 0.5, "b": 0.6, "c": 0.7}),
        "a tie in J&F": ({"a": 0.1, "b": 0.3, "c": 0.5}, {"a": 0.6, "b": 0.6, "c": 0.7}),
        "two identical methods": ({"a": 0.2, "b": 0.2}, {"a": 0.5, "b": 0.5}),
    }
    fn = _attempted(fn, 7, "pareto_front", *cases["one method"])
    for name, (cost, score) in cases.items():
        got, want = list(fn(dict(cost), dict(score))), pareto_front(cost, score)
        assert set(got) == set(want), f"{name}: expected the front {want}, got {got} (a method is on the front " \
            "unless another is at most as costly and at least as good, and strictly better in one)"
        assert got == want, f"{name}: the right methods, in the wrong order: cheapest first, got {got}"
    print("pareto_front: correct")
