"""What every method provides to the training loop and to evaluation.

A method owns its networks and turns a batch of clips into a loss. Its `config` (a flat dict of plain
values) is all that is needed to rebuild it, so a checkpoint stores the config with the weights, and a
checkpoint of another method or config is recognised (and retrained or refused, see `training.loop`). Each
method declares its options as `Option`s (default, accepted values, help); every config is checked against
them before anything is built, so a wrong value is one clear error instead of a crash in the middle of training.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import nn

from vos_lab.colour import normalise, rgb_to_lab_tensor, to_unit_rgb
from vos_lab.errors import VosLabError
from vos_lab.models.encoders import FrameEncoder
from vos_lab.models.resnet import ResNetStride8
from vos_lab.options import Option, Value
from vos_lab.training.schedule import SCHEDULES


def _defaults(options: dict[str, Option]) -> dict[str, Value]:
    return {key: option.default for key, option in options.items()}


class Method(nn.Module):
    """Base class: subclasses set `name` and `options`, build networks in __init__ and define `loss`."""

    name: ClassVar[str] = ""
    # what every method has: the encoder's size and the optimiser's learning rate and schedule
    # (`vos_lab.training.schedule`); subclasses add theirs with `{**Method.options, ...}`
    options: ClassVar[dict[str, Option]] = {
        "width": Option(32, "the encoder's stem channels", at_least=1),
        "multipliers": Option((1, 2, 4, 4), "each encoder stage's channels, in multiples of width", at_least=1,
                              lengths=(2, 3, 4)),
        "embed_dim": Option(64, "feature dimension", at_least=1),
        "lr": Option(1e-3, "Adam's learning rate", above=0),
        "lr_schedule": Option("constant", "learning-rate schedule", choices=SCHEDULES),
    }
    defaults: ClassVar[dict[str, Value]] = _defaults(options)  # each option's default, set for every subclass
    space: str = "rgb"  # colour space of the encoder's input
    clip_length: int = 2
    gaps: tuple[int, ...] = (1, 2, 3, 4)

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls.defaults = _defaults(cls.options)

    @classmethod
    def check_options(cls, config: dict) -> dict:
        """`config` with every value checked against (and converted to) its option's type; VosLabError naming
        an unknown option or a value the option does not accept."""
        unknown = sorted(set(config) - set(cls.options))
        if unknown:
            raise VosLabError(f"{cls.name}: unknown option(s) {', '.join(unknown)} "
                              f"(known: {', '.join(sorted(cls.options))})")
        return {key: cls.options[key].check(f"{cls.name} option {key}", value) for key, value in config.items()}

    def __init__(self, **config) -> None:
        super().__init__()
        self.config = {"method": self.name, **self.defaults, **self.check_options(config)}

    @classmethod
    def profile_config(cls, profile) -> dict:
        """The options a profile (`vos_lab.profiles.Profile`) sets: the CNN encoder's size and the schedule."""
        return {"width": profile.encoder_width, "multipliers": profile.encoder_multipliers,
                "embed_dim": profile.embed_dim, "lr_schedule": profile.lr_schedule}

    def make_encoder(self) -> ResNetStride8:
        channels = 1 if self.space == "gray" else 3
        return ResNetStride8(channels, width=self.config["width"], embed_dim=self.config["embed_dim"],
                             multipliers=self.config["multipliers"])

    def fit(self, frames: np.ndarray) -> None:
        """Data-dependent set-up before training (e.g. colour clusters); frames: uint8 (N, H, W, 3)."""

    def prepare(self, clips: np.ndarray | torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
        """uint8 clips (B, T, H, W, 3), an array or a tensor (the training loop's, pinned on CUDA) -> network
        inputs (B, T, C, H, W) and Lab values (B, T, 3, H, W)."""
        rgb = to_unit_rgb(clips, device)  # moved as uint8, converted on the device
        lab = rgb_to_lab_tensor(rgb)
        return {"inputs": normalise(rgb, self.space, lab=lab), "lab": lab}

    def encode_clips(self, inputs: torch.Tensor, encoder: nn.Module | None = None) -> torch.Tensor:
        """(B, T, C, H, W) -> features (B, T, D, h, w), all frames through one encoder call."""
        b, t = inputs.shape[:2]
        features = (encoder or self.encoder)(inputs.flatten(0, 1))
        return features.view(b, t, *features.shape[1:])

    def loss(self, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def after_step(self, step: int) -> None:
        """Called by the training loop right after each optimiser step (`step`: the index of the update just
        done, from 0), before it is counted: for updates outside back-propagation (a momentum encoder)."""

    def frame_encoder(self) -> FrameEncoder:
        """The encoder used at test time, wrapped for propagation."""
        return FrameEncoder(self.encoder, space=self.space, stride=8, name=self.name)
