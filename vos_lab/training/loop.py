"""The training loop shared by every method: device, AMP, progress, periodic evaluation, checkpoints, resume.

`train` continues from the checkpoint at `out` when there is one (same method config required), saves
atomically every `checkpoint_seconds` and at the end, and stops at `steps` or after `minutes` of training
time, whichever comes first (the time spent before an interruption counts). Adam's learning rate follows
the method's `lr_schedule` over `steps`, set from the step count, so a resumed run continues the curve.
`load_or_train` is what a notebook calls: the finished checkpoint when it exists, training otherwise.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from vos_lab.data.clips import ClipSampler
from vos_lab.methods.base import Method
from vos_lab.models.encoders import FrameEncoder
from vos_lab.training.checkpoints import check_config, load_checkpoint, save_checkpoint
from vos_lab.training.schedule import learning_rate

Evaluate = Callable[[FrameEncoder], dict[str, float]]


@dataclass(frozen=True)
class TrainConfig:
    """How long and how: `minutes=None` means no time limit."""

    steps: int
    batch_size: int
    minutes: float | None = None
    seed: int = 0
    checkpoint_seconds: float = 60.0
    eval_every: int = 0
    data: str = ""  # what the clips come from, kept in the checkpoint so a loaded model says it


@dataclass
class TrainResult:
    """The trained method and what happened: steps done, training seconds, per-step logs, evaluations."""

    method: Method
    step: int
    seconds: float
    history: list[dict]
    evaluations: list[dict]
    finished: bool
    data: str = ""


def _fit_frames(sampler: ClipSampler, count: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    picks = [sampler.videos[i % len(sampler.videos)] for i in range(count)]
    return np.stack([v.frames[rng.integers(len(v.frames)), : sampler.crop, : sampler.crop] for v in picks])


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train(method: Method, sampler: ClipSampler, out: Path, config: TrainConfig, device: torch.device | None = None,
          evaluate: Evaluate | None = None, progress: bool = True) -> TrainResult:
    """Train `method` on clips from `sampler`, resuming from and saving to the checkpoint `out`."""
    out = Path(out)
    device = device or torch.device("cpu")
    method.to(device)
    optimizer = torch.optim.Adam(method.parameters(), lr=method.config["lr"])
    step, seconds, history, evaluations = 0, 0.0, [], []
    if out.exists():
        state = load_checkpoint(out, device)
        check_config(out, state["config"], method.config)
        method.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        sampler.load_state(state["sampler"])
        torch.set_rng_state(state["torch_rng"])
        step, seconds, history, evaluations = state["step"], state["seconds"], state["history"], state["evaluations"]
    else:
        torch.manual_seed(config.seed)
        method.fit(_fit_frames(sampler))

    def budget_left() -> bool:
        return step < config.steps and (config.minutes is None or seconds < config.minutes * 60)

    def save() -> None:
        save_checkpoint(out, {"config": method.config, "model": method.state_dict(),
                              "optimizer": optimizer.state_dict(), "sampler": sampler.state(),
                              "torch_rng": torch.get_rng_state(), "step": step, "seconds": seconds,
                              "history": history, "evaluations": evaluations, "data": config.data})

    def run_evaluation() -> None:
        method.eval()
        evaluations.append({"step": step, **evaluate(method.frame_encoder())})
        method.train()

    method.train()
    total = config.steps if config.minutes is None else None  # a time budget: the postfix shows minutes
    bar = tqdm(total=total, initial=step, disable=not progress, unit="step", desc=f"train {method.name}")
    last_save = time.perf_counter()
    while budget_left():
        start = time.perf_counter()
        batch = method.prepare(sampler.batch(config.batch_size), device)
        with _autocast(device):
            loss, logs = method.loss(batch, step)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"loss became {loss.item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(method.config["lr"], method.config["lr_schedule"], step, config.steps)
        optimizer.step()
        step += 1
        seconds += time.perf_counter() - start
        history.append({"step": step, "seconds": seconds, **logs})
        bar.update(1)
        bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items()} | {"min": f"{seconds / 60:.1f}"})
        if evaluate is not None and config.eval_every and step % config.eval_every == 0:
            run_evaluation()
        if time.perf_counter() - last_save > config.checkpoint_seconds:
            save()
            last_save = time.perf_counter()
    bar.close()
    if evaluate is not None and (not evaluations or evaluations[-1]["step"] != step):
        run_evaluation()
    save()
    return TrainResult(method.eval(), step, seconds, history, evaluations, finished=True, data=config.data)


def load_or_train(method: Method, sampler_factory: Callable[[], ClipSampler], out: Path, config: TrainConfig,
                  device: torch.device | None = None, evaluate: Evaluate | None = None,
                  progress: bool = True) -> TrainResult:
    """The finished checkpoint at `out` if it matches `method`'s config; otherwise train (or resume) it.

    `sampler_factory` is only called when training is needed, so loading never touches the data.
    """
    out = Path(out)
    if out.exists():
        state = load_checkpoint(out, device or "cpu")
        check_config(out, state["config"], method.config)
        done = state["step"] >= config.steps or (config.minutes is not None
                                                  and state["seconds"] >= config.minutes * 60)
        if done:
            method.load_state_dict(state["model"])
            return TrainResult(method.to(device or "cpu").eval(), state["step"], state["seconds"],
                               state["history"], state["evaluations"], finished=True, data=state.get("data", ""))
    return train(method, sampler_factory(), out, config, device, evaluate, progress)
