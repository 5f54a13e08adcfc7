"""The affinity explorer: pick a pixel of the target frame, see where it points in the reference frames.

For the selected pixel's feature cell q, the explorer shows, in each reference frame, the attention weights
softmax(cos(q, k) / tau) over every key k inside the +-radius window (one softmax over all references, as
the protocol), the top-k matches that the protocol keeps, the pixel's propagated label (the weighted sum of
the matches' labels) and the whole propagated mask of the target frame (`vos_lab.propagation`).

It works from encoders (`vos_lab.models.encoders.FrameEncoder`) or precomputed features, one set or several
by name, so later chapters reuse it with trained features and compare two of them on the same pixel (one row
each). The target frame, the encoders shown, the reference masks' outlines and the protocol's settings can all
be changed. Handlers are plain methods (`on_click`, `on_control`) that tests call with fake events;
`interactive()` wires them to ipympl's `button_press_event` and ipywidgets controls (JupyterLab 4), and
`static_figure()` draws the same panels for preset pixels (object centres), for papermill-rendered lectures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
from scipy import ndimage

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

# control description -> setting (`set_param`)
CONTROLS = {"temperature": "temperature", "top-k": "topk", "radius": "radius", "target": "target",
            "encoder": "encoder", "compare with": "compare", "reference masks": "masks"}
CLICK_HINT = "Click a pixel of a target panel (left) to select it; the controls change the view."


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


def _named(value, default_name: str) -> dict:
    return dict(value) if isinstance(value, Mapping) else {default_name: value}


class AffinityExplorer:
    """Explore the affinities of `target` (default: the last frame) to its reference frames.

    frames (T, H, W, 3) uint8; masks (T, H, W) id maps giving the reference labels (ground truth, or
    earlier predictions). Either `features`, (T, C, h, w) L2-normalised with their `stride`, or `encoder`;
    each may be a dict name -> features / encoder (then `stride` may be a dict too). `compare` names a second
    set shown below the first for the same pixel; `show_masks` outlines the reference masks.
    """

    def __init__(self, frames: np.ndarray, masks: np.ndarray,
                 features: torch.Tensor | Mapping[str, torch.Tensor] | None = None,
                 encoder: FrameEncoder | Mapping[str, FrameEncoder] | None = None,
                 stride: int | Mapping[str, int] | None = None, target: int | None = None, context: int = 2,
                 temperature: float = 0.1, topk: int = 5, radius: int | None = 12, compare: str | None = None,
                 show_masks: bool = False) -> None:
        if (features is None) == (encoder is None):
            raise VosLabError("AffinityExplorer needs either features or an encoder (exactly one)")
        if features is not None:
            features = _named(features, "features")
            strides = dict(stride) if isinstance(stride, Mapping) else dict.fromkeys(features, stride)
            if any(strides.get(name) is None for name in features):
                raise VosLabError("AffinityExplorer: give the stride of precomputed features")
            self.sources = {name: (f, strides[name]) for name, f in features.items()}
        else:
            encoders = _named(encoder, getattr(encoder, "name", "") or "encoder")
            self.sources = {name: (torch.cat([e.encode(frame) for frame in frames]).cpu(), e.stride)
                            for name, e in encoders.items()}
        self.frames, self.masks = np.asarray(frames), np.asarray(masks)
        self.n_labels = int(self.masks.max()) + 1
        self.context = context
        self.config = PropagationConfig(temperature=temperature, topk=topk, radius=radius)
        self.encoder, self.compare, self.show_masks = next(iter(self.sources)), None, show_masks
        self._set_target(len(frames) - 1 if target is None else target)
        self._set_compare(compare)
        height, width = self.frames.shape[1:3]
        self.pixel = (height // 2, width // 2)
        self.fig = None
        self.axes: list[list] = []  # one row of axes per shown encoder, the target panel first

    # ------------------------------------------------------------------------------ computation
    @property
    def shown(self) -> list[str]:
        """The encoders drawn, one row each: the chosen one, then the one compared with it."""
        return [self.encoder] + ([self.compare] if self.compare not in (None, self.encoder) else [])

    def cell_of(self, y: float, x: float, encoder: str | None = None) -> tuple[int, int]:
        """The feature cell holding pixel (y, x) (cell i covers pixels [stride i, stride (i + 1)))."""
        features, stride = self.sources[encoder or self.encoder]
        h, w = features.shape[-2:]
        return min(max(int(y) // stride, 0), h - 1), min(max(int(x) // stride, 0), w - 1)

    def _labels(self, encoder: str) -> torch.Tensor:
        features, stride = self.sources[encoder]
        return torch.stack([downsample_labels(ids_to_onehot(self.masks[i], self.n_labels), features.shape[-2:],
                                              stride) for i in self.references]).to(features.device)

    def view(self, pixel: tuple[int, int] | None = None, encoder: str | None = None) -> PixelView:
        """Attention, top-k matches, label and propagated mask for `pixel` (default: the selected one) with
        `encoder`'s features (default: the chosen one)."""
        encoder = encoder or self.encoder
        pixel = self.pixel if pixel is None else pixel
        features, stride = self.sources[encoder]
        labels = self._labels(encoder)
        cy, cx = self.cell_of(*pixel, encoder=encoder)
        keys = features[self.references]  # (N, C, h, w)
        n, _, h, w = keys.shape
        cos = torch.einsum("c,nchw->nhw", features[self.target][:, cy, cx], keys)
        radius = self.config.radius
        if radius is not None:
            ys, xs = torch.arange(h)[:, None], torch.arange(w)[None, :]
            inside = ((ys - cy).abs() <= radius) & ((xs - cx).abs() <= radius)
            cos = cos.masked_fill(~inside.to(cos.device), float("-inf"))
        flat = cos.flatten()
        attention = torch.softmax(flat / self.config.temperature, 0).view(n, h, w)
        top, index = flat.topk(min(self.config.topk, int(torch.isfinite(flat).sum())))
        weights = torch.softmax(top / self.config.temperature, 0)
        label = weights @ labels.permute(0, 2, 3, 1).reshape(-1, labels.shape[1])[index]
        matches = []
        for i, weight in zip(index.tolist(), weights.tolist(), strict=True):
            ref, rest = divmod(i, h * w)
            y, x = divmod(rest, w)
            matches.append((self.references[ref], y * stride + stride // 2, x * stride + stride // 2, weight))
        return PixelView(tuple(pixel), (cy, cx), attention.cpu().numpy(), matches, label.cpu().numpy(),
                         self.propagated_mask(encoder))

    def propagated_mask(self, encoder: str | None = None) -> np.ndarray:
        """The target's id map propagated from the references with the current settings."""
        encoder = encoder or self.encoder
        features, stride = self.sources[encoder]
        soft = propagate_step(features[self.target], features[self.references], self._labels(encoder), self.config)
        return labels_to_ids(soft, self.frames.shape[1:3], stride)

    def preset_pixels(self) -> list[tuple[int, int]]:
        """Object-centred pixels of the target frame: for each object the pixel deepest inside it (farthest
        from its outline), then the background pixel farthest from every object."""
        mask = self.masks[self.target]
        pixels = []
        for k in [*(int(i) for i in np.unique(mask) if i > 0), 0]:
            depth = ndimage.distance_transform_edt(np.pad(mask == k, 1))[1:-1, 1:-1]
            if depth.max() > 0:
                y, x = np.unravel_index(int(depth.argmax()), depth.shape)
                pixels.append((int(y), int(x)))
        return pixels

    # ------------------------------------------------------------------------------ handlers
    def _set_target(self, target: int) -> None:
        if not 1 <= target < len(self.frames):
            raise VosLabError(f"target frame {target} must be between 1 and {len(self.frames) - 1}")
        self.target = int(target)
        self.references = PropagationConfig(context=self.context).references(self.target)

    def _set_compare(self, name: str | None) -> None:
        if name and name not in self.sources:
            raise VosLabError(f"unknown encoder '{name}' (have {', '.join(self.sources)})")
        self.compare = name or None

    def select(self, y: float, x: float) -> None:
        height, width = self.frames.shape[1:3]
        self.pixel = (min(max(int(round(y)), 0), height - 1), min(max(int(round(x)), 0), width - 1))
        self.redraw()

    def set_param(self, name: str, value) -> None:
        """Change a setting and redraw: temperature, topk or radius (a negative radius means the whole frame),
        target (frame index), encoder or compare (a name; compare None or "" for none), masks (outlines)."""
        if name == "radius" and value is not None and value < 0:
            value = None
        if name in ("temperature", "topk", "radius"):
            self.config = PropagationConfig(**{**self.config.__dict__, name: value})
        elif name == "target":
            self._set_target(value)
        elif name == "encoder":
            if value not in self.sources:
                raise VosLabError(f"unknown encoder '{value}' (have {', '.join(self.sources)})")
            self.encoder = value
        elif name == "compare":
            self._set_compare(value)
        elif name == "masks":
            self.show_masks = bool(value)
        else:
            raise VosLabError(f"unknown explorer setting '{name}' (temperature, topk, radius, target, encoder, "
                              "compare or masks)")
        self.redraw()

    def on_click(self, event) -> None:
        """matplotlib `button_press_event`: a click inside a target panel selects that pixel."""
        targets = [row[0] for row in self.axes]
        if event.inaxes is not None and any(event.inaxes is ax for ax in targets) and event.xdata is not None \
                and event.ydata is not None:
            self.select(event.ydata, event.xdata)

    def on_control(self, change: dict) -> None:
        """ipywidgets `observe(..., names="value")`: the control's description names the setting."""
        self.set_param(CONTROLS[change["owner"].description], change["new"])

    # ------------------------------------------------------------------------------ drawing
    def _draw_row(self, axes: Sequence, pixel: tuple[int, int], encoder: str, hint: str) -> PixelView:
        view = self.view(pixel, encoder)
        y, x = view.pixel
        for ax in axes:
            ax.clear()
        image_panel(axes[0], self.frames[self.target], f"target frame {self.target}", hint)
        if len(self.sources) > 1:
            axes[0].set_ylabel(encoder)  # names the row
        axes[0].plot([x], [y], marker="+", color="cyan", markersize=14, markeredgewidth=2)
        features, stride = self.sources[encoder]
        h, w = features.shape[-2:]
        extent = (0, w * stride, h * stride, 0)
        height, width = self.frames.shape[1:3]
        for k, ref in enumerate(self.references):
            ax = axes[1 + k]
            image_panel(ax, self.frames[ref], f"reference frame {ref}", "attention")
            ax.imshow(view.attention[k], cmap="magma", alpha=0.65, extent=extent, vmin=0,
                      vmax=max(view.attention.max(), 1e-8))
            if self.show_masks and self.masks[ref].max() > 0:
                ax.contour(self.masks[ref], levels=np.arange(self.n_labels - 1) + 0.5, colors="lime",
                           linewidths=0.8)
            mine = [(my, mx, wt) for r, my, mx, wt in view.matches if r == ref]
            if mine:
                ax.scatter([m[1] for m in mine], [m[0] for m in mine], s=[20 + 180 * m[2] for m in mine],
                           facecolors="none", edgecolors="cyan", linewidths=1.2)
            ax.set_xlim(0, width)
            ax.set_ylim(height, 0)
        probs = " ".join(f"{p:.2f}" for p in view.label)
        image_panel(axes[-1], overlay(self.frames[self.target], view.mask), f"pixel's label {probs}",
                    "propagated mask")
        axes[-1].xaxis.label.set_fontsize("small")
        axes[-1].plot([x], [y], marker="+", color="cyan", markersize=14, markeredgewidth=2)
        return view

    def _settings(self) -> str:
        c = self.config
        return f"temperature {c.temperature:g}, top-k {c.topk}, radius {c.radius if c.radius is not None else 'all'}"

    def _grid(self, fig, rows: int, inches: float = 2.3) -> list[list]:
        """A fresh grid of axes on `fig`: `rows` rows of target, references and propagated mask, panels
        `inches` wide."""
        fig.clear()
        columns = len(self.references) + 2
        fig.set_size_inches(inches * columns, 0.87 * inches * rows + 0.6, forward=True)
        return [list(row) for row in fig.subplots(rows, columns, squeeze=False)]

    def static_figure(self, pixels: Sequence[tuple[int, int]] | None = None, encoders: Sequence[str] | None = None):
        """The explorer's panels for preset pixels (default: `preset_pixels()`), one row per pixel and encoder
        (default: the shown ones; chapter 7 draws all of them), for rendered lectures."""
        pixels = self.preset_pixels() if pixels is None else pixels
        encoders = self.shown if encoders is None else list(encoders)
        unknown = [name for name in encoders if name not in self.sources]
        if unknown:
            raise VosLabError(f"unknown encoder(s) {', '.join(unknown)} (have {', '.join(self.sources)})")
        fig = plt.figure()
        rows = self._grid(fig, len(pixels) * len(encoders))
        for i, (pixel, encoder) in enumerate((p, e) for p in pixels for e in encoders):
            self._draw_row(rows[i], pixel, encoder, f"preset pixel {tuple(pixel)}")
        fig.suptitle(f"Affinity explorer: where pixels of frame {self.target} point ({self._settings()}); "
                     "circles = top-k, size = weight")
        fig.tight_layout()
        return fig

    def attach(self, fig) -> None:
        """Draw the live view on `fig` (a figure whose canvas delivers `button_press_event`)."""
        self.fig = fig
        fig.canvas.mpl_connect("button_press_event", self.on_click)
        self.redraw()

    def redraw(self) -> None:
        if self.fig is None:
            return
        columns = len(self.references) + 2
        if len(self.axes) != len(self.shown) or any(len(row) != columns for row in self.axes):
            self.axes = self._grid(self.fig, len(self.shown), inches=1.9)  # fits JupyterLab's notebook width
        for row, encoder in zip(self.axes, self.shown, strict=True):
            self._draw_row(row, self.pixel, encoder, "click a pixel")
        self.fig.suptitle(f"Affinity explorer, frame {self.target} ({self._settings()})")
        self.fig.canvas.draw_idle()

    def controls(self) -> list:
        """The ipywidgets controls, each observed by `on_control`: the protocol's sliders, then the target
        frame, the reference masks and (with several encoders) the encoder and the one compared with it."""
        import ipywidgets as widgets

        c = self.config
        common = {"style": {"description_width": "initial"}}  # full descriptions
        slider = {**common, "continuous_update": False}  # a redraw on release, not at every step of a drag
        found = [
            widgets.FloatLogSlider(value=c.temperature, base=10, min=-3, max=0, step=0.1, description="temperature",
                                   **slider),
            widgets.IntSlider(value=c.topk, min=1, max=50, description="top-k", **slider),
            widgets.IntSlider(value=c.radius if c.radius is not None else -1, min=-1, max=30, description="radius",
                              **slider),
            widgets.IntSlider(value=self.target, min=1, max=len(self.frames) - 1, description="target", **slider),
            widgets.Checkbox(value=self.show_masks, description="reference masks", **common),
        ]
        if len(self.sources) > 1:
            names = list(self.sources)
            found += [widgets.Dropdown(options=names, value=self.encoder, description="encoder", **common),
                      widgets.Dropdown(options=[("none", ""), *((n, n) for n in names)], value=self.compare or "",
                                       description="compare with", **common)]
        for control in found:
            control.observe(self.on_control, names="value")
        return found

    def interactive(self):
        """The live widget for JupyterLab 4 (needs ipympl): controls above the clickable figure."""
        import ipywidgets as widgets
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None:
            if "inline" in plt.get_backend():
                plt.show()  # the cell's static figures, before the backend changes (they would not be shown)
            shell.run_line_magic("matplotlib", "widget")
        with plt.ioff():
            fig = plt.figure()
        fig.canvas.header_visible = False
        fig.canvas.toolbar_visible = False  # no pan/zoom mode that would take the clicks
        self.attach(fig)
        controls = self.controls()
        return widgets.VBox([widgets.HTML(CLICK_HINT), widgets.HBox(controls[:3]), widgets.HBox(controls[3:]),
                             fig.canvas])
