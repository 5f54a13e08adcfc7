"""Multi-crop views (DINO, Caron et al. ICCV 2021, Sec. 3.1): random resized crops of a batch of images, on its device.

Each view is a random box of the image (its area a random fraction `scale` of the image's, its aspect ratio
between 3/4 and 4/3, log-uniform, as torchvision's RandomResizedCrop) resized to a square of `size` pixels
(bilinear, `torchvision.ops.roi_align`). Large "global" views see most of the image, small "local" ones a part.
The boxes are drawn with torch's generator on the CPU, so a seeded run draws the same views on any device.
"""

from __future__ import annotations

import math

import torch
from torchvision.ops import roi_align

RATIO = (3 / 4, 4 / 3)


def random_boxes(count: int, height: int, width: int, scale: tuple[float, float],
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """`count` boxes (x0, y0, x1, y1) in pixels inside a height x width image, area fraction in `scale`."""
    area = torch.empty(count).uniform_(*scale, generator=generator) * height * width
    log_ratio = torch.empty(count).uniform_(math.log(RATIO[0]), math.log(RATIO[1]), generator=generator)
    w = (area * log_ratio.exp()).sqrt().clamp(1, width)
    h = (area / log_ratio.exp()).sqrt().clamp(1, height)
    x0 = torch.rand(count, generator=generator) * (width - w)
    y0 = torch.rand(count, generator=generator) * (height - h)
    return torch.stack([x0, y0, x0 + w, y0 + h], dim=1)


def resized_crops(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """images (N, C, H, W) and `views` boxes per image (N, V, 4) -> the crops (N, V, C, size, size)."""
    n, views = boxes.shape[:2]
    index = torch.arange(n, dtype=boxes.dtype).repeat_interleave(views)[:, None]
    rois = torch.cat([index, boxes.reshape(-1, 4)], dim=1).to(images.device, images.dtype)
    crops = roi_align(images, rois, size, spatial_scale=1.0, sampling_ratio=2, aligned=True)
    return crops.view(n, views, *crops.shape[1:])


def multi_crop(images: torch.Tensor, views: int, size: int, scale: tuple[float, float],
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`views` random resized crops of each image (N, C, H, W): (crops (N, V, C, size, size), boxes (N, V, 4))."""
    n, _, height, width = images.shape
    boxes = random_boxes(n * views, height, width, scale, generator).view(n, views, 4)
    return resized_crops(images, boxes, size), boxes
