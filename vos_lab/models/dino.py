"""Self-distillation without labels (DINO, Caron et al. ICCV 2021): a projection head, centring and sharpening.

A student network is trained to output, for one view of an image, the probability distribution a teacher
outputs for another view. Both pass their features through a projection head to K logits. The teacher's
distribution is *centred* (a running mean of its logits is subtracted, so no single dimension dominates) and
*sharpened* (a low temperature, 0.04, so it does not spread uniformly); together they avoid the two collapses.
The loss is the cross-entropy H(p_teacher, p_student) with the student at temperature 0.1. iBOT (Zhou et al.
ICLR 2022) applies the same to patch tokens with a centre of their own. These pieces know nothing of views,
frames or masks: the methods arrange them (`vos_lab.methods.ino`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vos_lab.ranks import all_sum

TEACHER_TEMPERATURE = 0.04  # DINO's final teacher temperature (INO keeps it from the start)
STUDENT_TEMPERATURE = 0.1
CENTRE_MOMENTUM = 0.9


class DinoHead(nn.Module):
    """DINO's projection head (Caron et al. 2021, Sec. 3.1 and appendix): an MLP (`layers` linear layers, GELU,
    hidden width `hidden`) to a `bottleneck`-d vector, L2-normalised, then a linear layer without bias whose
    weight rows are kept at unit length (weight normalisation with the norm fixed to 1) to `out_dim` logits."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 2048, bottleneck: int = 256, layers: int = 3) -> None:
        super().__init__()
        sizes = [in_dim] + [hidden] * (layers - 1) + [bottleneck]
        modules: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            modules += [nn.Linear(a, b)] + ([nn.GELU()] if i < len(sizes) - 2 else [])
        self.mlp = nn.Sequential(*modules)
        for module in self.mlp:
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        self.last = nn.Parameter(torch.empty(out_dim, bottleneck))
        nn.init.trunc_normal_(self.last, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(self.mlp(x), dim=-1), F.normalize(self.last, dim=-1))


class Centre(nn.Module):
    """The running mean c of the teacher's logits (a buffer, saved with the checkpoint):
    c <- m c + (1 - m) mean(batch logits) after each use."""

    def __init__(self, dim: int, momentum: float = CENTRE_MOMENTUM) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("value", torch.zeros(dim))

    def probabilities(self, logits: torch.Tensor, temperature: float = TEACHER_TEMPERATURE) -> torch.Tensor:
        """The teacher's centred and sharpened distribution softmax((logits - c) / temperature) (no gradient)."""
        return torch.softmax((logits.detach().float() - self.value) / temperature, dim=-1)

    @torch.no_grad()
    def update(self, logits: torch.Tensor) -> None:
        """Move the centre towards the mean of `logits` (..., K) over the global batch (every rank's under
        torchrun, as DINO's all-reduce); nothing when there are none."""
        logits = logits.detach().float().reshape(-1, logits.shape[-1])
        total = all_sum(torch.cat([logits.sum(0), logits.new_tensor([len(logits)])]))
        if total[-1] > 0:
            self.value.mul_(self.momentum).add_(total[:-1] / total[-1], alpha=1.0 - self.momentum)


def distillation_cross_entropy(teacher: torch.Tensor, student_logits: torch.Tensor,
                               temperature: float = STUDENT_TEMPERATURE) -> torch.Tensor:
    """H(p_t, p_s) per row: -sum_k p_t[k] log softmax(student / temperature)[k]; teacher probabilities and
    student logits (..., K) -> (...)."""
    return -(teacher * F.log_softmax(student_logits.float() / temperature, dim=-1)).sum(-1)


def teacher_momentum(step: int, steps: int, base: float = 0.996) -> float:
    """The EMA momentum after update `step` of `steps`: from `base` up to 1 along half a cosine (DINO Sec. 3.1):
    1 - (1 - base) (cos(pi step / steps) + 1) / 2; 1 from `steps` on."""
    progress = min(max(step, 0) / max(steps, 1), 1.0)
    return 1.0 - (1.0 - base) * (math.cos(math.pi * progress) + 1.0) / 2.0


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """theta_teacher <- m theta_teacher + (1 - m) theta_student, parameter by parameter (buffers stay the
    teacher's own): DINO's teacher and MoCo's / Zhu et al.'s momentum key encoder (`methods.momentum`)."""
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.mul_(momentum).add_(s.detach(), alpha=1.0 - momentum)
