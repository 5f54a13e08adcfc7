"""Colourisation as a proxy task (Vondrick et al. ECCV 2018) and CorrFlow's bottleneck (Lai & Xie 2019).

Vondrick et al. (Sec. 3): grayscale frames go through a CNN; each target pixel points at the pixels of 3
reference frames (softmax of feature dot products, temperature 1 in training) and copies their quantised
colours; the loss is the cross-entropy against the target's true colour class. Copying is only possible
by finding the same physical point, so the features learn correspondence.

CorrFlow (Sec. 3.2) feeds RGB instead and adds an information bottleneck: with probability 0.7, 1 or 2
of the 3 input channels are zeroed (the same channels for every frame of a sample) and the rest
rescaled, so the network cannot simply read the colour it has to predict from its input.

The course adds one option, `cosine`: the pointer on L2-normalised features at temperature 0.1, the
geometry that propagation uses at test time. The cpu profile trains that way (short runs need the match,
chapter 2 measures it); the gpu profile keeps the papers' raw dot products at T = 1.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from vos_lab.attention import copy_values, flatten_frames, pointer_weights
from vos_lab.colour import fit_ab_centres, quantise_ab
from vos_lab.methods.base import Method
from vos_lab.options import Option

VARIANTS = {
    # variant: (input space, references per target, channel dropout probability)
    "vondrick": ("gray", 3, 0.0),
    "bottleneck": ("rgb", 1, 0.7),
    "rgb": ("rgb", 1, 0.0),  # the ablation: RGB input, no bottleneck
}


def channel_dropout(inputs: torch.Tensor, probability: float, generator: torch.Generator | None = None
                    ) -> torch.Tensor:
    """CorrFlow's bottleneck on (B, T, 3, H, W): per sample, with `probability` zero 1 or 2 channels
    (the same ones in all T frames) and rescale the kept ones by 3 / kept."""
    b, device = inputs.shape[0], inputs.device
    drop = torch.rand(b, generator=generator) < probability
    count = torch.randint(1, 3, (b,), generator=generator)
    order = torch.argsort(torch.rand(b, 3, generator=generator), dim=1)
    dropped = (order < count[:, None]) & drop[:, None]  # (B, 3)
    keep = (~dropped).float() * 3.0 / (3 - dropped.sum(1, keepdim=True)).float()
    return inputs * keep.to(device).view(b, 1, 3, 1, 1)


def colour_nll(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of copied colour distributions (N, K, ...) against true classes (N, ...)."""
    return F.nll_loss(torch.log(predicted.clamp_min(1e-8)), target)


def colour_classes(lab: torch.Tensor, centres: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Lab (B, T, 3, H, W) -> colour class of each feature cell (B, T, h, w): ab averaged, then quantised."""
    b, t = lab.shape[:2]
    ab = F.adaptive_avg_pool2d(lab[:, :, 1:].flatten(0, 1), size)
    return quantise_ab(ab, centres).view(b, t, *size)


class ColourTargetMethod(Method):
    """A method whose targets are quantised colours: holds the k-means ab centres (`clusters` of them,
    16 in Vondrick et al. Sec. 3.2 and CorrFlow Sec. 3.2), fitted on training frames before training."""

    options = {**Method.options, "clusters": Option(16, "colour classes (k-means centres of ab)", at_least=2)}

    def __init__(self, **config) -> None:
        super().__init__(**config)
        self.register_buffer("centres", torch.zeros(self.config["clusters"], 2))

    def fit(self, frames: np.ndarray) -> None:
        self.centres.copy_(torch.from_numpy(fit_ab_centres(frames, self.config["clusters"])))

    def colour_classes(self, lab: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Lab clips (B, T, 3, H, W) -> the colour class of each feature cell (B, T, h, w)."""
        return colour_classes(lab, self.centres, size)


class ColourisationMethod(ColourTargetMethod):
    name = "colourisation"
    options = {**ColourTargetMethod.options,
               "variant": Option("vondrick", "input and references (see VARIANTS)", choices=tuple(VARIANTS)),
               "temperature": Option(1.0, "softmax temperature of the pointer", above=0),
               "cosine": Option(False, "pointer on L2-normalised features (the course's option)")}

    def __init__(self, **config) -> None:
        super().__init__(**config)
        self.space, references, self.dropout = VARIANTS[self.config["variant"]]
        self.clip_length = references + 1
        self.gaps = (1, 2, 3)
        self.encoder = self.make_encoder()

    def predict_colours(self, features: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Colour distribution (B, h*w, K) of the last frame, copied from the others' colour classes."""
        if self.config["cosine"]:  # the course's option: cosine similarity, as at test time
            features = F.normalize(features, dim=2)
        weights = pointer_weights(features[:, -1].flatten(2), flatten_frames(features[:, :-1]),
                                  self.config["temperature"])
        one_hot = F.one_hot(classes[:, :-1].flatten(1), self.config["clusters"]).float()  # (B, R*h*w, K)
        return copy_values(weights, one_hot)

    def loss(self, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        inputs = batch["inputs"]
        if self.training and self.dropout > 0:
            inputs = channel_dropout(inputs, self.dropout)
        features = self.encode_clips(inputs).float()
        classes = self.colour_classes(batch["lab"], features.shape[-2:])
        predicted = self.predict_colours(features, classes).flatten(0, 1)  # (B*h*w, K)
        target = classes[:, -1].flatten()
        loss = colour_nll(predicted, target)
        accuracy = (predicted.argmax(1) == target).float().mean()
        return loss, {"loss": loss.item(), "colour_acc": accuracy.item()}
