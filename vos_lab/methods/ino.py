"""INO: In-N-Out generative learning for dense unsupervised video segmentation (Pan et al., ACM MM 2022).

A ViT/8 student and its EMA teacher (momentum 0.996 -> 1 along a cosine, DINO) see views of two frames of one
clip: per frame `global_crops` large views and `local_crops` small ones (multi-crop, `vos_lab.data.crops`).
Both pass their tokens through DINO projection heads (`vos_lab.models.dino`); the teacher's distributions are
centred and sharpened (0.04), the student's taken at 0.1. Three losses, each switchable:
- out-generative (Sec. 3.2, "out_g2g + out_l2g"): the class-token distribution of each global view of the
  teacher is predicted by the student's class tokens of every local view of both frames and of the other
  frame's global views: local views imagine the whole, and the other frame's view is the inter-frame
  consistency at feature level;
- in-generative (Sec. 3.3, masked image modelling as iBOT): 10-50 % of the global views' patches are replaced
  by a mask token for the student (one mask per sample, the same in both frames; a sample is masked with
  probability 0.5, as the authors' code); at masked positions the student predicts the teacher's patch-token
  distribution of the unmasked view (a centre of its own);
- affinity-level inter-frame consistency (Sec. 3.4): the frame-to-frame affinity of the L2-normalised projected
  patch tokens at the masked positions, softmax over the next frame's tokens; cross-entropy between the
  teacher's (temperature 0.04) and the student's (0.1).
Test-time features are the teacher's patch tokens of an intermediate block (`block`; the authors' code reads
block 7 of 12), stride 8.

Simplified against the authors' code (pansanity666/INO_VOS): two frames per clip instead of four, Adam with the
course's schedule instead of AdamW with weight-decay and warm-up schedules and gradient clipping, no colour
augmentation of the views; sizes per profile in `PROFILE_SIZES` (the gpu profile keeps ViT-S/8 and the
authors' heads and crops).
"""

from __future__ import annotations

import contextlib
import copy

import torch
import torch.nn.functional as F
from torch import nn

from vos_lab.data.crops import multi_crop
from vos_lab.errors import VosLabError
from vos_lab.methods.base import Method
from vos_lab.models.dino import Centre, DinoHead, distillation_cross_entropy, ema_update, teacher_momentum
from vos_lab.models.encoders import FrameEncoder
from vos_lab.models.vit import PATCH, BlockFeatures, ViT
from vos_lab.options import Option

GLOBAL_SCALE = (0.8, 0.95)  # area fractions of the clip's crop (authors' code)
LOCAL_SCALE = (0.05, 0.8)
AFFINITY_TEACHER_TEMPERATURE = 0.04  # Sec. 3.4
AFFINITY_STUDENT_TEMPERATURE = 0.1
CNN_OPTIONS = ("width", "multipliers", "embed_dim")  # what sizes the course's CNNs, not a ViT

# The ViT, heads and views per profile (the profiles' CNN fields do not size a transformer). gpu: ViT-S/8
# (width 384, 12 blocks, 6 heads) and the authors' heads and crops, the options' defaults.
PROFILE_SIZES: dict[str, dict] = {
    "smoke": {"vit_width": 48, "depth": 2, "heads": 2, "block": 2, "drop_path": 0.0, "head_hidden": 64,
              "head_bottleneck": 32, "out_dim": 64, "global_size": 32, "local_size": 16, "local_crops": 1,
              "test_stride": 16},
    "cpu": {"vit_width": 192, "depth": 4, "heads": 3, "block": 3, "drop_path": 0.0, "head_hidden": 512,
            "head_bottleneck": 128, "out_dim": 1024, "global_size": 96, "local_size": 48, "local_crops": 2,
            "test_stride": 16},
    "gpu": {},
}


