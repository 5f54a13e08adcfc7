"""A Vision Transformer with patch size 8 (timm's `VisionTransformer`, never pretrained), read token by token.

Dosovitskiy et al. (ICLR 2021) cut an image into 8x8-pixel patches, embed each as a token, prepend a class
token, add position embeddings and run transformer blocks; the patch tokens of a block are then a feature map
of stride 8, like the course's CNNs, so label propagation reads them the same way (DINO, Caron et al. ICCV 2021,
Sec. 4.2; INO, Pan et al. ACM MM 2022, Sec. 4). `ViT` wraps timm's network with what self-distillation needs:
a learned mask token that replaces masked patches before the position embedding (iBOT, Zhou et al. ICLR 2022),
the tokens of any block (with the final LayerNorm, as DINO's `get_intermediate_layers`), and the attention
maps of a block. Position embeddings are resampled to every input size (`dynamic_img_size`), and inputs are
padded on the right and bottom to a multiple of 8 (`dynamic_img_pad`), so a 854x480 frame gives 107x60 tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from vos_lab.errors import VosLabError

PATCH = 8  # pixels per patch side: the feature stride of the course


class ViT(nn.Module):
    """timm's ViT/8 (no classifier) plus a mask token; `img_size` sizes the learned position-embedding grid."""

    def __init__(self, width: int = 384, depth: int = 12, heads: int = 6, img_size: int = 224,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        if width % heads:
            raise VosLabError(f"ViT width {width} is not a multiple of its {heads} heads")
        self.vit = VisionTransformer(img_size=img_size, patch_size=PATCH, num_classes=0, embed_dim=width, depth=depth,
                                     num_heads=heads, qkv_bias=True, drop_path_rate=drop_path, dynamic_img_size=True,
                                     dynamic_img_pad=True)
        self.mask_token = nn.Parameter(torch.zeros(width))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.width, self.depth, self.heads = width, depth, heads

    def embed(self, images: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Images (B, 3, H, W) -> tokens (B, 1 + h w, D): class token first; the patches where `mask` (B, h, w)
        is True are replaced by the mask token before the position embedding is added."""
        x = self.vit.patch_embed(images)  # (B, h, w, D)
        if mask is not None:
            x = torch.where(mask[..., None], self.mask_token.to(x.dtype), x)
        return self.vit.norm_pre(self.vit.patch_drop(self.vit._pos_embed(x)))

    def check_block(self, block: int) -> int:
        if not 1 <= block <= self.depth:
            raise VosLabError(f"block {block} is out of range: this ViT has blocks 1 to {self.depth}")
        return block

    def forward(self, images: torch.Tensor, mask: torch.Tensor | None = None, block: int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(class token (B, D), patch tokens (B, h, w, D)) after `block` (1 = the first; None = the last),
        with the final LayerNorm."""
        h, w = grid_size(images.shape[-2:])
        x = self.embed(images, mask)
        for layer in self.vit.blocks[: self.check_block(block or self.depth)]:
            x = layer(x)
        x = self.vit.norm(x)
        return x[:, 0], x[:, 1:].reshape(x.shape[0], h, w, -1)

    @torch.no_grad()
    def attention(self, images: torch.Tensor, block: int | None = None) -> torch.Tensor:
        """The attention weights (B, heads, 1 + h w, 1 + h w) of `block` (None: the last): softmax(q k^T / sqrt(d))
        per head, computed from the block's own projections."""
        block = self.check_block(block or self.depth)
        x = self.embed(images)
        for layer in self.vit.blocks[: block - 1]:
            x = layer(x)
        attn = self.vit.blocks[block - 1].attn
        b, n, _ = x.shape
        qkv = attn.qkv(self.vit.blocks[block - 1].norm1(x)).reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])
        return torch.softmax(q @ k.transpose(-2, -1) * attn.scale, dim=-1)


def grid_size(size: tuple[int, int]) -> tuple[int, int]:
    """Tokens per column and row of an H x W input: ceil(H / 8), ceil(W / 8) (the input is padded)."""
    return -(-size[0] // PATCH), -(-size[1] // PATCH)


class BlockFeatures(nn.Module):
    """A test-time trunk: images (B, 3, H, W) -> the patch tokens of one block as a map (B, D, H/stride,
    W/stride). `stride` 8: the images as they are; 16: resized to half their size first (bilinear, antialiased),
    4x fewer tokens and about 10x less attention (what makes 480p affordable on a CPU)."""

    def __init__(self, vit: ViT, block: int, stride: int = PATCH) -> None:
        super().__init__()
        if stride % PATCH:
            raise VosLabError(f"a ViT/8's feature stride is a multiple of {PATCH}, got {stride}")
        self.vit, self.block, self.stride = vit, vit.check_block(block), stride

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.stride != PATCH:
            size = [-(-side * PATCH // self.stride) for side in images.shape[-2:]]  # ceil: every pixel is covered
            images = F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False)
        return self.vit(images, block=self.block)[1].permute(0, 3, 1, 2)
