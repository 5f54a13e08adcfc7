"""Online adaptation (Zhu et al. 2020, the second stage): a U-Net trained per video on propagated masks.

After the masks of a video have been propagated, a small U-Net (`vos_lab.models.unet`) is trained *from
scratch* on that video alone: its input is a frame, its target the propagated mask of that frame taken as a
pseudo label (frame 0: the given annotation, the only ground truth it ever sees), its loss pixel-wise
cross-entropy + Dice over one channel per object plus the background. Its predictions replace the propagated
masks. The deep-image-prior effect (Ulyanov et al. 2018) is why this helps: a randomly initialised
convolutional network fits the structure that is consistent across the video (the object's appearance) long
before it fits the frame-to-frame errors of the pseudo labels, so with a limited number of iterations its
output is cleaner than its targets, and it can recover an object that propagation lost for a few frames.

The paper says about 200 iterations per video and a 480x480 input; the frames here keep their aspect
ratio (height `size`), and the profiles give smaller and fewer on CPU (`Profile.adapt_iters`, `adapt_size`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from vos_lab.colour import to_input
from vos_lab.errors import VosLabError
from vos_lab.models.unet import UNet
from vos_lab.profiles import Profile


@dataclass(frozen=True)
class AdaptConfig:
    """Iterations per video, the U-Net's input height (frames keep their aspect ratio), batch of frames per
    iteration, Adam's learning rate, the U-Net's width and depth, the Dice term's weight and the seed."""

    iters: int = 200
    size: int = 480
    batch_size: int = 2
    lr: float = 1e-3
    width: int = 16
    depth: int = 4
    dice_weight: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("iters", "size", "batch_size", "width", "depth"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise VosLabError(f"online adaptation: {name} must be a positive integer, got {getattr(self, name)!r}")
        if self.size < 2**self.depth:
            raise VosLabError(f"online adaptation: size {self.size} is smaller than the U-Net's 2^{self.depth}")
        if not self.lr > 0 or not self.dice_weight >= 0:
            raise VosLabError("online adaptation: lr must be > 0 and dice_weight >= 0")

    @classmethod
    def from_profile(cls, profile: Profile, iters: int | None = None, seed: int = 0) -> AdaptConfig:
        """The profile's iterations (or `iters`), input height and U-Net width."""
        if iters is not None and iters < 1:
            raise VosLabError(f"--adapt-iters {iters}: expected a positive number of iterations")
        return cls(iters=iters or profile.adapt_iters, size=profile.adapt_size, width=profile.adapt_width, seed=seed)


def dice_loss(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """1 - the soft Dice coefficient 2|P G| / (|P| + |G|), per class over the batch, averaged over the classes
    (Milletari et al. 2016): logits (B, L, H, W), ids (B, H, W) long. Classes absent from both count as 1."""
    probabilities = torch.softmax(logits.float(), dim=1)
    onehot = F.one_hot(ids, logits.shape[1]).permute(0, 3, 1, 2).float()
    overlap = (probabilities * onehot).sum((0, 2, 3))
    total = probabilities.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    return (1.0 - (2.0 * overlap + 1.0) / (total + 1.0)).mean()


def adaptation_loss(logits: torch.Tensor, ids: torch.Tensor, dice_weight: float = 1.0) -> torch.Tensor:
    """Pixel-wise cross-entropy + `dice_weight` x Dice of logits (B, L, H, W) against pseudo labels (B, H, W)."""
    return F.cross_entropy(logits.float(), ids) + dice_weight * dice_loss(logits, ids)


def resize_inputs(frames: np.ndarray, size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 RGB frames (T, H, W, 3) -> the U-Net's input (T, 3, size, W x size / H), ImageNet-normalised."""
    h, w = frames.shape[1:3]
    return torch.cat([F.interpolate(to_input(frame, "rgb", device), size=(size, round(w * size / h)),
                                    mode="bilinear", align_corners=False, antialias=True) for frame in frames])


def resize_ids(ids: np.ndarray | torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Id maps (T, H, W) -> (T, *size) long, nearest neighbour."""
    ids = torch.as_tensor(np.asarray(ids)).long()
    return F.interpolate(ids[:, None].float(), size=size, mode="nearest")[:, 0].long()


@dataclass
class FitResult:
    """The trained U-Net, the loss of every iteration, and {iteration: predicted ids (N, h, w)} snapshots."""

    net: UNet
    losses: list[float]
    snapshots: dict[int, torch.Tensor]


def fit_unet(inputs: torch.Tensor, labels: torch.Tensor, classes: int, config: AdaptConfig,
             snapshots: Collection[int] = (), progress: bool = True, desc: str = "adapt") -> FitResult:
    """Train a U-Net from scratch (seeded by `config.seed`) on `inputs` (N, 3, h, w) with labels (N, h, w) on
    the inputs' device: `config.iters` Adam steps on batches of frames drawn uniformly, each flipped left-right
    with probability 1/2. `snapshots`: iterations (after that many steps; 0 = untrained) whose predictions on
    all inputs are kept."""
    device = inputs.device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)
        net = UNet(inputs.shape[1], classes, config.width, config.depth).to(device)
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    losses, kept = [], {}
    labels = labels.to(device)
    for step in tqdm(range(config.iters + 1), disable=not progress, desc=desc, unit="iter", leave=False):
        if step in snapshots:
            kept[step] = predict(net, inputs).argmax(1).cpu()
        if step == config.iters:
            break
        net.train()
        pick = torch.randint(len(inputs), (min(config.batch_size, len(inputs)),), generator=generator)
        flip = torch.rand(len(pick), generator=generator) < 0.5
        x, y = inputs[pick], labels[pick]
        x, y = torch.where(flip.to(device)[:, None, None, None], x.flip(-1), x), torch.where(
            flip.to(device)[:, None, None], y.flip(-1), y)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = adaptation_loss(net(x), y, config.dice_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return FitResult(net.eval(), losses, kept)


@torch.no_grad()
def predict(net: UNet, inputs: torch.Tensor, chunk: int = 8) -> torch.Tensor:
    """The U-Net's logits (N, L, h, w) in eval mode, `chunk` frames at a time."""
    net.eval()
    return torch.cat([net(inputs[i: i + chunk]).float() for i in range(0, len(inputs), chunk)])


def adapt_video(frames: np.ndarray, pseudo_ids: np.ndarray, config: AdaptConfig,
                device: torch.device | str = "cpu", progress: bool = True, desc: str = "adapt") -> np.ndarray:
    """Online adaptation of one video: frames (T, H, W, 3) uint8 and the propagated id maps (T, H, W), frame 0
    the given annotation -> the U-Net's id maps (T, H, W) uint8 at full size, frame 0 kept as given."""
    device = torch.device(device)
    classes = int(pseudo_ids[0].max()) + 1
    inputs = resize_inputs(frames, config.size, device)
    if int(pseudo_ids.max()) >= classes:
        raise VosLabError(f"pseudo labels hold id {int(pseudo_ids.max())}, frame 0 only {classes - 1} objects")
    labels = resize_ids(pseudo_ids, inputs.shape[-2:])
    fit = fit_unet(inputs, labels, classes, config, progress=progress, desc=desc)
    out = np.empty(pseudo_ids.shape, dtype=np.uint8)
    out[0] = pseudo_ids[0]
    for start in range(1, len(frames), 8):
        logits = predict(fit.net, inputs[start: start + 8])
        full = F.interpolate(logits, size=pseudo_ids.shape[1:], mode="bilinear", align_corners=False)
        out[start: start + len(full)] = full.argmax(1).to(torch.uint8).cpu().numpy()
    return out