def patch_masks(batch: int, tokens: int, ratio: tuple[float, float] = (0.1, 0.5), probability: float = 0.5,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Which patches each sample hides (B, tokens) bool: with `probability` a sample hides int(r x tokens)
    random patches, r uniform in `ratio`; otherwise none."""
    ratios = torch.empty(batch).uniform_(*ratio, generator=generator)
    masked = torch.rand(batch, generator=generator) < probability
    counts = (ratios * tokens).long() * masked
    ranks = torch.rand(batch, tokens, generator=generator).argsort(1).argsort(1)  # a random order of the patches
    return ranks < counts[:, None]


def out_generative_loss(teacher: torch.Tensor, student_global: torch.Tensor,
                        student_local: torch.Tensor | None) -> torch.Tensor:
    """Teacher class-token probabilities of the global views (B, T, G, K); student logits of the same views
    (B, T, G, K) and of the local views (B, T, L, K) or None. Each teacher view (t, g) against every local view
    of every frame and every global view of the other frames; the mean cross-entropy over all pairs."""
    b, frames = teacher.shape[:2]
    terms = []
    for t in range(frames):
        others = [student_global[:, u] for u in range(frames) if u != t]
        students = torch.cat(others + ([student_local.flatten(1, 2)] if student_local is not None else []), 1)
        for g in range(teacher.shape[2]):
            terms.append(distillation_cross_entropy(teacher[:, t, g, None], students))  # (B, views)
    return torch.cat(terms, 1).mean()


def in_generative_loss(teacher: torch.Tensor, student: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Teacher patch probabilities (B, T, G, N, K) of the unmasked global views, student logits (B, T, G, N, K)
    of the masked ones, mask (B, N): the cross-entropy averaged over the masked positions (0 when none)."""
    ce = distillation_cross_entropy(teacher, student)  # (B, T, G, N)
    weights = mask[:, None, None, :].expand_as(ce).float()
    return (ce * weights).sum() / weights.sum().clamp(min=1.0)


def masked_affinity(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Frame t -> t+1 cosine affinities (B, T-1, N, N) of tokens (B, T, N, K); columns outside the mask (B, N)
    set to -1e4 (softmax weight 0)."""
    unit = F.normalize(tokens.float(), dim=-1)
    affinity = unit[:, :-1] @ unit[:, 1:].transpose(-1, -2)
    return affinity.masked_fill(~mask[:, None, None, :], -1e4)


def affinity_loss(teacher: torch.Tensor, student: torch.Tensor, mask: torch.Tensor,
                  teacher_temperature: float = AFFINITY_TEACHER_TEMPERATURE,
                  student_temperature: float = AFFINITY_STUDENT_TEMPERATURE) -> torch.Tensor:
    """Projected patch tokens of one view per frame, teacher and student (B, T, N, K), mask (B, N): the
    cross-entropy between softmax(A_teacher / 0.04) and softmax(A_student / 0.1) of each masked token's
    affinities to the next frame's masked tokens, averaged over the masked tokens (0 when none)."""
    target = torch.softmax(masked_affinity(teacher.detach(), mask) / teacher_temperature, dim=-1)
    log_student = F.log_softmax(masked_affinity(student, mask) / student_temperature, dim=-1)
    ce = -(target * log_student).sum(-1)  # (B, T-1, N)
    weights = mask[:, None, :].expand_as(ce).float()
    return (ce * weights).sum() / weights.sum().clamp(min=1.0)


def _projected(head: nn.Module, tokens: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """Head outputs (M, N, K) of tokens (M, N, D) at the positions `where` (M, N), zeros elsewhere (only the
    masked positions are ever read: the head runs on those alone)."""
    picked = head(tokens[where])
    out = picked.new_zeros(*where.shape, picked.shape[-1])
    out[where] = picked
    return out


class InoMethod(Method):
    name = "ino"
    options = {
        "lr": Option(5e-4, "Adam's learning rate", above=0),
        "lr_schedule": Method.options["lr_schedule"],
        "vit_width": Option(384, "the ViT's token width (ViT-S: 384)", at_least=1),
        "depth": Option(12, "transformer blocks", at_least=1),
        "heads": Option(6, "attention heads per block (the width must be a multiple)", at_least=1),
        "block": Option(7, "the block whose patch tokens are the test-time features (1 = the first)", at_least=1),
        "drop_path": Option(0.1, "stochastic depth of the student's blocks", at_least=0, at_most=0.9),
        "out_dim": Option(4096, "logits K of the projection heads", at_least=2),
        "head_hidden": Option(2048, "hidden width of the projection heads", at_least=1),
        "head_bottleneck": Option(256, "the heads' L2-normalised bottleneck", at_least=1),
        "shared_head": Option(True, "one head for class and patch tokens (authors' code); False: two"),
        "global_size": Option(224, "global views' side in pixels (a multiple of 8)", at_least=8),
        "local_size": Option(64, "local views' side in pixels (a multiple of 8)", at_least=8),
        "global_crops": Option(1, "global views per frame (the authors' code: 1, the two frames' make DINO's two)",
                               at_least=1),
        "local_crops": Option(8, "local views per frame", at_least=0),
        "mask_min": Option(0.1, "smallest fraction of masked patches", at_least=0, at_most=1),
        "mask_max": Option(0.5, "largest fraction of masked patches", at_least=0, at_most=1),
        "mask_probability": Option(0.5, "probability that a sample is masked at all", at_least=0, at_most=1),
        "momentum": Option(0.996, "the teacher's EMA momentum at step 0 (1 at momentum_steps)", at_least=0, at_most=1),
        "momentum_steps": Option(30_000, "steps over which the momentum rises to 1 (the run's steps)", at_least=1),
        "out_generative": Option(True, "the out-generative loss (class tokens, local/other frame -> global)"),
        "in_generative": Option(True, "the in-generative loss (masked patch tokens)"),
        "affinity": Option(True, "the affinity-level inter-frame consistency loss"),
        "mixed_precision": Option(True, "bfloat16 autocast on a GPU (False: float32 throughout)"),
        "test_stride": Option(8, "test-time feature stride: 8 = frames at full size, 16 = at half size", at_least=8),
    }
    space = "rgb"
    clip_length = 2

    @classmethod
    def check_options(cls, config: dict) -> dict:
        cnn = sorted(set(config) & set(CNN_OPTIONS))
        if cnn:
            raise VosLabError(f"ino: option(s) {', '.join(cnn)} size a CNN encoder; INO's ViT is sized by "
                              "vit_width, depth and heads")
        return super().check_options(config)

    @classmethod
    def profile_config(cls, profile) -> dict:
        """The ViT, heads and views of `PROFILE_SIZES`, the profile's schedule, the momentum over its steps."""
        return {**PROFILE_SIZES[profile.name], "lr_schedule": profile.lr_schedule,
                "momentum_steps": profile.train_steps}

    def __init__(self, **config) -> None:
        super().__init__(**config)
        c = self.config
        problems = [f"block {c['block']} > depth {c['depth']}" if c["block"] > c["depth"] else "",
                    f"vit_width {c['vit_width']} is not a multiple of heads {c['heads']}"
                    if c["vit_width"] % c["heads"] else "",
                    "mask_min > mask_max" if c["mask_min"] > c["mask_max"] else "",
                    *(f"{key} {c[key]} is not a multiple of {PATCH}"
                      for key in ("global_size", "local_size", "test_stride") if c[key] % PATCH),
                    "every loss is off" if not (c["out_generative"] or c["in_generative"] or c["affinity"]) else ""]
        if any(problems):
            raise VosLabError(f"ino: {'; '.join(p for p in problems if p)}")
        head = {"in_dim": c["vit_width"], "out_dim": c["out_dim"], "hidden": c["head_hidden"],
                "bottleneck": c["head_bottleneck"]}
        self.student = nn.ModuleDict({
            "vit": ViT(c["vit_width"], c["depth"], c["heads"], c["global_size"], c["drop_path"]),
            "head": DinoHead(**head), **({} if c["shared_head"] else {"patch_head": DinoHead(**head)})})
        self.teacher = copy.deepcopy(self.student)  # starts equal to the student (DINO)
        self.teacher.requires_grad_(False)
        self.class_centre, self.patch_centre = Centre(c["out_dim"]), Centre(c["out_dim"])

    def train(self, mode: bool = True) -> InoMethod:
        """The teacher is always in eval mode (no stochastic depth: it gives the targets)."""
        super().train(mode)
        self.teacher.eval()
        return self

    @staticmethod
    def patch_head(network: nn.ModuleDict) -> nn.Module:
        return network["patch_head"] if "patch_head" in network else network["head"]

    def views(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Normalised clips (B, T, 3, S, S) -> global views (B, T, G, 3, g, g) and local views (B, T, L, 3, l, l)
        (None without local views)."""
        c, (b, t) = self.config, inputs.shape[:2]
        frames = inputs.flatten(0, 1)
        global_views = multi_crop(frames, c["global_crops"], c["global_size"], GLOBAL_SCALE)[0]
        local_views = None
        if c["local_crops"]:
            local_views = multi_crop(frames, c["local_crops"], c["local_size"], LOCAL_SCALE)[0]
        return (global_views.view(b, t, *global_views.shape[1:]),
                None if local_views is None else local_views.view(b, t, *local_views.shape[1:]))

    def loss(self, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        device = batch["inputs"].device
        precision = (torch.autocast(device.type, enabled=False) if not self.config["mixed_precision"]
                     else contextlib.nullcontext())  # the loop's autocast stays on, or is turned off here
        with precision:
            return self.losses(*self.views(batch["inputs"]))

    def losses(self, global_views: torch.Tensor, local_views: torch.Tensor | None,
               mask: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """The three losses on given views (B, T, G, 3, g, g) and (B, T, L, 3, l, l) or None; `mask` (B, N):
        the masked patches (None: drawn by `patch_masks` when a loss needs them)."""
        c = self.config
        b, t, g = global_views.shape[:3]
        side = c["global_size"] // PATCH
        masking = c["in_generative"] or c["affinity"]
        if mask is None:
            mask = (patch_masks(b, side * side, (c["mask_min"], c["mask_max"]), c["mask_probability"]) if masking
                    else torch.zeros(b, side * side, dtype=torch.bool)).to(global_views.device)
        where = mask[:, None, None].expand(b, t, g, -1).reshape(b * t * g, -1)  # (views, N)
        student_class, student_patches = self.student["vit"](global_views.flatten(0, 2), where.view(-1, side, side))
        with torch.no_grad():
            teacher_class, teacher_patches = self.teacher["vit"](global_views.flatten(0, 2))
        logs, total = {}, 0.0
        if c["out_generative"]:
            teacher_logits = self.teacher["head"](teacher_class).view(b, t, g, -1)
            local_logits = None
            if local_views is not None:
                local_logits = self.student["head"](self.student["vit"](local_views.flatten(0, 2))[0]).view(b, t, -1,
                                                                                                          c["out_dim"])
            out = out_generative_loss(self.class_centre.probabilities(teacher_logits),
                                      self.student["head"](student_class).view(b, t, g, -1), local_logits)
            self.class_centre.update(teacher_logits)
            logs["out_generative"], total = out.item(), total + out
        if masking:
            student_tokens = _projected(self.patch_head(self.student), student_patches.flatten(1, 2), where)
            with torch.no_grad():
                teacher_tokens = _projected(self.patch_head(self.teacher), teacher_patches.flatten(1, 2), where)
            student_tokens, teacher_tokens = (x.view(b, t, g, *x.shape[1:]) for x in (student_tokens, teacher_tokens))
        if c["in_generative"]:
            inside = in_generative_loss(self.patch_centre.probabilities(teacher_tokens), student_tokens, mask)
            self.patch_centre.update(teacher_tokens[mask[:, None, None].expand(b, t, g, -1)])
            logs["in_generative"], total = inside.item(), total + inside
        if c["affinity"]:
            consistency = affinity_loss(teacher_tokens.transpose(1, 2).flatten(0, 1),
                                        student_tokens.transpose(1, 2).flatten(0, 1), mask.repeat_interleave(g, 0))
            logs["affinity"], total = consistency.item(), total + consistency
        logs["masked"] = mask.float().mean().item()
        return total, {"loss": total.item(), **logs}

    def after_step(self, step: int) -> None:
        """The teacher follows the student: EMA with the momentum of `teacher_momentum` (0.996 -> 1)."""
        ema_update(self.teacher, self.student,
                   teacher_momentum(step, self.config["momentum_steps"], self.config["momentum"]))

    def frame_encoder(self, block: int | None = None) -> FrameEncoder:
        """The teacher's patch tokens of `block` (default: the `block` option) as features of stride
        `test_stride` (8: one token per 8x8 pixels of the frame)."""
        block = self.config["block"] if block is None else block
        trunk = BlockFeatures(self.teacher["vit"], block, self.config["test_stride"])
        return FrameEncoder(trunk, space=self.space, stride=trunk.stride, name=f"{self.name}-block{block}")
