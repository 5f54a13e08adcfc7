"""The training loop shared by every method: device, AMP, progress, periodic evaluation, checkpoints, resume.

`train` continues from the checkpoint at `out` when it was trained the same way (method config, data, seed,
batch size; fewer steps), else trains anew and says why; it saves atomically and durably every
`checkpoint_seconds`, at the end, and when interrupted (KeyboardInterrupt or an error: the steps done since
the last save are kept, never half a step), and stops at `steps` or after `minutes` of training time,
whichever comes first (the time spent before an interruption counts). Adam's learning rate follows
the method's `lr_schedule` over `steps`, set from the step count, so a resumed run continues the curve.
`load_or_train` is what a notebook calls: the finished checkpoint when it matches, training otherwise.

Clips come through a `torch.utils.data` loader (`vos_lab.data.clips.clip_batches`: `workers` processes, pinned
memory on CUDA). Under `torchrun` the loop is data-parallel (`vos_lab.training.distributed`): `batch_size` is
the global batch, split over the processes; rank 0 saves and shows progress.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from vos_lab.data.clips import ClipSampler, clip_batches
from vos_lab.errors import VosLabError
from vos_lab.methods.base import Method
from vos_lab.models.encoders import FrameEncoder
from vos_lab.training import distributed
from vos_lab.training.checkpoints import checkpoint_mismatch, load_checkpoint, save_checkpoint
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
    data: str = ""  # what the clips come from: in the checkpoint, so a loaded model says it and other data retrains
    workers: int | None = None  # processes reading clips (0: the training one; None: 4 per GPU, 0 on the CPU)


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
    path: Path | None = None  # the checkpoint file


def _fit_frames(sampler: ClipSampler, count: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    picks = [sampler.videos[i % len(sampler.videos)] for i in range(count)]
    return np.stack([v.read([rng.integers(v.length)])[0, : sampler.crop, : sampler.crop] for v in picks])


def _workers(config: TrainConfig, device: torch.device) -> int:
    """Data-loader processes: the clips are the same with any number. On the CPU the default is none, since
    they would compete with training for the cores."""
    if config.workers is not None:
        return config.workers
    return min(4, (os.cpu_count() or 1) // distributed.world()) if device.type == "cuda" else 0


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def training_stamp(config: TrainConfig) -> dict:
    """What a checkpoint must have been trained with, besides the method config, to be loaded or resumed."""
    return {"data": config.data, "seed": config.seed, "batch_size": config.batch_size}


def finished(state: dict, config: TrainConfig) -> bool:
    """Whether the checkpoint `state` has used up the budget of `config`: its steps, or its minutes."""
    return state["step"] >= config.steps or (config.minutes is not None and state["seconds"] >= config.minutes * 60)


def finished_as_asked(state: dict, method: Method, config: TrainConfig) -> str | None:
    """Why the checkpoint `state` is not a finished run of `method` trained as `config` asks (method config, data,
    seed, batch size, its budget used up); None when it is."""
    reason = checkpoint_mismatch(state, method.config, training_stamp(config), config.steps)
    if reason is None and not finished(state, config):
        reason = f"unfinished: {state['step']} of {config.steps} steps"
    return reason


def _resumable(out: Path, method: Method, config: TrainConfig, device: torch.device, replace: bool) -> dict | None:
    """The checkpoint at `out` if it may be loaded or resumed; None when there is none, or when it was trained
    otherwise and `replace` is set: then one line says what differed, and training starts anew (the old file
    stays until the new run's first save replaces it). Without `replace` such a checkpoint is an error."""
    if not out.exists():
        return None
    state = load_checkpoint(out, device)
    reason = checkpoint_mismatch(state, method.config, training_stamp(config), config.steps)
    if reason is None:
        return state
    if not replace:
        raise VosLabError(f"{out}: a checkpoint trained otherwise ({reason}); use another --out or delete it")
    if distributed.is_main():
        print(f"{out}: training anew, the checkpoint was trained otherwise ({reason})")
    return None


@dataclass(frozen=True)
class _StepStart:
    """What a step changes before the update (the generators, batch-norm statistics), as it was when the step
    began: restored when the step is interrupted, so that a checkpoint never holds half a step."""

    sampler: dict
    torch_rng: torch.Tensor
    buffers: dict[str, torch.Tensor]

    @classmethod
    def capture(cls, method: Method, sampler: ClipSampler) -> _StepStart:
        return cls(sampler.state(), torch.get_rng_state(),
                   {name: buffer.detach().clone() for name, buffer in method.named_buffers()})

    def restore(self, method: Method, sampler: ClipSampler) -> None:
        sampler.load_state(self.sampler)
        torch.set_rng_state(self.torch_rng)
        with torch.no_grad():
            for name, buffer in method.named_buffers():
                buffer.copy_(self.buffers[name])


def train(method: Method, sampler: ClipSampler, out: Path, config: TrainConfig, device: torch.device | None = None,
          evaluate: Evaluate | None = None, progress: bool = True, replace: bool = True) -> TrainResult:
    """Train `method` on clips from `sampler`, resuming from (when it matches) and saving to the checkpoint
    `out`; a checkpoint trained otherwise is replaced (`replace`) or refused."""
    out, device = Path(out), device or torch.device("cpu")
    state = _resumable(out, method, config, device, replace)
    return _train(method, sampler, out, config, state, device, evaluate, progress)


def _train(method: Method, sampler: ClipSampler, out: Path, config: TrainConfig, state: dict | None,
           device: torch.device, evaluate: Evaluate | None, progress: bool) -> TrainResult:
    """The loop, from the checkpoint `state` (None: from scratch)."""
    method.to(device)
    optimizer = torch.optim.Adam(method.parameters(), lr=method.config["lr"])
    step, seconds, history, evaluations = 0, 0.0, [], []
    if state is not None:
        method.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        sampler.load_state(state["sampler"])
        torch.set_rng_state(state["torch_rng"])
        step, seconds, history, evaluations = state["step"], state["seconds"], state["history"], state["evaluations"]
    else:
        torch.manual_seed(config.seed)
        method.fit(_fit_frames(sampler))
    loss_of = distributed.loss_function(method, device)  # several processes: gradients averaged over them

    def budget_left() -> bool:
        return step < config.steps and (config.minutes is None or seconds < config.minutes * 60)

    def save() -> None:
        if not distributed.is_main():
            return
        save_checkpoint(out, {"config": method.config, "model": method.state_dict(),
                              "optimizer": optimizer.state_dict(), "sampler": sampler.state(),
                              "torch_rng": torch.get_rng_state(), "step": step, "seconds": seconds,
                              "history": history, "evaluations": evaluations, **training_stamp(config)})

    def run_evaluation() -> None:
        method.eval()
        evaluations.append({"step": step, **evaluate(method.frame_encoder())})
        method.train()

    method.train()
    total = config.steps if config.minutes is None else None  # a time budget: the postfix shows minutes
    bar = tqdm(total=total, initial=step, disable=not progress or not distributed.is_main(), unit="step",
               desc=f"train {method.name}")
    batches = clip_batches(sampler, config.batch_size, config.steps - step, distributed.rank(), distributed.world(),
                           _workers(config, device), pin_memory=device.type == "cuda")
    last_save, saved = time.perf_counter(), step
    step_start: _StepStart | None = None  # while a step runs and its update has not begun
    updating = False  # from the update until the step is counted: no consistent state to save
    try:
        while budget_left():
            start = time.perf_counter()
            step_start = _StepStart.capture(method, sampler)
            batch = method.prepare(next(batches), device)
            sampler.position += config.batch_size
            distributed.reseed(config.seed, step)
            with _autocast(device):
                loss, logs = loss_of(batch, step)
            value, logs = distributed.mean_logs(loss, logs)
            if not math.isfinite(value):
                raise FloatingPointError(f"loss became {value} at step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(method.config["lr"], method.config["lr_schedule"], step, config.steps)
            updating = True
            optimizer.step()
            method.after_step(step)
            step += 1
            seconds = distributed.rank0_value(seconds + time.perf_counter() - start, device)
            history.append({"step": step, "seconds": seconds, **logs})
            updating, step_start = False, None
            bar.update(1)
            bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items()} | {"min": f"{seconds / 60:.1f}"})
            if evaluate is not None and config.eval_every and step % config.eval_every == 0:
                run_evaluation()
            if time.perf_counter() - last_save > config.checkpoint_seconds:
                save()
                last_save, saved = time.perf_counter(), step
        if evaluate is not None and (not evaluations or evaluations[-1]["step"] != step):
            run_evaluation()
        save()
        saved = step
    finally:  # interrupted (KeyboardInterrupt, an error): keep the steps done since the last save
        bar.close()
        if step > saved and not updating:
            if step_start is not None:
                step_start.restore(method, sampler)
            save()
    return TrainResult(method.eval(), step, seconds, history, evaluations, finished=True, data=config.data,
                       path=out)


def loaded(method: Method, state: dict, out: Path, config: TrainConfig, device: torch.device) -> TrainResult:
    """The finished run of the checkpoint `state` (read from `out`, checked against `config`): its weights in
    `method`, on `device`, in eval mode."""
    method.load_state_dict(state["model"])
    return TrainResult(method.to(device).eval(), state["step"], state["seconds"], state["history"],
                       state["evaluations"], finished=True, data=config.data, path=out)


def load_or_train(method: Method, sampler_factory: Callable[[], ClipSampler], out: Path, config: TrainConfig,
                  device: torch.device | None = None, evaluate: Evaluate | None = None,
                  progress: bool = True, replace: bool = True) -> TrainResult:
    """The finished checkpoint at `out` if it was trained as asked (method config, data, seed, batch size,
    steps); otherwise resume it (trained for fewer steps) or train anew (trained otherwise: one line says why;
    without `replace`, an error).

    `sampler_factory` is only called when training is needed, so loading never touches the data.
    """
    out, device = Path(out), device or torch.device("cpu")
    state = _resumable(out, method, config, device, replace)
    if state is not None and finished(state, config):
        return loaded(method, state, out, config, device)
    return _train(method, sampler_factory(), out, config, state, device, evaluate, progress)
