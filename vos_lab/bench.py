"""Benchmarks: windowed vs plain dense propagation on a video, and dense vs windowed attention by size.

The dense propagation reference is DINO's `label_propagation` step for step (`dino_propagation`).

Each implementation runs in its own fresh (spawned) process on precomputed features. Its peak memory is the
high-water mark of resident memory reset just before it starts (Linux /proc/self/clear_refs) minus the
memory it had then; on a GPU, the CUDA allocator's peak above what was allocated before. Propagation runs
with the ordinary allocator (what a user's run costs, buffers the heap keeps included); `bench_attention`
times one call per size in a child whose allocator returns freed buffers to the system at once (a fixed glibc
mmap threshold), so the peak of each call counts its live buffers only.
`bench_propagation` prints seconds per frame, peak memory, their ratios, whether both give identical masks,
and the J&F of both against the ground truth. `bench_attention` (chapter 3) times one attention call at
growing resolutions. `bench_adapt` (chapter 4) times online adaptation on one propagated video.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vos_lab.attention import dense_attention, neighbourhood_mask, windowed_attention
from vos_lab.data.davis import DavisDataset, DavisSequence
from vos_lab.device import pick_device
from vos_lab.features import build_encoder
from vos_lab.metrics import evaluate_sequence, summarize
from vos_lab.propagation import PropagationConfig, propagate_video, windowed_propagation


@functools.lru_cache(maxsize=1)
def _dino_mask(h: int, w: int, radius: int, contexts: int, device: torch.device) -> torch.Tensor:
    # built once, as DINO does
    return neighbourhood_mask(h, w, radius, device).float().unsqueeze(0).repeat(contexts, 1, 1)


def dino_propagation(query: torch.Tensor, keys: torch.Tensor, labels: torch.Tensor, radius: int | None,
                     topk: int, temperature: float) -> torch.Tensor:
    """The plain dense reference, step for step as `label_propagation` in DINO's eval_video_segmentation.py:
    exp(affinity / tau) of the target against every context frame, times the neighbourhood mask, top-k over
    all context cells, renormalise, labels times affinity. Query (C, h, w), keys (N, C, h, w), labels
    (N, L, h, w) -> soft labels (L, h, w)."""
    n, _, h, w = keys.shape
    target = query.flatten(1).T.unsqueeze(0).repeat(n, 1, 1)  # (N, hw, C)
    aff = torch.exp(torch.bmm(target, keys.flatten(2)) / temperature)  # (N, hw targets, hw sources)
    if radius is not None:
        aff *= _dino_mask(h, w, radius, n, query.device)
    aff = aff.transpose(2, 1).reshape(-1, h * w)  # (N hw sources, hw targets)
    top, _ = torch.topk(aff, dim=0, k=topk)
    aff[aff < top.min(dim=0).values] = 0
    aff = aff / aff.sum(dim=0, keepdim=True)
    segs = labels.flatten(2).transpose(2, 1).reshape(-1, labels.shape[1]).T  # (L, N hw)
    return (segs @ aff).reshape(-1, h, w)


IMPLEMENTATIONS = {"windowed": windowed_propagation, "dense": dino_propagation}


def _resident_peak_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))


def _reset_peak(device: str) -> int:
    """Reset the peak memory counter of `device` (the process's resident memory on the CPU); bytes in use."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # the resident high-water mark becomes the current resident size
    return _resident_peak_kib() * 1024


def _peak_since(device: str, before: int) -> int:
    """Peak bytes above `before` (from `_reset_peak`) since the reset."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        return max(torch.cuda.max_memory_allocated() - before, 0)
    return max(_resident_peak_kib() * 1024 - before, 0)


@contextlib.contextmanager
def _fixed_mmap_threshold() -> Iterator[None]:
    """For children spawned inside: glibc raises its mmap threshold after large frees and then keeps freed
    buffers in the heap, so a child's resident peak would count the allocator's cache; a fixed threshold
    returns them at once."""
    saved = os.environ.get("MALLOC_MMAP_THRESHOLD_")
    os.environ["MALLOC_MMAP_THRESHOLD_"] = str(128 * 1024)
    try:
        yield
    finally:
        if saved is None:
            del os.environ["MALLOC_MMAP_THRESHOLD_"]
        else:
            os.environ["MALLOC_MMAP_THRESHOLD_"] = saved


def _measure(device: str, function: Callable, *args) -> tuple[Any, float, int]:
    """function(*args) -> (its result, seconds, peak bytes above the memory in use before the call)."""
    before = _reset_peak(device)
    start = time.perf_counter()
    result = function(*args)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return result, time.perf_counter() - start, _peak_since(device, before)


def _in_fresh_process(function: Callable, *args, return_freed: bool = False) -> Any:
    """function(*args) in a new spawned process; with `return_freed` its allocator returns freed buffers to the
    system at once (the peak then counts live buffers only, at the cost of page faults on every new one)."""
    with (_fixed_mmap_threshold() if return_freed else contextlib.nullcontext()), \
            multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


def _run(implementation: str, features: list[torch.Tensor], first_ids: np.ndarray, config: PropagationConfig,
         device: str) -> tuple[float, int, np.ndarray]:
    """In a child process: propagate with one implementation; (s/frame, peak bytes, predictions)."""
    function = IMPLEMENTATIONS[implementation]
    features = [f.to(device) for f in features]

    def step(query, keys, labels, c: PropagationConfig, gaps: tuple[int, ...] = ()) -> torch.Tensor:
        return function(query, keys, labels, c.radius, c.topk, c.temperature)

    def propagate() -> np.ndarray:
        # The features are precomputed: the "frame" of index i is i itself, and encoding it looks it up.
        return np.stack(list(propagate_video(features.__getitem__, lambda i: i, len(features), first_ids, config,
                                             step=step)))

    with torch.no_grad():
        predictions, seconds, peak = _measure(device, propagate)
    return seconds / (len(features) - 1), peak, predictions


def _video(davis: Path, sequence: str | None, split: str | None, frames: int | None) -> DavisSequence:
    dataset = DavisDataset(davis, split=split or "val")
    return dataset.sequence(sequence or dataset.names[0]).head(frames)


def bench_propagation(features: str, config: PropagationConfig, height: int = 480, width: int = 854,
                      frames: int | None = None, davis: Path | None = None, sequence: str | None = None,
                      split: str | None = None, device: str = "auto") -> dict[str, dict[str, float]]:
    """Time and peak memory of both implementations on a DAVIS sequence (its first `frames` frames, all when
    None) or, without `davis`, on a synthetic video of `frames` (default 12) frames of height x width written
    to a temporary folder; returns and prints the figures: per implementation seconds_per_frame, peak_mib
    and J&F, and under "masks" how many pixels differ between the two outputs."""
    device = pick_device(device).type
    with tempfile.TemporaryDirectory(prefix="vos_lab-bench-") as tmp:
        if davis is None:
            from vos_lab.data.synthetic import write_synthetic_davis

            frames = frames or 12
            write_synthetic_davis(Path(tmp), sequences=1, frames=frames, height=height, width=width, seed=0)
            davis, split = Path(tmp), "val"
        video = _video(davis, sequence, split, frames)
        encoder = build_encoder(features, device)
        encoded = [encoder.encode(video.frame(i))[0].cpu() for i in range(len(video))]
        gt_ids, void = video.masks()
    print(f"video: {video.name}, {len(video)} frames of {gt_ids.shape[2]}x{gt_ids.shape[1]}; "
          f"features: {features}, {tuple(encoded[0].shape)}; device {device}; {config}")
    figures: dict[str, dict[str, float]] = {}
    outputs = {}
    for name in IMPLEMENTATIONS:
        seconds, peak, outputs[name] = _in_fresh_process(_run, name, encoded, gt_ids[0], config, device)
        scores = evaluate_sequence(gt_ids, outputs[name], void, int(gt_ids[0].max()))
        global_row, _ = summarize({video.name: scores})
        figures[name] = {"seconds_per_frame": seconds, "peak_mib": peak / 2**20, "J&F": global_row["J&F-Mean"]}
        print(f"{name:>9}: {seconds:7.3f} s/frame  peak {peak / 2**20:8.1f} MiB  J&F {global_row['J&F-Mean']:.4f}")
    differing = int((outputs["windowed"] != outputs["dense"]).sum())
    figures["masks"] = {"differing_pixels": differing, "identical": float(differing == 0)}
    win, dense = figures["windowed"], figures["dense"]
    print(f"windowed is {dense['seconds_per_frame'] / win['seconds_per_frame']:.1f}x faster, uses "
          f"{win['peak_mib'] / max(dense['peak_mib'], 1e-9):.3f} of the dense peak memory; "
          f"identical: {'yes' if differing == 0 else 'no'} ({differing} of {outputs['dense'].size} pixels differ); "
          f"J&F difference {abs(win['J&F'] - dense['J&F']):.4f}")
    return figures


def bench_sampler(profile_name: str = "gpu", batches: int = 20, sources: list[str] | None = None,
                  workers: tuple[int, ...] = (0, 1, 2)) -> dict[str, float]:
    """Training input pipeline: clips per second read through the training loop's loader (`clip_batches`)
    with each number of worker processes (timed after a first batch, which includes starting the workers), and
    seconds per batch for preparing inputs and Lab targets on the training device (the GPU when there is one,
    as in training). Data is held in memory when it fits the profile's `clips_in_memory_mib`, else read on
    demand, as in training."""
    from vos_lab.data.clips import Video, clip_batches
    from vos_lab.profiles import get_profile
    from vos_lab.training.run import method_for_profile, profile_sampler

    profile = get_profile(profile_name)
    method = method_for_profile("colourisation", profile, variant="vondrick")
    sampler = profile_sampler(method, profile, sources)
    device = pick_device("auto")
    figures = {}
    for count in workers:
        loader = clip_batches(sampler, profile.batch_size, batches + 1, workers=count,
                              pin_memory=device.type == "cuda")
        clips = next(loader)
        start = time.perf_counter()
        count_read = sum(1 for _ in loader)
        figures[f"clips_per_s_{count}_workers"] = profile.batch_size * count_read / (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(batches):
        method.prepare(clips, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    figures["prepare_s"] = (time.perf_counter() - start) / batches
    held = "held in memory" if all(isinstance(v, Video) for v in sampler.videos) else "read on demand"
    print(f"profile {profile.name}: batch {profile.batch_size} x {method.clip_length} frames of {profile.crop_size}px "
          f"from {', '.join(sources or ['embedded'])}, {held} ({os.cpu_count()} CPUs):")
    for count in workers:
        print(f"  {count} workers: {figures[f'clips_per_s_{count}_workers']:.0f} clips/s")
    print(f"  Lab + inputs: {figures['prepare_s'] * 1000:.1f} ms per batch ({device.type})")
    return figures


ATTENTION = {"dense": dense_attention, "windowed": windowed_attention}


def _attention_run(implementation: str, size: tuple[int, int], channels: int, references: int, radius: int,
                   topk: int | None, device: str, repeats: int) -> tuple[float, int]:
    """In a child process: (seconds per call, peak bytes above the inputs) of one attention call."""
    h, w = size
    generator = torch.Generator().manual_seed(0)
    query = torch.randn(1, channels, h, w, generator=generator).to(device)
    keys = torch.randn(1, references, channels, h, w, generator=generator).to(device)
    values = torch.randn(1, references, 2, h, w, generator=generator).to(device)
    function = ATTENTION[implementation]
    with torch.no_grad():
        # Memory: the first call, so no buffer freed by an earlier call can be silently re-used.
        before = _reset_peak(device)
        function(query, keys, values, radius, 0.1, topk)
        peak = _peak_since(device, before)
        start = time.perf_counter()  # time: the following calls
        for _ in range(repeats):
            function(query, keys, values, radius, 0.1, topk)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats, peak


def bench_attention(heights: tuple[int, ...] = (120, 240, 360, 480), stride: int = 8, channels: int = 64,
                    references: int = 1, radius: int = 12, topk: int | None = 5, device: str = "cpu",
                    repeats: int = 2, progress: bool = True) -> list[dict[str, float]]:
    """Dense vs windowed attention for frames of each height (16:9, feature stride `stride`): one row per
    size and implementation with seconds per call and peak MiB; printed as a table."""
    rows = []
    if progress:
        print(f"attention of 1 target to {references} reference(s), {channels} channels, radius {radius}, "
              f"top-k {topk}, device {device}")
        print(f"{'frame':>9} {'cells':>9} {'method':>9} {'s/call':>9} {'peak MiB':>9}")
    for height in heights:
        width = round(height * 16 / 9)
        size = (-(-height // stride), -(-width // stride))
        for name in ATTENTION:
            seconds, peak = _in_fresh_process(_attention_run, name, size, channels, references, radius, topk, device,
                                              repeats, return_freed=True)
            row = {"height": height, "width": width, "cells": size[0] * size[1], "method": name,
                   "seconds": seconds, "peak_mib": peak / 2**20}
            rows.append(row)
            if progress:
                print(f"{width:>4}x{height:<4} {row['cells']:>9} {name:>9} {seconds:>9.3f} {row['peak_mib']:>9.1f}")
    return rows


def _adapt_run(frames: np.ndarray, pseudo_ids: np.ndarray, adapt, device: str) -> tuple[np.ndarray, float, int]:
    """In a child process: online adaptation of one video; (id maps, seconds, peak bytes)."""
    from dataclasses import replace

    from vos_lab.adaptation import adapt_video

    adapt_video(frames[:2], pseudo_ids[:2], replace(adapt, iters=1), device, False)  # warm-up: the first call
    return _measure(device, adapt_video, frames, pseudo_ids, adapt, device, False)  # initialises the kernels


def bench_adapt(adapt, features: str, config: PropagationConfig, height: int = 480, width: int = 854,
                frames: int | None = None, davis: Path | None = None, sequence: str | None = None,
                split: str | None = None, device: str = "auto") -> dict[str, float]:
    """Online adaptation (`vos_lab.adaptation.AdaptConfig` `adapt`) of one video propagated with `features`: a
    DAVIS sequence (its first `frames` frames) or a synthetic video as in `bench_propagation`. Prints and
    returns seconds per frame of the video, seconds per iteration, peak MiB (measured in a fresh process) and
    J&F of the propagated and the adapted masks."""
    device = pick_device(device).type
    with tempfile.TemporaryDirectory(prefix="vos_lab-bench-") as tmp:
        if davis is None:
            from vos_lab.data.synthetic import write_synthetic_davis

            frames = frames or 12
            write_synthetic_davis(Path(tmp), sequences=1, frames=frames, height=height, width=width, seed=0)
            davis, split = Path(tmp), "val"
        video = _video(davis, sequence, split, frames)
        encoder = build_encoder(features, device)
        gt_ids, void = video.masks()
        pseudo = np.stack(list(propagate_video(lambda f: encoder.encode(f)[0], video.frame, len(video), gt_ids[0],
                                               config, encoder.stride)))
        images = np.stack([video.frame(t) for t in range(len(video))])
    adapted, seconds, peak = _in_fresh_process(_adapt_run, images, pseudo, adapt, device)
    objects = int(gt_ids[0].max())
    scores = {name: summarize({video.name: evaluate_sequence(gt_ids, ids, void, objects)})[0]["J&F-Mean"]
              for name, ids in (("propagated", pseudo), ("adapted", adapted))}
    figures = {"seconds_per_frame": seconds / len(video), "seconds_per_iteration": seconds / adapt.iters,
               "peak_mib": peak / 2**20, "J&F propagated": scores["propagated"], "J&F adapted": scores["adapted"]}
    print(f"video: {video.name}, {len(video)} frames of {gt_ids.shape[2]}x{gt_ids.shape[1]}; pseudo labels from "
          f"{features}; device {device}; U-Net width {adapt.width}, input height {adapt.size}, {adapt.iters} "
          f"iterations of {adapt.batch_size} frames")
    print(f"adaptation: {seconds:.1f} s ({figures['seconds_per_frame']:.3f} s/frame of the video, "
          f"{figures['seconds_per_iteration']:.3f} s/iteration including prediction), peak {figures['peak_mib']:.1f} "
          f"MiB; J&F propagated {scores['propagated']:.4f} -> adapted {scores['adapted']:.4f}")
    return figures


def _ino_steps(profile_name: str, batch: int | None, steps: int, device: str, precision: str
               ) -> dict[str, float]:
    """In a child process: INO training steps on random clips at the profile's sizes (`batch` clips, default the
    profile's): seconds per step (after one untimed step, or that step when `steps` is 0), the peak memory of the
    first step, its loss and the frames and views per step."""
    from vos_lab.profiles import get_profile
    from vos_lab.training.run import method_for_profile

    profile = get_profile(profile_name)
    torch.manual_seed(0)
    method = method_for_profile("ino", profile, mixed_precision=precision == "bfloat16").to(device).train()
    batch = batch or profile.batch_size
    clips = np.random.default_rng(0).integers(0, 256, (batch, method.clip_length, profile.crop_size,
                                                       profile.crop_size, 3), dtype=np.uint8)
    optimizer = torch.optim.Adam(method.parameters(), lr=method.config["lr"])
    autocast = (torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if precision == "bfloat16"
                else contextlib.nullcontext())

    def step(index: int) -> float:
        with autocast:
            loss, _ = method.loss(method.prepare(clips, device), index)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        method.after_step(index)
        return loss.item()

    loss, first, peak = _measure(device, step, 0)
    _, seconds, _ = _measure(device, lambda: [step(i) for i in range(1, steps + 1)]) if steps else (0, first, 0)
    views = method.config["global_crops"] + method.config["local_crops"]
    return {"seconds_per_step": seconds / max(steps, 1), "peak_mib": peak / 2**20, "loss": loss,
            "frames": batch * method.clip_length, "views": batch * method.clip_length * views}


def bench_ino_step(profile_name: str = "cpu", batch: int | None = None, steps: int = 3, device: str = "auto",
                   precisions: tuple[str, ...] | None = None) -> dict[str, dict[str, float]]:
    """Training throughput of INO (chapter 6): images (clip frames) and views per second of a training step,
    float32 and bfloat16 autocast (mixed precision; on the CPU too when it runs there), each precision in a
    fresh process; prints and returns the figures per precision."""
    device = pick_device(device).type
    precisions = precisions or ("float32", "bfloat16")
    figures = {}
    for precision in precisions:
        try:
            figures[precision] = _in_fresh_process(_ino_steps, profile_name, batch, steps, device, precision)
        except RuntimeError as error:  # an autocast the device does not support
            print(f"{precision:>9}: not supported on {device} ({str(error).splitlines()[0]})")
            continue
        f = figures[precision]
        print(f"{precision:>9}: {f['seconds_per_step']:7.3f} s/step  {f['frames'] / f['seconds_per_step']:8.2f} "
              f"images/s  {f['views'] / f['seconds_per_step']:8.2f} views/s  peak {f['peak_mib']:8.1f} MiB  "
              f"first loss {f['loss']:.3f}")
    return figures
