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



# ------------------------------------------------- attention, learned features, training curves, context memory
def attention_schematic(scores: np.ndarray, cell: tuple[int, int], radius: int, topk: int, temperature: float = 0.1,
                        title: str = "What one target cell reads from a reference frame"):
    """Dense vs windowed attention: `scores` (h, w) are one target cell's affinities to every reference cell and
    `cell` = (y, x) its own position. Panels: dense attention reads all h w cells; the window reads the
    (2 radius + 1)^2 cells around the same position (fewer at the border: outside the frame there is nothing);
    the protocol then keeps the `topk` best of the window (black circles, as large as their softmax(score /
    temperature) weights, which the title lists)."""
    scores = np.asarray(scores, dtype=float)
    h, w = scores.shape
    ys, xs = np.mgrid[:h, :w]
    window = (np.abs(ys - cell[0]) <= radius) & (np.abs(xs - cell[1]) <= radius)
    best = np.argsort(np.where(window, scores, -np.inf), axis=None, kind="stable")[::-1][:topk]
    kept = np.zeros(h * w, dtype=bool)
    kept[best] = True
    kept = kept.reshape(h, w)
    weights = np.exp((scores[kept] - scores[kept].max()) / temperature)
    weights /= weights.sum()
    panels = [(np.ones_like(window), f"dense: all {h * w} cells"),
              (window, f"window, radius {radius}: {int(window.sum())} cells"),
              (window, f"top-{topk} of the window: {int(kept.sum())} cells")]
    fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.4 * h / w + 1.4), squeeze=False)
    for ax, (read, name) in zip(axes[0], panels, strict=True):
        ax.imshow(np.ma.masked_where(~read, scores), cmap="viridis", vmin=scores.min(), vmax=scores.max())
        ax.set_facecolor("0.85")  # cells not read
        ax.plot([cell[1]], [cell[0]], "r+", markersize=12, markeredgewidth=2)
        ax.set(title=name, xlabel="x (reference cells)", ylabel="y (reference cells)", xlim=(-0.5, w - 0.5),
               ylim=(h - 0.5, -0.5))
    for ax in axes[0, 1:]:
        ax.add_patch(plt.Rectangle((cell[1] - radius - 0.5, cell[0] - radius - 0.5), 2 * radius + 1, 2 * radius + 1,
                                   fill=False, edgecolor="r", linewidth=1.2, clip_on=True))
    axes[0, 2].images[0].set_alpha(0.35)
    best_y, best_x = np.nonzero(kept)
    axes[0, 2].scatter(best_x, best_y, s=30 + 400 * weights, facecolors="none", edgecolors="k", linewidths=1.5)
    axes[0, 2].set_title(f"{panels[2][1]}\nweights " + " ".join(f"{v:.2f}" for v in sorted(weights)[::-1]))
    fig.suptitle(f"{title}\n(red +: the target cell's own position; colour: affinity; grey: not read)")
    return fig


def _principal_components(features) -> tuple[np.ndarray, np.ndarray]:
    """Features (C, h, w) -> their projections (h w, 3) on the 3 principal directions (largest variance first,
    each signed so that its largest loading is positive; zeros where C < 3) and the variance ratio of each."""
    x = np.asarray(features.detach().cpu() if hasattr(features, "detach") else features, dtype=np.float64)
    flat = x.reshape(x.shape[0], -1).T
    flat = flat - flat.mean(0)
    _, singular, directions = np.linalg.svd(flat, full_matrices=False)
    directions = directions[:3]
    directions = directions * np.sign(directions[np.arange(len(directions)), np.abs(directions).argmax(1)])[:, None]
    projected = np.zeros((len(flat), 3))
    projected[:, : len(directions)] = flat @ directions.T
    variance = singular**2
    ratio = np.zeros(3)
    ratio[: len(directions)] = variance[:3] / max(variance.sum(), 1e-12)
    return projected, ratio


def feature_pca_rgb(features) -> np.ndarray:
    """Features (C, h, w) -> an RGB image (h, w, 3) in [0, 1]: red, green and blue are the projections on the
    first, second and third principal directions of the h w feature vectors (largest variance first), each
    stretched from its 1st to its 99th percentile. Cells with similar features get similar colours."""
    projected, _ = _principal_components(features)
    low, high = np.percentile(projected, [1, 99], axis=0)
    rgb = np.clip((projected - low) / np.where(high > low, high - low, 1.0), 0, 1)
    return rgb.reshape(*np.shape(features)[1:], 3)


def feature_pca_panels(frame: np.ndarray, features: dict[str, object],
                       title: str = "Features as colours: the 3 principal components as RGB"):
    """The frame, then one panel per model: `feature_pca_rgb` of its features (C, h, w) of that frame, drawn
    over the frame's extent, with the share of the variance that the 3 components hold."""
    height, width = np.shape(frame)[:2]
    fig, axes = plt.subplots(1, len(features) + 1, figsize=(2.6 * (len(features) + 1), 2.6 * height / width + 0.9),
                             squeeze=False)
    image_panel(axes[0, 0], frame, "the frame", "input")
    for ax, (name, feats) in zip(axes[0, 1:], features.items(), strict=True):
        _, ratio = _principal_components(feats)
        ax.imshow(feature_pca_rgb(feats), extent=(0, width, height, 0))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(f"{np.shape(feats)[0]} channels; 3 PCs: {100 * ratio.sum():.0f}% of variance")
        ax.set_title(name)
    fig.suptitle(title)
    return fig


