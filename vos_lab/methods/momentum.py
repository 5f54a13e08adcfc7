"""Zhu, Zhang, Fu, Guo & Xie 2020 (arXiv 2006.12480), self-supervised VOS with a momentum memory: training.

The paper simplifies MAST's memory: no ROI localisation, each target pixel reads the reference inside a window
centred on itself (weighted average of the reference's values in the window), and the loss is MAST's: one of
a/b dropped, the target's dropped channel reconstructed from the reference, Huber loss, frame pairs with gaps
{2, 5, 8} (shared with `vos_lab.methods.mast`). What is new: two encoders, as in MoCo (He et al. 2020). The
*query* encoder encodes the target frame and is trained by back-propagation; the *key* encoder encodes the
reference frame, gets no gradient, and follows the query encoder as an exponential moving average after each
optimiser step,
    theta_k <- m theta_k + (1 - m) theta_q,
so the features the target is matched against change slowly and consistently.

The authors released no code; the choices the paper leaves open (the momentum schedule, the key encoder's
batch-norm statistics) are options here; which encoder gives the test-time features is measured in chapter 4.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from vos_lab.errors import VosLabError
from vos_lab.methods.mast import MastMethod, drop_ab_channel, reconstruction_loss
from vos_lab.models.dino import ema_update
from vos_lab.models.encoders import FrameEncoder
from vos_lab.options import Option

MOMENTUM_SCHEDULES = ("constant", "warmup")
ENCODERS = ("key", "query")
# the test-time features: both were measured in chapter 4 (cpu profile, J&F on its 4 x 40 development frames:
# query 0.814, key 0.812); a test-time choice, so not an option of training (it would retrain the model)
TEST_ENCODER = "query"


def momentum_at(step: int, momentum: float, schedule: str) -> float:
    """The momentum of the update after optimiser step `step` (from 0). "constant": `momentum` throughout, as
    MoCo; "warmup": min(momentum, (1 + step) / (10 + step)), the usual warm-up of an exponential moving
    average (TensorFlow's `ExponentialMovingAverage` with `num_updates`): the key follows quickly at first, and
    reaches 0.999 after about 9,000 steps."""
    if schedule == "constant":
        return momentum
    return min(momentum, (1 + step) / (10 + step))


# theta_k <- m theta_k + (1 - m) theta_q for every parameter (buffers, i.e. batch-norm statistics, stay the key
# encoder's own, as in MoCo): the same moving average as DINO's teacher, one function for both.
momentum_update = ema_update


@torch.no_grad()
def weight_distance(a: nn.Module, b: nn.Module) -> float:
    """The Euclidean distance between the parameters of two networks of the same shape."""
    return float(sum(((p - q).float() ** 2).sum() for p, q in zip(a.parameters(), b.parameters(), strict=True))
                 ** 0.5)


class MomentumMethod(MastMethod):
    """MAST's data and loss with a query encoder (`encoder`, trained) and a momentum key encoder."""

    name = "momentum"
    options = {**MastMethod.options,
               "momentum": Option(0.999, "momentum m of the key encoder's moving average", at_least=0, at_most=1),
               "momentum_schedule": Option("warmup", "how m is reached over training", choices=MOMENTUM_SCHEDULES)}

    def __init__(self, **config) -> None:
        super().__init__(**config)
        self.key_encoder = copy.deepcopy(self.encoder)  # starts equal to the query encoder (MoCo)
        self.key_encoder.requires_grad_(False)

    def momentum(self, step: int) -> float:
        return momentum_at(step, self.config["momentum"], self.config["momentum_schedule"])

    def loss(self, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        inputs, channel = drop_ab_channel(batch["inputs"])
        target = self.encode_clips(inputs[:, 1:])[:, 0].float()  # query encoder, with gradient
        with torch.no_grad():
            reference = self.encode_clips(inputs[:, :1], self.key_encoder)[:, 0].float()
        loss, logs = reconstruction_loss(target, reference, batch["lab"], channel, self.config)
        return loss, logs | {"key_query_distance": weight_distance(self.key_encoder, self.encoder)}

    def after_step(self, step: int) -> None:
        momentum_update(self.key_encoder, self.encoder, self.momentum(step))

    def frame_encoder(self, which: str = TEST_ENCODER) -> FrameEncoder:
        """The test-time encoder: `which` is "key" or "query"."""
        if which not in ENCODERS:
            raise VosLabError(f"momentum: no '{which}' encoder (choose {', '.join(ENCODERS)})")
        trunk = self.key_encoder if which == "key" else self.encoder
        return FrameEncoder(trunk, space=self.space, stride=8, name=f"{self.name}-{which}")
