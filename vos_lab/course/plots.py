"""The course's figures: mask overlays over time and J&F-against-a-parameter curves.

Every figure has a title and labelled axes; image panels name their frame on the x axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

from vos_lab.data.davis import davis_palette


def overlay(frame: np.ndarray, ids: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """An RGB frame (H, W, 3) uint8 with the objects of an id map (H, W) tinted in DAVIS palette colours."""
    colours = davis_palette()[np.asarray(ids)].astype(np.float32)
    frame = np.asarray(frame, dtype=np.float32)
    tinted = np.where((np.asarray(ids) > 0)[..., None], (1 - alpha) * frame + alpha * colours, frame)
    return tinted.round().astype(np.uint8)


def image_panel(ax, image: np.ndarray, label: str, title: str | None = None) -> None:
    """Show an image without ticks, its name as the x label."""
    ax.imshow(image)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(label)
    if title:
        ax.set_title(title)


def masks_over_time(frames: np.ndarray, rows: dict[str, np.ndarray], times: Sequence[int] | None = None,
                    title: str = "Masks over time", columns: int = 5):
    """One row per mask sequence (e.g. {"ground truth": gt, "lab": pred}), one column per chosen frame."""
    times = list(times) if times is not None else np.linspace(0, len(frames) - 1, columns).round().astype(int)
    fig, axes = plt.subplots(len(rows), len(times), figsize=(1.9 * len(times), 1.5 * len(rows) + 0.5),
                             squeeze=False)
    for r, (name, masks) in enumerate(rows.items()):
        for c, t in enumerate(times):
            image_panel(axes[r, c], overlay(frames[t], masks[t]), f"frame {t}")
        axes[r, 0].set_ylabel(name)
    fig.suptitle(title)
    return fig


def frames_strip(frames: np.ndarray, times: Sequence[int], title: str):
    """A row of frames, e.g. a real clip over time."""
    fig, axes = plt.subplots(1, len(times), figsize=(1.9 * len(times), 1.8), squeeze=False)
    for ax, t in zip(axes[0], times, strict=True):
        image_panel(ax, frames[t], f"frame {t}")
    fig.suptitle(title)
    return fig


def sweep_curves(values: Sequence, scores: dict[str, Sequence[float]], parameter: str, ax=None,
                 title: str | None = None, log: bool = False, ylabel: str = "J&F"):
    """J&F (or any score) against one parameter, one line per method."""
    if ax is None:
        _, ax = plt.subplots(figsize=(3.6, 2.8))
    for name, ys in scores.items():
        ax.plot(list(values), list(ys), marker="o", label=name)
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(parameter)
    ax.set_ylabel(ylabel)
    ax.set_title(title or f"{ylabel} against {parameter}")
    if len(scores) > 1:
        ax.legend(fontsize=8)
    return ax


def sweep_grid(sweeps: dict[str, tuple[Sequence, dict[str, Sequence[float]]]], title: str, log: Sequence[str] = ()):
    """Several sweeps side by side: {parameter: (values, {method: scores})}."""
    fig, axes = plt.subplots(1, len(sweeps), figsize=(3.3 * len(sweeps), 2.9), squeeze=False)
    for ax, (parameter, (values, scores)) in zip(axes[0], sweeps.items(), strict=True):
        sweep_curves(values, scores, parameter, ax=ax, log=parameter in log)
    fig.suptitle(title)
    return fig


def score_bars(scores: dict[str, float], title: str, ylabel: str = "J&F"):
    """One bar per method, its value written on top."""
    fig, ax = plt.subplots(figsize=(1.2 * len(scores) + 1.5, 2.8))
    bars = ax.bar(list(scores), list(scores.values()), color="tab:blue")
    ax.bar_label(bars, fmt="%.3f", fontsize=8)
    ax.set_xlabel("method")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    return fig


def curves_over_time(series: dict[str, np.ndarray], title: str, ylabel: str):
    """Per-frame curves (e.g. J per frame of each object, or object areas) against the frame index."""
    fig, ax = plt.subplots(figsize=(5.5, 2.8))
    for name, ys in series.items():
        ax.plot(np.arange(len(ys)), ys, label=name)
    ax.set_xlabel("frame")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return fig


def corrflow_schematic():
    """CorrFlow's training on a triplet: the recursion t0 -> t1 -> t2 (scheduled sampling at the second
    step) and the cycle t2 -> t1 -> t0, with frames as boxes."""
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    xs = {0: 0.0, 1: 3.0, 2: 6.0}
    for t, x in xs.items():
        ax.add_patch(plt.Rectangle((x - 0.6, -0.6), 1.2, 1.2, fill=True, color="0.9", ec="k"))
        ax.text(x, 0, f"$I_{t}$", ha="center", va="center", fontsize=14)
    forward = [(0, 1, r"$\hat c_1 = A(I_1 \leftarrow I_0)\,c_0$"),
               (1, 2, "$\\hat c_2 = A(I_2 \\leftarrow I_1)\\,\\tilde c_1$\n$\\tilde c_1 = c_1$ (prob. $\\varepsilon$) "
                      "else $\\hat c_1$")]
    for s, t, label in forward:
        ax.annotate("", (xs[t] - 0.65, 0.25), (xs[s] + 0.65, 0.25), arrowprops={"arrowstyle": "->", "color": "C0"})
        ax.text((xs[s] + xs[t]) / 2, 0.55, label, ha="center", va="bottom", color="C0", fontsize=9)
    for s, t in ((2, 1), (1, 0)):
        ax.annotate("", (xs[t] + 0.65, -0.25), (xs[s] - 0.65, -0.25), arrowprops={"arrowstyle": "->", "color": "C3"})
    ax.text(3.0, -1.0, r"cycle: $\hat c_0 = A(I_0 \leftarrow I_1)\,A(I_1 \leftarrow I_2)\,\hat c_2$, "
                       r"loss $0.1\,\mathrm{CE}(\hat c_0, c_0)$", ha="center", va="top", color="C3", fontsize=9)
    ax.set(xlim=(-1, 7), ylim=(-1.6, 1.6), xlabel="frame of the triplet (time)", ylabel="forward (top) / back (bottom)",
           title="CorrFlow: recursion with scheduled sampling, then the cycle back to frame 0",
           xticks=list(xs.values()), xticklabels=[f"t{t}" for t in xs], yticks=[])
    return fig


def memory_timeline(references: dict[int, Sequence[int]], long_term: Sequence[int], title: str):
    """A frames x targets grid: which frames each target t reads (`references[t]`), long-term frames
    (`long_term`) in one colour, the short-term ones in another."""
    targets = sorted(references)
    grid = np.zeros((max(targets) + 1, len(targets)))
    for j, t in enumerate(targets):
        for i in references[t]:
            grid[i, j] = 2 if i in long_term else 1
    fig, ax = plt.subplots(figsize=(0.45 * len(targets) + 2, 0.3 * max(targets) + 2))
    ax.imshow(grid, cmap=plt.matplotlib.colors.ListedColormap(["white", "tab:blue", "tab:orange"]), vmin=0, vmax=2,
              origin="lower", aspect="auto")
    ax.plot(range(len(targets)), targets, "kx", label="the target itself")
    ax.set(xticks=range(len(targets)), xticklabels=targets, yticks=range(max(targets) + 1), xlabel="target frame t",
           ylabel="frame read (memory)", title=title)
    ax.legend(handles=[plt.matplotlib.patches.Patch(color="tab:orange", label="long-term"),
                       plt.matplotlib.patches.Patch(color="tab:blue", label="short-term"), *ax.get_lines()],
              loc="upper left", fontsize=8)
    return fig


def pointer_schematic(palette: np.ndarray, classes: Sequence[int], weights: Sequence[float],
                      title: str = "The colourisation pointer for one target pixel"):
    """The pointer/copy mechanism: reference pixels in the colours of their classes (`palette` (K, 3) in 0..1),
    arrows to one gray target pixel as wide as their attention `weights` (summing to 1), and the copied colour
    distribution: each class gets the summed weight of the references of that class."""
    classes, weights = np.asarray(classes), np.asarray(weights, dtype=float)
    n, target_y = len(classes), (len(classes) - 1) / 2
    fig, (ax, bars) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [3, 2]},
                                   layout="constrained")
    for y, cls, weight in zip(range(n - 1, -1, -1), classes, weights, strict=True):  # reference 0 on top
        ax.add_patch(plt.Rectangle((0, y - 0.35), 0.7, 0.7, facecolor=palette[cls], edgecolor="k"))
        ax.annotate("", xy=(3.0, target_y), xytext=(0.75, y),
                    arrowprops={"arrowstyle": "-|>", "lw": 0.5 + 14 * weight, "color": "tab:blue", "alpha": 0.6})
        ax.text(0.8, y + 0.12 * (target_y - y) + 0.2, f"{weight:.2f}", fontsize=8)
    ax.add_patch(plt.Rectangle((3.05, target_y - 0.35), 0.7, 0.7, facecolor="0.6", edgecolor="k"))
    ax.text(3.4, target_y - 0.6, "target j\n(gray: colour unknown)", ha="center", va="top", fontsize=8)
    ax.set(xlim=(-0.3, 4.3), ylim=(-1.3, n - 0.3), title="Attention weights $A_{ij}$ (arrow width)",
           xlabel="reference pixels i (left) point to target pixel j (right)", ylabel="reference pixel i")
    ax.set_xticks([])
    ax.set_yticks(range(n - 1, -1, -1), [f"i={i}: class {c}" for i, c in enumerate(classes)], fontsize=8)
    copied = np.bincount(classes, weights, minlength=len(palette))
    bars.bar(range(len(palette)), copied, color=palette, edgecolor="k")
    bars.set_xticks(range(len(palette)))
    bars.tick_params(axis="x", labelsize=7)
    bars.set(title=r"Copied distribution $\hat c_j = \sum_i A_{ij}\,\mathrm{onehot}(c_i)$", xlabel="colour class",
             ylabel="probability", ylim=(0, 1))
    fig.suptitle(title)
    return fig
