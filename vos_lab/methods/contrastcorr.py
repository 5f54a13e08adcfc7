"""ContrastCorr (Wang, Zhou & Li, AAAI 2021): contrastive transformation across videos.

Two frames of a clip are encoded by the stride-8 trunk; a square reference crop of frame 0 ("patch", a
fraction of the frame's side) is paired with a crop of frame 1 (Sec. 3.1):
- warm-up: the target crop is at the same place (random crop pairs);
- after warm-up, patch-level tracking: every reference cell attends to the *whole* target frame, the
  attention-weighted mean of the target cells' coordinates is where it lies, their mean is the tracked centre,
  and the target crop is taken there differentiably (`grid_sample`), so the pair follows the content.
Then, with the affinity A = softmax over reference cells of f_t . f_r / T (Sec. 3.2-3.3):
- intra-video transformation: the target's Lab is reconstructed from its own reference, sum_r A_tr lab_r
  (weighted L1, a and b x `ab_weight` as in the authors' code);
- backward ("colour switch", UVC / the authors' code): the reference is reconstructed from the target through
  the transposed affinity A^T (weight 0.1);
- inter-video transformation: ONE softmax over the reference cells of the whole batch, so the other videos'
  cells compete as negatives; from it the target is reconstructed (inter), the result must agree with the
  intra-video one (intra/inter consistency), and the affinity mass inside the own video must be 1 (sparsity).
As in the authors' code, the inter-video terms start after the warm-up. Every term has a weight option
(0 switches it off). A batch of one video has no negatives: its batch softmax *is* the intra-video one, so the
inter-video terms are skipped with a warning and the model trains as the intra-only model. Under torchrun the
batch softmax runs over the references of every rank's videos (`vos_lab.ranks.gather`), so N processes have the
negatives of one process with the global batch.

Where we differ from the authors' code: they reconstruct in the feature space of a frozen, pre-trained colour
auto-encoder (UVC's) and decode to Lab; we copy per-cell Lab directly (no pre-trained part). Their reference
crop is encoded on its own; we crop the reference frame's feature map. We leave out their self-reconstruction
and concentration terms (not in the paper's loss).
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import torch
import torch.nn.functional as F

from vos_lab.attention import coordinate_grid, copy_values, pointer_weights
from vos_lab.colour import normalise
from vos_lab.errors import VosLabError
from vos_lab.methods.base import Method
from vos_lab.methods.colourisation import channel_dropout
from vos_lab.options import Option
from vos_lab.ranks import gather, rank, world

TERMS = ("intra", "backward", "inter", "consistency", "sparsity")  # each a weight option of the method
INTER_TERMS = ("inter", "consistency", "sparsity")  # the terms of the batch softmax


def cell_lab(lab: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Lab clips (B, T, 3, H, W) -> Lab scaled to about [-1, 1] (L / 50 - 1, ab / 110) and averaged over the
    cells of a `size` grid: (B, T, 3, h, w), the values that are copied."""
    b, t = lab.shape[:2]
    scaled = normalise(lab, "lab", lab=lab)  # the network's Lab scaling, from the Lab values given
    return F.adaptive_avg_pool2d(scaled.flatten(0, 1), size).view(b, t, 3, *size)


def colour_l1(predicted: torch.Tensor, target: torch.Tensor, ab_weight: float) -> torch.Tensor:
    """Weighted L1 of Lab values (..., 3): mean |dL| + ab_weight (mean |da| + mean |db|)."""
    per_channel = (predicted - target).abs().flatten(0, -2).mean(0)
    return per_channel[0] + ab_weight * per_channel[1:].sum()


def crop_cells(maps: torch.Tensor, top_left: torch.Tensor, size: int) -> torch.Tensor:
    """Differentiable crop: maps (B, C, h, w), top_left (B, 2) (y, x) in cells, maybe fractional -> the
    size x size cells from there (B, C, size, size), bilinear between cells (border values outside)."""
    b, _, h, w = maps.shape
    offsets = torch.arange(size, device=maps.device, dtype=maps.dtype)
    ys, xs = top_left[:, 0, None] + offsets, top_left[:, 1, None] + offsets  # (B, size) cell centres
    gy, gx = (2 * ys + 1) / h - 1, (2 * xs + 1) / w - 1  # grid_sample's [-1, 1] (align_corners=False)
    grid = torch.stack([gx[:, None, :].expand(b, size, size), gy[:, :, None].expand(b, size, size)], dim=-1)
    return F.grid_sample(maps, grid, mode="bilinear", padding_mode="border", align_corners=False)


