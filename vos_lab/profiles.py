"""Profiles: every size and budget of the course, derived in one place from one name.

- smoke: CI. Tiny sizes, a few steps; every notebook runs in well under a minute on 2 cores.
- cpu:   a laptop. Each training chapter trains for about 10 minutes on 2 cores.
- gpu:   one GPU. The methods' own resolutions and real training lengths.

The name comes from a notebook parameter or, when that is None, the VOS_LAB_PROFILE environment
variable (CI sets smoke), else "cpu".
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace

from vos_lab.errors import VosLabError
from vos_lab.options import Option
from vos_lab.training.schedule import SCHEDULES

ENV_VAR = "VOS_LAB_PROFILE"


@dataclass(frozen=True)
class Profile:
    """Sizes and budgets. Training length is `train_steps` (cpu: 800 steps, 7-10 minutes on 2 idle
    cores); `train_minutes` optionally caps the training time as well (None: no cap)."""

    name: str
    # embedded synthetic data
    synthetic_sequences: int
    synthetic_frames: int
    synthetic_height: int
    synthetic_width: int
    # evaluation on real DAVIS in the notebooks (when present, always at full 480p): sequences and frames
    # each (None = all). cpu: the first 40 frames of the first 4 sequences, so a chapter renders in minutes;
    # the CLI measures all.
    eval_sequences: int | None
    eval_max_frames: int | None
    # training
    train_steps: int
    train_minutes: float | None
    batch_size: int
    crop_size: int
    encoder_width: int
    encoder_multipliers: tuple[int, ...]
    embed_dim: int
    eval_every: int  # validation every N steps when training is given an evaluation (`train --val`); 0: at the end
    # chapter 2's training pointer (methods with a `cosine` option): False = the papers' raw dot products at T = 1;
    # True = L2-normalised features at the protocol's tau 0.1, the geometry used at test time. Short cpu
    # runs need the match (measured in chapter 2); the gpu profile keeps the papers' version.
    cosine_pointer: bool
    # training crops: each frame's crop moves by up to this many pixels (a simulated camera motion; 0 = one
    # shared crop, as in the papers). The cpu profile's clips mostly come from a static camera.
    crop_jitter: int
    # the learning-rate schedule of every method trained from the profile (`vos_lab.training.schedule`):
    # short cpu runs decay to zero ("cosine", measured in chapter 2); the gpu profile keeps the papers' constant rate.
    lr_schedule: str
    # chapter 3's training ablations (CorrFlow with and without scheduled sampling / the cycle): steps of each
    ablation_steps: int = 250
    # chapter 4's online adaptation (`vos_lab.adaptation`): U-Net iterations per video, its input height and
    # width; the gpu profile keeps the paper's 200 iterations at 480 px, cpu and smoke are set below
    adapt_iters: int = 200
    adapt_size: int = 480
    adapt_width: int = 16
    # training clips are decoded into memory once when all their frames fit this many MiB (a clip read on demand
    # costs a seek and a decode: 11.6 against 772 clips/s from the course's real videos); larger data streams
    clips_in_memory_mib: int = 2048

    def as_dict(self) -> dict:
        return asdict(self)


PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", synthetic_sequences=2, synthetic_frames=8, synthetic_height=96, synthetic_width=160,
                     eval_sequences=1, eval_max_frames=6,
                     train_steps=4, train_minutes=1.0, batch_size=2, crop_size=64, encoder_width=8,
                     encoder_multipliers=(1, 2, 2, 2), embed_dim=16, eval_every=2, cosine_pointer=True,
                     crop_jitter=8, lr_schedule="cosine", ablation_steps=2),
    "cpu": Profile("cpu", synthetic_sequences=4, synthetic_frames=24, synthetic_height=240, synthetic_width=432,
                   eval_sequences=4, eval_max_frames=40,
                   train_steps=800, train_minutes=None, batch_size=8, crop_size=192, encoder_width=32,
                   encoder_multipliers=(1, 2, 2, 2), embed_dim=64, eval_every=200, cosine_pointer=True,
                   crop_jitter=48, lr_schedule="cosine"),
    "gpu": Profile("gpu", synthetic_sequences=8, synthetic_frames=40, synthetic_height=480, synthetic_width=854,
                   eval_sequences=None, eval_max_frames=None,
                   train_steps=30_000, train_minutes=60.0, batch_size=32, crop_size=256, encoder_width=64,
                   encoder_multipliers=(1, 2, 4, 4), embed_dim=64, eval_every=2_000, cosine_pointer=False,
                   crop_jitter=0, lr_schedule="constant", ablation_steps=5_000),
}
# online adaptation on a CPU: a U-Net of width 8 at 96 px; the paper's 200 iterations (60 underfit the pseudo
# labels: -6 J&F on 4 development sequences where 200 gave +1, measured in chapter 4)
PROFILES["smoke"] = replace(PROFILES["smoke"], adapt_iters=3, adapt_size=32, adapt_width=4)
PROFILES["cpu"] = replace(PROFILES["cpu"], adapt_iters=200, adapt_size=96, adapt_width=8)


def check_field(field: str, value: object) -> object:
    """`value` for the profile field `field`, of the type the profiles give it (None where one of them has
    None), numbers >= 0, `lr_schedule` a known schedule; VosLabError naming the field otherwise."""
    values = [getattr(profile, field) for profile in PROFILES.values()]
    if value is None and None in values:
        return None
    example = next(v for v in values if v is not None)
    option = Option(example, "see vos_lab.profiles.Profile", choices=SCHEDULES if field == "lr_schedule" else (),
                    at_least=None if isinstance(example, str | bool) else 0)
    return option.check(f"profile field {field}", value)


def get_profile(name: str | None = None, **overrides) -> Profile:
    """The named profile (None: $VOS_LAB_PROFILE, else "cpu"), with optional field overrides (checked)."""
    name = name or os.environ.get(ENV_VAR) or "cpu"
    if name not in PROFILES:
        raise VosLabError(f"unknown profile '{name}' (choose {', '.join(PROFILES)})")
    profile = PROFILES[name]
    unknown = sorted(set(overrides) - set(profile.as_dict()))
    if unknown:
        raise VosLabError(f"unknown profile field(s): {', '.join(unknown)}")
    return replace(profile, **{field: check_field(field, value) for field, value in overrides.items()})
