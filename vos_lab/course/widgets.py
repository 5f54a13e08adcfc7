"""The affinity explorer: click a pixel of the target frame, see where it points in the reference frames.

For the clicked pixel's feature cell q, the explorer shows, in each reference frame, the attention weights
softmax(cos(q, k) / tau) over every key k inside the +-radius window (one softmax over all references, as
the protocol), the top-k matches that the protocol keeps, the pixel's propagated label (the weighted sum of
the matches' labels) and the whole propagated mask of the target frame (`vos_lab.propagation`).

It works from an encoder (`vos_lab.models.encoders.FrameEncoder`) or precomputed features, so later chapters
reuse it with trained features. Handlers are plain methods (`on_click`, `on_slider`) that tests call with
fake events; `interactive()` wires them to ipympl's `button_press_event` and ipywidgets sliders (JupyterLab
4), and `static_figure(pixels)` draws the same panels for preset pixels, for papermill-rendered lectures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch

from vos_lab.course.plots import image_panel, overlay
from vos_lab.errors import VosLabError
from vos_lab.models.encoders import FrameEncoder
from vos_lab.propagation import (
    PropagationConfig,
    downsample_labels,
    ids_to_onehot,
    labels_to_ids,
    propagate_step,
)

SLIDERS = {"temperature": "temperature", "top-k": "topk", "radius": "radius"}  # slider description -> field


@dataclass(frozen=True)
class PixelView:
    """What the explorer shows for one pixel: attention maps (N, h, w) over the references, the top-k
    matches (reference frame, y, x in pixels, weight), the pixel's label distribution (L,) and the
    propagated id map of the target frame (H, W)."""

    pixel: tuple[int, int]
    cell: tuple[int, int]
    attention: np.ndarray
    matches: list[tuple[int, int, int, float]]
    label: np.ndarray
    mask: np.ndarray


class AffinityExplorer:
    """Explore the affinities of `target` (default: the last frame) to its reference frames.

    frames (T, H, W, 3) uint8; masks (T, H, W) id maps giving the reference labels (ground truth, or
    earlier predictions); features (T, C, h, w) L2-normalised, or an `encoder` to compute them.
    """

    def __init__(self, frames: np.ndarray, masks: np.ndarray, features: torch.Tensor | None = None,
                 encoder: FrameEncoder | None = None, stride: int | None = None, target: int | None = None,
                 context: int = 2, temperature: float = 0.1, topk: int = 5, radius: int | None = 12) -> None:
        if (features is None) == (encoder is None):
            raise VosLabError("AffinityExplorer needs either features or an encoder (exactly one)")
        if features is None:
            features = torch.cat([encoder.encode(frame) for frame in frames]).cpu()
            stride = encoder.stride
        if stride is None:
            raise VosLabError("AffinityExplorer: give the stride of precomputed features")
        self.frames, self.masks, self.features, self.stride = np.asarray(frames), np.asarray(masks), features, stride
        self.target = len(frames) - 1 if target is None else target
        if not 1 <= self.target < len(frames):
            raise VosLabError(f"target frame {self.target} must be between 1 and {len(frames) - 1}")
        self.references = PropagationConfig(context=context).references(self.target)
        n_labels = int(self.masks[self.references].max()) + 1
        size = features.shape[-2:]
        self.labels = torch.stack([downsample_labels(ids_to_onehot(self.masks[i], n_labels), size, stride)
                                   for i in self.references]).to(features.device)
        self.config = PropagationConfig(temperature=temperature, topk=topk, radius=radius)
        height, width = self.frames.shape[1:3]
        self.pixel = (height // 2, width // 2)
        self.fig = None
        self.axes: list = []

    # ------------------------------------------------------------------------------ computation
    def cell_of(self, y: float, x: float) -> tuple[int, int]:
        """The feature cell holding pixel (y, x) (cell i covers pixels [stride i, stride (i + 1)))."""
        h, w = self.features.shape[-2:]
        return min(max(int(y) // self.stride, 0), h - 1), min(max(int(x) // self.stride, 0), w - 1)

    def view(self, pixel: tuple[int, int] | None = None) -> PixelView:
        """Attention, top-k matches, label and propagated mask for `pixel` (default: the selected one)."""
        pixel = self.pixel if pixel is None else pixel
        cy, cx = self.cell_of(*pixel)
        keys = self.features[self.references]  # (N, C, h, w)
        n, _, h, w = keys.shape
        cos = torch.einsum("c,nchw->nhw", self.features[self.target][:, cy, cx], keys)
        radius = self.config.radius
        if radius is not None:
            ys, xs = torch.arange(h)[:, None], torch.arange(w)[None, :]
            inside = ((ys - cy).abs() <= radius) & ((xs - cx).abs() <= radius)
            cos = cos.masked_fill(~inside.to(cos.device), float("-inf"))
        flat = cos.flatten()
        attention = torch.softmax(flat / self.config.temperature, 0).view(n, h, w)
        top, index = flat.topk(min(self.config.topk, int(torch.isfinite(flat).sum())))
        weights = torch.softmax(top / self.config.temperature, 0)
        label = weights @ self.labels.permute(0, 2, 3, 1).reshape(-1, self.labels.shape[1])[index]
        matches = []
        for i, weight in zip(index.tolist(), weights.tolist(), strict=True):
            ref, rest = divmod(i, h * w)
            y, x = divmod(rest, w)
            matches.append((self.references[ref], y * self.stride + self.stride // 2,
                            x * self.stride + self.stride // 2, weight))
        return PixelView(tuple(pixel), (cy, cx), attention.cpu().numpy(), matches, label.cpu().numpy(),
                         self.propagated_mask())

    def propagated_mask(self) -> np.ndarray:
        """The target's id map propagated from the references with the current settings."""
        soft = propagate_step(self.features[self.target], self.features[self.references], self.labels, self.config)
        return labels_to_ids(soft, self.frames.shape[1:3], self.stride)

    # ------------------------------------------------------------------------------ handlers
    def select(self, y: float, x: float) -> None:
        height, width = self.frames.shape[1:3]
        self.pixel = (min(max(int(round(y)), 0), height - 1), min(max(int(round(x)), 0), width - 1))
        self.redraw()

    def set_param(self, name: str, value) -> None:
        """Change temperature, topk or radius (a negative radius means the whole frame) and redraw."""
        if name not in ("temperature", "topk", "radius"):
            raise VosLabError(f"unknown explorer setting '{name}' (temperature, topk or radius)")
        if name == "radius" and value is not None and value < 0:
            value = None
        self.config = PropagationConfig(**{**self.config.__dict__, name: value})
        self.redraw()

    def on_click(self, event) -> None:
        """matplotlib `button_press_event`: a click inside the target panel selects that pixel."""
        if self.axes and event.inaxes is self.axes[0] and event.xdata is not None and event.ydata is not None:
            self.select(event.ydata, event.xdata)

    def on_slider(self, change: dict) -> None:
        """ipywidgets `observe(..., names="value")`: the slider's description names the setting."""
        self.set_param(SLIDERS[change["owner"].description], change["new"])

    # ------------------------------------------------------------------------------ drawing
    def _draw_row(self, axes: Sequence, pixel: tuple[int, int]) -> PixelView:
        view = self.view(pixel)
        y, x = view.pixel
        for ax in axes:
            ax.clear()
        image_panel(axes[0], self.frames[self.target], f"target: frame {self.target}", "click a pixel")
        axes[0].plot([x], [y], marker="+", color="cyan", markersize=14, markeredgewidth=2)
        h, w = self.features.shape[-2:]
        extent = (0, w * self.stride, h * self.stride, 0)
        height, width = self.frames.shape[1:3]
        for k, ref in enumerate(self.references):
            ax = axes[1 + k]
            image_panel(ax, self.frames[ref], f"reference: frame {ref}", "attention")
            ax.imshow(view.attention[k], cmap="magma", alpha=0.65, extent=extent, vmin=0,
                      vmax=max(view.attention.max(), 1e-8))
            mine = [(my, mx, wt) for r, my, mx, wt in view.matches if r == ref]
            if mine:
                ax.scatter([m[1] for m in mine], [m[0] for m in mine], s=[20 + 180 * m[2] for m in mine],
                           facecolors="none", edgecolors="cyan", linewidths=1.2)
            ax.set_xlim(0, width)
            ax.set_ylim(height, 0)
        probs = ", ".join(f"{p:.2f}" for p in view.label)
        image_panel(axes[-1], overlay(self.frames[self.target], view.mask), f"label of pixel: [{probs}]",
                    "propagated mask")
        axes[-1].plot([x], [y], marker="+", color="cyan", markersize=14, markeredgewidth=2)
        return view

    def _settings(self) -> str:
        c = self.config
        return f"temperature {c.temperature:g}, top-k {c.topk}, radius {c.radius if c.radius is not None else 'all'}"

    def static_figure(self, pixels: Sequence[tuple[int, int]]):
        """The explorer's panels for preset pixels, one row each (for rendered lectures)."""
        columns = len(self.references) + 2
        fig, axes = plt.subplots(len(pixels), columns, figsize=(2.3 * columns, 2.0 * len(pixels) + 0.6),
                                 squeeze=False)
        for row, pixel in zip(axes, pixels, strict=True):
            self._draw_row(row, pixel)
        fig.suptitle(f"Affinity explorer: where pixels of frame {self.target} point ({self._settings()}); "
                     "circles = top-k, size = weight")
        return fig

    def redraw(self) -> None:
        if self.fig is None:
            return
        self._draw_row(self.axes, self.pixel)
        self.fig.suptitle(f"Affinity explorer ({self._settings()})")
        self.fig.canvas.draw_idle()

    def interactive(self):
        """The live widget for JupyterLab 4 (needs ipympl): sliders above the clickable figure."""
        import ipywidgets as widgets
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None:
            shell.run_line_magic("matplotlib", "widget")
        with plt.ioff():
            self.fig, axes = plt.subplots(1, len(self.references) + 2, figsize=(2.3 * (len(self.references) + 2), 2.6))
        self.axes = list(axes)
        self.fig.canvas.mpl_connect("button_press_event", self.on_click)
        c = self.config
        sliders = [
            widgets.FloatLogSlider(value=c.temperature, base=10, min=-3, max=0, step=0.1, description="temperature"),
            widgets.IntSlider(value=c.topk, min=1, max=50, description="top-k"),
            widgets.IntSlider(value=c.radius if c.radius is not None else -1, min=-1, max=30, description="radius"),
        ]
        for slider in sliders:
            slider.observe(self.on_slider, names="value")
        self.redraw()
        return widgets.VBox([widgets.HBox(sliders), self.fig.canvas])