def track(reference: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    """Patch-level tracking: reference crop features (B, C, p, q), target frame features (B, C, h, w) -> the
    tracked centre (B, 2) (y, x) in target cells: each reference cell's attention over the whole target frame
    gives its expected position, and the centre is their mean."""
    b, _, h, w = target.shape
    weights = pointer_weights(reference.flatten(2), target.flatten(2), temperature)  # (B, p q, h w)
    grid = coordinate_grid(h, w, target.device).flatten(1).T.expand(b, h * w, 2)
    return copy_values(weights, grid).mean(1)


def box_around(centre: torch.Tensor, size: int, h: int, w: int) -> torch.Tensor:
    """The top-left corner (B, 2) of the size x size box centred at `centre` (B, 2), kept inside h x w."""
    corner = centre - (size - 1) / 2
    return torch.stack([corner[:, 0].clamp(0, h - size), corner[:, 1].clamp(0, w - size)], dim=1)


def batch_pointer_weights(queries: torch.Tensor, keys: torch.Tensor, temperature: float) -> torch.Tensor:
    """The inter-video affinity: queries (B, C, Nq), keys (V, C, Nk) -> (B Nq, V Nk), each row ONE softmax
    over the reference cells of every video of the batch (rows and columns video by video)."""
    return pointer_weights(queries.transpose(0, 1).flatten(1)[None], keys.transpose(0, 1).flatten(1)[None],
                           temperature)[0]


def own_video_mass(weights: torch.Tensor, videos: int, key_videos: int | None = None, first: int = 0
                   ) -> torch.Tensor:
    """The inter-video affinity (B Nq, V Nk) of B = `videos` query videos over V = `key_videos` (None: B) key
    videos -> each query's weight inside its own video's keys (B, Nq). Query video i is key video first + i (one
    process: first 0; under torchrun the keys are the global batch's and first = rank x B)."""
    key_videos = key_videos or videos
    blocks = weights.view(videos, weights.shape[0] // videos, key_videos, weights.shape[1] // key_videos).sum(-1)
    own = torch.arange(videos, device=weights.device)
    return blocks[own, :, first + own]


def sparsity_loss(weights: torch.Tensor, videos: int, key_videos: int | None = None, first: int = 0
                  ) -> torch.Tensor:
    """ContrastCorr's sparsity constraint: mean |1 - own-video mass| (0 when no weight leaves the own video)."""
    return (1 - own_video_mass(weights, videos, key_videos, first)).abs().mean()


class Pairs(NamedTuple):
    """Reference and target crops: features (B, C, p, p), Lab (B, 3, p, p) and top-left corners (B, 2) in cells."""

    reference: torch.Tensor
    reference_lab: torch.Tensor
    target: torch.Tensor
    target_lab: torch.Tensor
    reference_corner: torch.Tensor
    target_corner: torch.Tensor


def form_pairs(features: torch.Tensor, colours: torch.Tensor, size: int, tracked: bool, temperature: float,
               generator: torch.Generator | None = None) -> Pairs:
    """Features (B, 2, C, h, w) and cell Lab (B, 2, 3, h, w) of frame pairs -> crops of `size` cells: the
    reference at a random place of frame 0; the target at the same place (random crop pairs) or, `tracked`,
    centred where the reference crop is tracked to in frame 1."""
    b, _, _, h, w = features.shape
    corner = torch.stack([torch.randint(0, h - size + 1, (b,), generator=generator),
                          torch.randint(0, w - size + 1, (b,), generator=generator)], dim=1)
    corner = corner.to(features.device, features.dtype)
    reference = crop_cells(features[:, 0], corner, size)
    target_corner = box_around(track(reference, features[:, 1], temperature), size, h, w) if tracked else corner
    return Pairs(reference, crop_cells(colours[:, 0], corner, size), crop_cells(features[:, 1], target_corner, size),
                 crop_cells(colours[:, 1], target_corner, size), corner, target_corner)


class ContrastCorrMethod(Method):
    name = "contrastcorr"
    options = {**Method.options,
               "temperature": Option(1.0, "softmax temperature of every affinity", above=0),
               "cosine": Option(False, "affinities of L2-normalised features (the course's option, as in chapter 2)"),
               "dropout": Option(0.7, "channel-dropout probability of the input (CorrFlow's bottleneck, as the "
                                      "authors' code)", at_least=0, at_most=1),
               "patch": Option(0.5, "side of the crops, a fraction of the frame's side", above=0, at_most=1),
               "warmup_steps": Option(400, "steps on random crop pairs, without the inter-video terms", at_least=0),
               "tracking": Option(True, "after warm-up, crop the target where the reference is tracked "
                                        "(False: random crop pairs throughout)"),
               "intra": Option(1.0, "weight of the intra-video reconstruction", at_least=0),
               "backward": Option(0.1, "weight of the backward (colour switch) reconstruction", at_least=0),
               "inter": Option(1.0, "weight of the inter-video reconstruction", at_least=0),
               "consistency": Option(1.0, "weight of the intra/inter consistency", at_least=0),
               "sparsity": Option(1.0, "weight of the sparsity constraint (own-video mass = 1)", at_least=0),
               "ab_weight": Option(10.0, "weight of a and b against L in the L1 (the authors' 10)", at_least=0)}
    space = "rgb"
    clip_length = 2

    def __init__(self, **config) -> None:
        super().__init__(**config)
        if self.config["intra"] == 0 and self.config["backward"] == 0:
            raise VosLabError("contrastcorr: intra or backward must be > 0 (the warm-up trains on them)")
        self.encoder = self.make_encoder()
        self._warned = False

    def crop_size(self, h: int, w: int) -> int:
        """The crops' side in cells for an h x w feature map."""
        return max(1, round(self.config["patch"] * min(h, w)))

    def pairs(self, features: torch.Tensor, colours: torch.Tensor, step: int) -> Pairs:
        """The crop pairs of step `step`: random pairs during warm-up (or always without tracking), else tracked."""
        tracked = self.config["tracking"] and step >= self.config["warmup_steps"]
        return form_pairs(features, colours, self.crop_size(*features.shape[-2:]), tracked,
                          self.config["temperature"])

    def inter_active(self, videos: int, step: int) -> bool:
        """Whether the inter-video terms run: after warm-up, with a weight, and with other videos (a batch of 1
        has none: a warning, once, and the intra-only model)."""
        if step < self.config["warmup_steps"] or not any(self.config[t] > 0 for t in INTER_TERMS):
            return False
        if videos == 1:
            if not self._warned:
                warnings.warn("contrastcorr: a batch of 1 video has no negatives; the inter-video terms are "
                              "skipped and the model trains as the intra-only model", stacklevel=2)
                self._warned = True
            return False
        return True

    def terms(self, pairs: Pairs, step: int) -> dict[str, torch.Tensor]:
        """The unweighted loss terms with a non-zero weight (the inter-video ones only when `inter_active`)."""
        c, temperature, ab = self.config, self.config["temperature"], self.config["ab_weight"]
        b = pairs.target.shape[0]
        queries, keys = pairs.target.flatten(2), pairs.reference.flatten(2)  # (B, C, N)
        ref_lab, tar_lab = pairs.reference_lab.flatten(2).transpose(1, 2), pairs.target_lab.flatten(2).transpose(1, 2)
        weights = pointer_weights(queries, keys, temperature)  # (B, Nt, Nr)
        intra = copy_values(weights, ref_lab)  # (B, Nt, 3)
        terms = {}
        if c["intra"] > 0:
            terms["intra"] = colour_l1(intra, tar_lab, ab)
        if c["backward"] > 0:
            terms["backward"] = colour_l1(copy_values(weights.transpose(1, 2), tar_lab), ref_lab, ab)
        if self.inter_active(b * world(), step):
            all_keys, all_lab = gather(keys), gather(ref_lab)  # the global batch's references (torchrun: all ranks')
            batch_weights = batch_pointer_weights(queries, all_keys, temperature)  # (B Nt, world B Nr)
            inter = (batch_weights @ all_lab.flatten(0, 1)).view_as(intra)
            if c["inter"] > 0:
                terms["inter"] = colour_l1(inter, tar_lab, ab)
            if c["consistency"] > 0:
                terms["consistency"] = colour_l1(inter, intra, ab)
            if c["sparsity"] > 0:
                terms["sparsity"] = sparsity_loss(batch_weights, b, len(all_keys), rank() * b)
        return terms

    def loss(self, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        inputs = batch["inputs"]
        if self.training and self.config["dropout"] > 0:
            inputs = channel_dropout(inputs, self.config["dropout"])
        features = self.encode_clips(inputs).float()  # (B, 2, D, h, w)
        if self.config["cosine"]:
            features = F.normalize(features, dim=2)
        pairs = self.pairs(features, cell_lab(batch["lab"], features.shape[-2:]), step)
        terms = self.terms(pairs, step)
        loss = sum(self.config[name] * value for name, value in terms.items())
        shift = (pairs.target_corner - pairs.reference_corner).norm(dim=1).mean()  # cells the tracker moved the crop
        return loss, {"loss": loss.item(), **{k: v.item() for k, v in terms.items()}, "shift": shift.item()}
