"""MAST (Lai, Lu & Xie, CVPR 2020): memory-augmented self-supervised tracking, the training part.

Sec. 3.1: the input is Lab, and exactly one of the a/b channels is dropped (zeroed) for every sample (the
same one in both frames); the network must reconstruct the dropped channel of the target frame by copying
it from the reference frame through the restricted attention (radius 6 in training), and the loss is a
Huber (smooth L1) regression. Lab decorrelates the channels better than RGB, so the dropped channel is
hard to guess from the kept ones and copying is the easy way. Frame pairs are sampled with gaps
{2, 5, 8}. At test time the full Lab frame goes in, and the memory of long- and short-term references with
ROI localisation lives in `vos_lab.propagation` (`MEMORY_LAYOUTS["mast"]`, `roi=True`).
The paper's encoder has stride 4; ours has stride 8 (the course's shared trunk).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vos_lab.attention import windowed_attention
from vos_lab.methods.base import Method
from vos_lab.options import Option

AB_SCALE = 110.0  # |a|, |b| <= about 110 in Lab


def drop_ab_channel(inputs: torch.Tensor, generator: torch.Generator | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Lab inputs (B, T, 3, H, W) -> the inputs with a or b zeroed (the same in all T frames of a sample),
    and the dropped channel index (B,) in {1, 2}."""
    b = inputs.shape[0]
    channel = 1 + torch.randint(0, 2, (b,), generator=generator)
    keep = torch.ones(b, 3)
    keep[torch.arange(b), channel] = 0.0
    return inputs * keep.to(inputs.device).view(b, 1, 3, 1, 1), channel.to(inputs.device)


def dropped_channel(lab: torch.Tensor, channel: torch.Tensor, size: tuple[int, int], scale: float) -> torch.Tensor:
    """The regression values (B, T, h, w): each sample's dropped channel of Lab (B, T, 3, H, W), averaged
    over feature cells, divided by 110 and multiplied by `scale` (MAST's code regresses Lab x 20)."""
    picked = lab[torch.arange(lab.shape[0], device=lab.device), :, channel]  # (B, T, H, W)
    return F.adaptive_avg_pool2d(picked, size) / AB_SCALE * scale


class MastMethod(Method):
    name = "mast"
    options = {**Method.options,
               "temperature": Option(1.0, "softmax temperature of the attention", above=0),
               "radius": Option(6, "attention window radius in feature cells", at_least=0),
               "huber_scale": Option(20.0, "scale of the regressed channel (Lab / 110 x this)", above=0)}
    space = "lab"
    clip_length = 2
    gaps = (2, 5, 8)

    def __init__(self, **config) -> None:
        super().__init__(**config)
        self.encoder = self.make_encoder()

    def loss(self, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        inputs, channel = drop_ab_channel(batch["inputs"])
        features = self.encode_clips(inputs).float()  # (B, 2, D, h, w)
        return reconstruction_loss(features[:, 1], features[:, 0], batch["lab"], channel, self.config)


def reconstruction_loss(target: torch.Tensor, reference: torch.Tensor, lab: torch.Tensor, channel: torch.Tensor,
                        config: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """MAST's loss given the features (B, D, h, w) of the target and the reference frame: the target's dropped
    channel (of Lab pairs (B, 2, 3, H, W)) copied from the reference's through the windowed attention
    (`radius`, `temperature` of `config`), Huber loss; also what copying from the same place would cost."""
    values = dropped_channel(lab, channel, target.shape[-2:], config["huber_scale"])
    predicted = windowed_attention(target, reference, values[:, :1], config["radius"], config["temperature"])[:, 0]
    loss = F.smooth_l1_loss(predicted, values[:, 1])
    baseline = F.smooth_l1_loss(values[:, 0], values[:, 1])  # copying each cell from the same place
    return loss, {"loss": loss.item(), "copy_same_place": baseline.item()}
