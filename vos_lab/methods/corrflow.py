"""CorrFlow (Lai & Xie, BMVC 2019): colourisation with restricted attention, recursion and a cycle.

On top of chapter 2's colourisation pointer with the channel-dropout bottleneck (Sec. 3.2), CorrFlow
- restricts each target cell's attention to a 13x13 window (radius 6) of the reference (Sec. 3.3), which
  makes the affinity cheap enough for high resolutions and rules out far-away false matches;
- trains recursively on frame triplets (Sec. 3.4): frame 1's colours are copied from frame 0, then frame
  2's from frame 1, where frame 1's colours are the ground truth with probability eps and the model's own
  prediction otherwise (scheduled sampling, eps decaying 0.9 -> 0.6), so the model learns to recover from
  its own drift, as it must at test time;
- adds forward-backward cycle consistency (Sec. 3.5): the predicted colours of frame 2 are propagated
  back through frame 1 to frame 0 and compared with frame 0's true colours (weight 0.1).
Targets are 16-class Lab quantisation (chapter 2). The paper's encoder has stride 4; ours has stride 8
(the course's shared trunk), and the window is kept at radius 6 in feature cells.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vos_lab.attention import windowed_attention
from vos_lab.methods.colourisation import ColourTargetMethod, channel_dropout, colour_nll
from vos_lab.options import Option


def sampling_probability(step: int, start: float = 0.9, end: float = 0.6, steps: int = 2000) -> float:
    """Scheduled sampling: the probability of feeding the ground truth, linear from `start` to `end` over
    `steps` training steps, then constant."""
    return start + (end - start) * min(max(step, 0) / max(steps, 1), 1.0)


class CorrFlowMethod(ColourTargetMethod):
    name = "corrflow"
    options = {**ColourTargetMethod.options,
               "temperature": Option(1.0, "softmax temperature of the attention", above=0),
               "radius": Option(6, "attention window radius in feature cells", at_least=0),
               "dropout": Option(0.7, "channel-dropout probability of the bottleneck", at_least=0, at_most=1),
               "sampling": Option(True, "scheduled sampling of frame 1's colours (False: always the truth)"),
               "eps_start": Option(0.9, "ground-truth probability at step 0", at_least=0, at_most=1),
               "eps_end": Option(0.6, "ground-truth probability after schedule_steps", at_least=0, at_most=1),
               "schedule_steps": Option(2000, "steps of the eps decay", at_least=0),
               "cycle_weight": Option(0.1, "weight of the cycle-consistency loss (0: none)", at_least=0)}
    space = "rgb"
    clip_length = 3
    gaps = (1, 2, 3)

    def __init__(self, **config) -> None:
        super().__init__(**config)
        self.encoder = self.make_encoder()

    def ground_truth_probability(self, step: int) -> float:
        """eps at `step` (1 when scheduled sampling is off: always the ground truth)."""
        c = self.config
        return sampling_probability(step, c["eps_start"], c["eps_end"], c["schedule_steps"]) if c["sampling"] else 1.0

    def copy(self, features: torch.Tensor, target: int, reference: int, colours: torch.Tensor) -> torch.Tensor:
        """Colour distribution (B, K, h, w) of frame `target` copied from `colours` of frame `reference`."""
        return windowed_attention(features[:, target], features[:, reference], colours, self.config["radius"],
                                  self.config["temperature"])

    def loss(self, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        inputs = batch["inputs"]
        if self.training and self.config["dropout"] > 0:
            inputs = channel_dropout(inputs, self.config["dropout"])
        features = self.encode_clips(inputs).float()  # (B, 3, D, h, w)
        classes = self.colour_classes(batch["lab"], features.shape[-2:])  # (B, 3, h, w)
        onehot = F.one_hot(classes, self.config["clusters"]).permute(0, 1, 4, 2, 3).float()  # (B, 3, K, h, w)
        first = self.copy(features, 1, 0, onehot[:, 0])
        eps = self.ground_truth_probability(step)
        truth = (torch.rand(len(classes)) < eps).to(features.device).view(-1, 1, 1, 1)
        second = self.copy(features, 2, 1, torch.where(truth, onehot[:, 1], first))
        reconstruction = colour_nll(first, classes[:, 1]) + colour_nll(second, classes[:, 2])
        logs = {"recon": reconstruction.item(), "eps": eps,
                "colour_acc": (second.argmax(1) == classes[:, 2]).float().mean().item()}
        loss = reconstruction
        if self.config["cycle_weight"] > 0:
            back = self.copy(features, 0, 1, self.copy(features, 1, 2, second))
            cycle = colour_nll(back, classes[:, 0])
            loss = loss + self.config["cycle_weight"] * cycle
            logs["cycle"] = cycle.item()
        return loss, {"loss": loss.item(), **logs}