def loss_curves(histories: dict[str, Sequence[dict]], keys: Sequence[str] = ("loss",), smooth: int = 20, ax=None,
                title: str = "Training loss", ylabel: str = "loss"):
    """Training logs against the optimiser step: `histories` {model: the per-step logs of a TrainResult or
    checkpoint (dicts with "step" and the `keys`)}, one line per model and key, a moving average of `smooth`
    steps drawn at the last step it covers. Returns the figure."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.0))
    for name, history in histories.items():
        steps = np.array([entry["step"] for entry in history])
        for key in keys:
            values = np.array([entry[key] for entry in history], dtype=float)
            n = max(1, min(smooth, len(values)))
            label = name if len(keys) == 1 else key if len(histories) == 1 else f"{name}: {key}"
            smoothed = np.convolve(values, np.ones(n) / n, mode="valid")
            ax.plot(steps[n - 1:], smoothed, marker="o" if len(smoothed) < 5 else None, label=label)  # dots: few steps
    ax.set(xlabel="optimiser step", ylabel=ylabel,
           title=f"{title} (moving average of {smooth} steps)" if smooth > 1 else title)
    ax.legend(fontsize=8)
    return ax.figure


def validation_curves(evaluations: dict[str, Sequence[dict]], key: str = "J&F",
                      baselines: dict[str, float] | None = None, ax=None,
                      title: str = "Validation J&F during training"):
    """Periodic validation against the optimiser step: `evaluations` {model: the evaluations of a TrainResult
    or checkpoint (dicts with "step" and `key`)}, one line per model; `baselines` {name: value} as dashed
    horizontal lines (e.g. Lab pixels on the same sequences). Returns the figure."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.0))
    for name, points in evaluations.items():
        ax.plot([p["step"] for p in points], [p[key] for p in points], marker="o", label=name)
    for (name, value), colour in zip((baselines or {}).items(), ("0.4", "0.6", "0.8"), strict=False):
        ax.axhline(value, linestyle="--", color=colour, label=name)
    ax.set(xlabel="optimiser step", ylabel=key, title=title)
    ax.legend(fontsize=8)
    return ax.figure


def context_soft_labels(frames: np.ndarray, ids: np.ndarray, references: Sequence[int], target: int,
                        soft: np.ndarray, obj: int = 1, title: str | None = None):
    """The context memory and the soft labels of one target frame. Top: the frames 0..target, those in the
    context coloured (frame 0 orange, recent frames blue). Middle: each context frame with its labels `ids`
    (T, H, W) (frame 0: the annotation; later frames: predictions). Bottom: the target frame, `soft` (L, H, W)
    its label probabilities before the argmax, drawn for object `obj`, and the argmax."""
    references = list(references)
    aspect = frames.shape[1] / frames.shape[2]
    width = max(1.8 * len(references), 9.0)
    heights = [1.0, width / len(references) * aspect + 0.5, width / 3 * aspect + 0.5]  # inches, with the labels
    fig = plt.figure(figsize=(width, sum(heights) + 0.4), layout="constrained")
    top, middle, bottom = fig.subfigures(3, 1, height_ratios=heights)
    strip = top.subplots()
    colours = ["tab:orange" if i == 0 else "tab:blue" if i in references else "0.9" for i in range(target + 1)]
    colours[target] = "k"
    strip.bar(range(target + 1), 1, color=colours, edgecolor="k", width=0.9)
    strip.set(xlabel="frame", yticks=[], xlim=(-0.6, target + 0.6),
              title=f"context of frame {target}: frame 0 (orange) + the {len(references) - (0 in references)} "
                    f"most recent (blue); the target (black)")
    strip.set_xticks(range(target + 1))
    strip.tick_params(axis="x", labelsize=7)
    for ax, i in zip(middle.subplots(1, len(references), squeeze=False)[0], references, strict=True):
        image_panel(ax, overlay(frames[i], ids[i]), "annotation" if i == 0 else "prediction", f"frame {i}")
    target_ax, probability, prediction = bottom.subplots(1, 3)
    image_panel(target_ax, frames[target], "no labels yet", f"target: frame {target}")
    shown = probability.imshow(soft[obj], cmap="magma", vmin=0, vmax=1)
    probability.set(xticks=[], yticks=[], xlabel=f"P(object {obj}) per pixel", title="soft labels")
    bottom.colorbar(shown, ax=probability, fraction=0.046, label="probability")
    image_panel(prediction, overlay(frames[target], np.asarray(soft).argmax(0)), "argmax over labels", "prediction")
    fig.suptitle(title or f"Context memory and soft labels of frame {target}")
    return fig
