"""Train a method from a profile: the glue used by `python -m vos_lab train` and by the notebooks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from vos_lab.data.clips import ClipSampler
from vos_lab.data.sources import load_training_videos
from vos_lab.device import pick_device
from vos_lab.methods.base import Method
from vos_lab.methods.registry import METHODS, build_method
from vos_lab.profiles import Profile
from vos_lab.propagation import PropagationConfig
from vos_lab.training import distributed
from vos_lab.training.loop import Evaluate, TrainConfig, TrainResult, load_or_train


def method_for_profile(name: str, profile: Profile, **options):
    """The method `name` sized by the profile (`Method.profile_config`: a CNN's width and embedding, INO's ViT)
    with the profile's learning-rate schedule and training pointer (`cosine_pointer`, for the methods that have
    the option), method options on top."""
    config = {"method": name, **METHODS.get(name, Method).profile_config(profile)}
    if profile.cosine_pointer and "cosine" in METHODS.get(name, Method).defaults:
        config |= {"cosine": True, "temperature": PropagationConfig().temperature}
    return build_method(config | options)


def profile_sampler(method: Method, profile: Profile, sources: list[str] | None = None, seed: int = 0
                    ) -> ClipSampler:
    """Clips for `method` as the profile trains it: frames cut to a short side of 4/3 of the crop, the
    method's clip length and gaps, the profile's crop and jitter."""
    videos = load_training_videos(sources or ["embedded"], round(profile.crop_size * 4 / 3), profile, seed)
    return ClipSampler(videos, method.clip_length, method.gaps, profile.crop_size, seed, profile.crop_jitter)


def _absolute(source: str) -> str:
    """A source as the checkpoint records it: 'embedded', or an absolute path (the same data, however given)."""
    return source if source == "embedded" else str(Path(source).expanduser().resolve())


def profile_run(name: str, profile: Profile, sources: list[str] | None = None, *, steps: int | None = None,
                minutes: float | None = None, seed: int = 0, eval_every: int | None = None,
                workers: int | None = None, **options) -> tuple[Method, TrainConfig]:
    """The untrained method and the training config that `train_from_profile` asks for (what a checkpoint is
    compared with before it is loaded): the profile's budget unless `steps`/`minutes` are given."""
    run_profile = profile if steps is None else dataclasses.replace(profile, train_steps=steps)  # INO's momentum
    method = method_for_profile(name, run_profile, **options)
    config = TrainConfig(steps=steps or profile.train_steps, batch_size=profile.batch_size,
                         minutes=profile.train_minutes if minutes is None else minutes, seed=seed,
                         eval_every=profile.eval_every if eval_every is None else eval_every,
                         data=",".join(_absolute(source) for source in sources or ["embedded"]), workers=workers)
    return method, config


def train_from_profile(name: str, profile: Profile, out: Path, sources: list[str] | None = None, *,
                       steps: int | None = None, minutes: float | None = None, seed: int = 0,
                       device: str = "auto", evaluate: Evaluate | None = None, eval_every: int | None = None,
                       progress: bool = True, replace: bool = True, workers: int | None = None,
                       **options) -> TrainResult:
    """Load the checkpoint at `out` if it is finished and trained as asked, else train (or resume) method `name` on
    `sources` (see `load_or_train`; `replace=False` refuses a checkpoint trained otherwise instead).
    `evaluate` (e.g. `vos_lab.evaluation.validation_jf`) runs every `eval_every` steps (default: the
    profile's; 0: only at the end) and its figures are kept in the checkpoint."""
    method, config = profile_run(name, profile, sources, steps=steps, minutes=minutes, seed=seed,
                                 eval_every=eval_every, workers=workers, **options)
    with distributed.session(pick_device(device)) as run_device:  # under torchrun: data-parallel
        return load_or_train(method, lambda: profile_sampler(method, profile, sources, seed), out, config,
                             run_device, evaluate, progress, replace)
