# %% [markdown]
# # Chapter 1: Correspondence and label propagation
#
# Every method of this course segments a video the same way: compute a feature vector for every patch
# of every frame, and give each patch of a new frame the labels of the patches it resembles in frames
# already segmented. Only the features change from chapter to chapter. Here we build that *label
# propagation* from scratch and measure it with features that learned nothing.
#
# **Learning goals**
# - compute an affinity matrix between two frames and turn it into attention with a softmax temperature;
# - restrict it with a spatial radius and a top-k, and read labels through it;
# - propagate through a whole video with a context memory (first frame + recent frames, soft labels);
# - measure baselines (raw RGB, raw Lab, a random CNN) and how J&F depends on each setting;
# - explore affinities pixel by pixel with the affinity explorer.

# %% tags=["parameters"]
PROFILE = None  # "smoke", "cpu" or "gpu"; None: $VOS_LAB_PROFILE, else "cpu"
SEED = 0  # seed of every random generator
DATA_ROOT = None  # a DAVIS folder; None: $VOS_LAB_DATA, else ../shared/data/davis2016-dev when present
DEVICE = "auto"  # "auto", "cpu" or "cuda"
INTERACTIVE = False  # True in JupyterLab for the live explorer; False draws static figures only
PROFILE_SET = {}  # profile fields to override, e.g. {"train_steps": 400} (lectures --set)

# %% [markdown]
# ## Setup

# %%
# %matplotlib inline
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display

from vos_lab.course import exercises, plots
from vos_lab.course.notebook import (
    changes_table,
    davis_sequences,
    encode_video,
    iter_davis_predictions,
    jf_scores,
    propagate_features,
    setup,
    show_markdown,
)
from vos_lab.course.widgets import AffinityExplorer
from vos_lab.data.synthetic import generate_video, sequence_seed
from vos_lab.features import build_encoder
from vos_lab.models.encoders import BASELINES
from vos_lab.propagation import (
    PropagationConfig,
    dense_propagation,
    downsample_labels,
    ids_to_onehot,
    labels_to_ids,
    propagate_step,
    upsample_labels,
    windowed_propagation,
)

lab = setup(globals())
P = lab.profile
print(lab)

# %% [markdown]
# Synthetic videos from the profile (3 objects each, exact masks):

# %%
videos = {f"synth-{i}": generate_video(sequence_seed(SEED, i), frames=P.synthetic_frames,
                                       height=P.synthetic_height, width=P.synthetic_width, objects=3)
          for i in range(P.synthetic_sequences)}
video = videos["synth-0"]
T = len(video.frames)
print(f"{len(videos)} videos x {T} frames of {P.synthetic_height}x{P.synthetic_width}")

# %% [markdown]
# ## 1. Features and affinity
# An *encoder* maps a frame $(H, W, 3)$ to features $(C, h, w)$ with stride 8: one vector per 8x8
# patch, L2-normalised. Our first encoder learns nothing: it averages the Lab colour of each patch.
# The affinity between a query patch $q$ of frame $t$ and a key patch $k$ of frame $0$ is their cosine
# $A_{qk} = \langle f_t(q), f_0(k) \rangle$.

# %%
encoder = build_encoder("lab", lab.device)
feats = encode_video(encoder, video.frames).cpu()  # (T, C, h, w)
C, h, w = feats.shape[1:]
A = feats[T - 1].flatten(1).T @ feats[0].flatten(1)  # (h w, h w): every query patch against every key patch
print(f"features {tuple(feats.shape)}, affinity {tuple(A.shape)}, cosines in [{A.min():.2f}, {A.max():.2f}]")

# %% [markdown]
# Pick a patch on object 1 in the last frame and look at its row of $A$ over frame 0:

# %%
ys, xs = np.nonzero(video.masks[T - 1] == 1)
py, px = int(np.median(ys)), int(np.median(xs))
q = (py // 8) * w + px // 8
fig, axes = plt.subplots(1, 2, figsize=(7, 2.6))
plots.image_panel(axes[0], video.frames[T - 1], f"frame {T - 1}, query (+) at y={py}, x={px}", "query")
axes[0].plot([px], [py], "c+", markersize=14, markeredgewidth=2)
plots.image_panel(axes[1], video.frames[0], "frame 0, cosine of every patch", "affinity row")
axes[1].imshow(A[q].view(h, w), cmap="magma", alpha=0.7, extent=(0, w * 8, h * 8, 0))
fig.suptitle("Raw Lab affinity of one patch");

# %% [markdown]
# ## 2. Softmax temperature
# Attention weights are $w_{qk} = \mathrm{softmax}_k(A_{qk} / \tau)$. A small temperature $\tau$
# concentrates the mass on the best matches; a large one spreads it. The *effective number* of matches
# $1 / \sum_k w_{qk}^2$ measures the spread.

# %%
taus = [0.003, 0.01, 0.03, 0.1, 0.3, 1.0]
effective = [float(1 / (torch.softmax(A[q] / tau, 0) ** 2).sum()) for tau in taus]
plots.sweep_curves(taus, {"query patch": effective}, "temperature tau", log=True,
                   ylabel="effective matches", title="Temperature spreads the attention");
assert effective == sorted(effective), "a higher temperature must spread the weights"

# %% [markdown]
# ## 3. Radius, top-k and reading labels
# Objects move little between nearby frames, so a patch only looks at keys within $\pm r$ cells
# (the *radius*). Of those, it keeps the $k$ best over all reference frames jointly (*top-k*),
# renormalises their weights with the softmax and reads the weighted sum of their labels. Labels are
# one-hot id maps averaged over each 8x8 patch. Here it is from scratch:

# %%
def propagate_scratch(query, keys, labels, radius, topk, tau):
    """query (C, h, w), keys (N, C, h, w), labels (N, L, h, w) -> soft labels (L, h, w)."""
    n, c, h, w = keys.shape
    aff = query.flatten(1).T @ keys.permute(1, 0, 2, 3).flatten(1)  # (h w, N h w)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    yy, xx = yy.flatten(), xx.flatten()
    near = ((yy[:, None] - yy[None]).abs() <= radius) & ((xx[:, None] - xx[None]).abs() <= radius)
    aff = aff.masked_fill(~near.repeat(1, n), float("-inf"))  # outside the window: never chosen
    top, index = aff.topk(topk, dim=1)  # (h w, k)
    weights = torch.softmax(top / tau, dim=1)
    values = labels.permute(1, 0, 2, 3).flatten(1)[:, index]  # (L, h w, k)
    return (values * weights).sum(-1).view(-1, h, w)

# %% [markdown]
# Check it against `vos_lab.propagation` (the dense version, and the windowed one that the evaluation
# uses at 480p), with the random CNN's features so that no two scores tie:

# %%
cnn = build_encoder("random-resnet18", lab.device)
f_cnn = encode_video(cnn, video.frames[:3]).cpu()
onehot = torch.stack([downsample_labels(ids_to_onehot(video.masks[i], 4), (h, w), 8) for i in range(2)])
mine = propagate_scratch(f_cnn[2], f_cnn[:2], onehot, radius=3, topk=5, tau=0.1)
for package in (dense_propagation(f_cnn[2], f_cnn[:2], onehot, 3, 5, 0.1),
                windowed_propagation(f_cnn[2], f_cnn[:2], onehot, 3, 5, 0.1)):
    assert torch.allclose(mine, package, atol=1e-5), float((mine - package).abs().max())
print("propagate_scratch matches vos_lab.propagation; label mass per patch:", float(mine.sum(0).mean()))

# %% [markdown]
# What this means for one target cell, drawn with the Lab affinities of section 1's query patch to the
# previous frame (radius 6 here): *dense* attention would read every cell of the reference frame; the *window*
# reads only the cells within $\pm r$ of the same position (fewer at the border); the *top-k* keeps the $k$
# best of the window, and only those share the softmax weights ($\tau = 0.1$). With several reference frames
# the top-k is taken over all their windows jointly. Raw colours match far from the object too (wherever the
# colour is alike): the window keeps those matches out.

# %%
previous = (feats[T - 1].flatten(1).T @ feats[T - 2].flatten(1))[q].view(h, w)  # the query's row, frame T-2
plots.attention_schematic(previous.numpy(), (py // 8, px // 8), radius=6, topk=5,
                          title=f"What the query patch of frame {T - 1} reads from frame {T - 2}");

# %% [markdown]
# ### Exercise 1.1
# `topk_weights(scores, k, tau)`: for each row of `scores` keep the $k$ largest, give them
# $\mathrm{softmax}(\text{score}/\tau)$ and every other entry 0.

# %%
def topk_weights(scores, k, tau):
    raise NotImplementedError  # your code here (3 lines)


exercises.check_topk_weights(topk_weights)

# %% [markdown] jupyter={"source_hidden": true}
# **Solution**: `exercises.show_solution(1, "topk_weights")`, or `notebooks/solutions/ch01.py`.

# %% [markdown]
# ## 4. Context memory and soft label feedback
# To predict frame $t$, the protocol reads from a *context*: frame 0 (its ground truth never drifts)
# plus the $n$ most recent frames (they look most like frame $t$). Recent frames carry their *soft*
# predicted labels, not the argmax, so uncertainty is not hidden. `PropagationConfig` holds every
# setting; `propagate_features` runs the protocol on precomputed features.

# %% [markdown]
# ### Exercise 1.2
# `context_frames(t, n)`: the reference frames of frame $t$: 0 and the $n$ most recent frames, sorted.

# %%
def context_frames(t, n):
    raise NotImplementedError  # your code here (2 lines)


exercises.check_context_frames(context_frames)

# %%
config = PropagationConfig(temperature=0.1, topk=5, radius=12, context=7)
print("references of frame 10:", config.references(10))
pred = propagate_features(feats, video.masks[0], config)
print("J&F (raw Lab) on this video:", round(jf_scores({"synth-0": (video.masks, pred)})["J&F-Mean"], 3))
plots.masks_over_time(video.frames, {"ground truth": video.masks, "raw Lab": pred},
                      title="Propagating frame 0's masks with raw Lab features");

# %% [markdown]
# The memory, written out: each frame's *soft* labels (a distribution over the labels per cell) are predicted
# from the soft labels of its context and kept for the frames after it; only the output is the argmax.
# `propagate_step` is one target frame of the protocol. The argmax of our soft labels must be the package's
# prediction.

# %%
def soft_memory(feats, first_ids, config, last, stride=8):
    """Soft labels (L, h, w) of frames 0..last: frame 0 from its annotation, each later one read from the
    soft labels of its context (`config.references(t)`)."""
    n_labels = int(first_ids.max()) + 1
    soft = {0: downsample_labels(ids_to_onehot(first_ids, n_labels), feats.shape[-2:], stride)}
    for t in range(1, last + 1):
        refs = config.references(t)
        soft[t] = propagate_step(feats[t], feats[refs], torch.stack([soft[i] for i in refs]), config, config.far(t))
    return soft


soft = soft_memory(feats, video.masks[0], config, T - 1)
size = video.masks.shape[1:]
assert all(np.array_equal(labels_to_ids(soft[t], size, 8), pred[t]) for t in range(1, T))

# %% [markdown]
# For the last frame: which frames are in its context, their labels, and its soft labels before the argmax.
# Where no label is clearly the most likely (the object's probability is middling), the argmax is close to a
# coin toss: that is where errors start, and the soft labels carry that doubt on to the next frames.

# %%
target = T - 1
probabilities = upsample_labels(soft[target], size, 8).numpy()
plots.context_soft_labels(video.frames, pred, config.references(target), target, probabilities, obj=1);
uncertain = float(((probabilities[1] > 0.25) & (probabilities[1] < 0.75)).mean())
print(f"frame {target}: {100 * uncertain:.1f}% of the pixels have P(object 1) between 0.25 and 0.75")

# %% [markdown]
# ## 5. Baselines
# Three encoders that learned nothing: raw RGB and raw Lab pixels (averaged per patch) and a randomly
# initialised ResNet-18 (stride 8). Every later chapter must beat them. We encode each video once and
# reuse the features for every setting.

# %%
features = {name: {key: encode_video(build_encoder(name, lab.device), v.frames).cpu() for key, v in videos.items()}
            for name in BASELINES}


def synthetic_jf(name, config):
    return jf_scores({key: (v.masks, propagate_features(features[name][key], v.masks[0], config))
                      for key, v in videos.items()})["J&F-Mean"]


baseline_jf = {name: synthetic_jf(name, config) for name in BASELINES}
plots.score_bars(baseline_jf, f"Baselines on {len(videos)} synthetic videos (J&F)");
assert all(0 <= v <= 1 for v in baseline_jf.values())

# %% [markdown]
# On real DAVIS sequences (when present; the profile sets how many and how many frames):

# %%
real = davis_sequences(lab)
real_jf = {}
for name in BASELINES if real else []:
    start = time.perf_counter()
    runs = {seq: (gt, pr) for seq, gt, pr in iter_davis_predictions(build_encoder(name, lab.device), real, config)}
    real_jf[name] = jf_scores(runs)["J&F-Mean"]
    print(f"{name:>16}: J&F {real_jf[name]:.3f} ({time.perf_counter() - start:.1f} s)")
if real_jf:
    frames_real = np.stack([real[0].frame(t) for t in range(len(real[0]))])
    plots.score_bars(real_jf, f"Baselines on {len(real)} real DAVIS sequence(s) x {len(frames_real)} frames");
    plots.masks_over_time(frames_real, {"ground truth": runs[real[0].name][0], BASELINES[-1]: runs[real[0].name][1]},
                          title=f"{real[0].name}: the random CNN's propagation");
else:
    print("No real DAVIS data: set DATA_ROOT to a DAVIS folder to measure the baselines on real video.")

# %% [markdown]
# What do these features "see"? A feature map has many channels; its three principal components (the
# directions of largest variance over the frame's cells) drawn as red, green and blue give cells with similar
# features similar colours. Pixel features are colours (rotated); the random CNN mixes colour and texture
# without any notion of objects. Chapters 2 and 3 draw the same panel for the trained models.

# %%
pca_frame = real[0].frame(0) if real else video.frames[0]
with torch.no_grad():
    pca_features = {name: build_encoder(name, lab.device).encode(pca_frame)[0].cpu() for name in BASELINES}
plots.feature_pca_panels(pca_frame, pca_features, "The baselines' features of one frame: 3 principal components");
assert all(plots.feature_pca_rgb(f).shape == (*f.shape[1:], 3) for f in pca_features.values())

# %% [markdown]
# ## 6. What each setting does
# One setting at a time, the others at the protocol's values (tau 0.1, top-k 5, radius 12, 7 recent
# frames), on the synthetic videos:

# %%
grid = {"top-k": ("topk", [1, 2, 5, 10, 20]), "radius": ("radius", [1, 2, 4, 8, 12]),
        "temperature": ("temperature", [0.01, 0.03, 0.1, 0.3, 1.0]), "context length": ("context", [0, 1, 2, 4, 7])}
sweeps = {}
for label, (field, values) in grid.items():
    sweeps[label] = (values, {name: [synthetic_jf(name, PropagationConfig(**{**config.__dict__, field: value}))
                                     for value in values] for name in ("lab", "random-resnet18")})
plots.sweep_grid(sweeps, "J&F against each propagation setting (synthetic videos)", log=("temperature",));

# %% [markdown]
# ## 7. The affinity explorer
# For one pixel of the target frame (left), the explorer shows its attention over each reference frame
# (the joint softmax inside the radius), the top-k matches (circles, sized by weight), the pixel's label
# distribution and the whole propagated mask (right), for two encoders one above the other: raw Lab pixels
# and the random CNN, on the same pixel. Green outlines are the reference frames' masks. Rendered lectures
# show the panels at preset pixels: the centre of each object (its pixel farthest from the outline) and the
# background pixel farthest from every object. With `INTERACTIVE = True` in JupyterLab the explorer is live:
# you pick the pixel, the target frame, the encoders, and temperature, top-k and radius (-1 = whole frame).

# %%
explorer = AffinityExplorer(video.frames, video.masks, stride=8, target=T - 1, context=2, temperature=0.1,
                            topk=5, radius=12, compare="random-resnet18", show_masks=True,
                            features={name: features[name]["synth-0"] for name in ("lab", "random-resnet18")})
presets = explorer.preset_pixels()
explorer.static_figure();

# %%
for pixel in presets:
    view = explorer.view(pixel)
    assert np.isclose(view.label.sum(), 1, atol=1e-4) and len(view.matches) == 5
    print(f"pixel {pixel}: true id {video.masks[T - 1][pixel]}, label {view.label.round(2)}, "
          f"best match in frame {view.matches[0][0]} at {view.matches[0][1:3]}")
if lab.interactive:
    display(explorer.interactive())

# %% [markdown]
# ## What we changed and why
# One protocol scores every method of the course (DINO's and CRW's evaluation); the papers' own test-time
# read-outs differ from it, and each can be had from `PropagationConfig`:

# %%
changes = [
    ('labels fed back',
     "CorrFlow: the previous frame's hard arg max; MAST's code: hard label maps",
     '*soft* labels of the recent frames',
     'one protocol for all methods (DINO, CRW); soft labels keep the uncertainty of a frame'),
    ('matches kept',
     'Vondrick, CorrFlow, MAST: a softmax over every position (MAST: of all windows)',
     'the top-5 over all context positions jointly',
     "DINO's protocol; `PropagationConfig(topk=None)` (`propagate --topk 0`) is the papers' read-out"),
    ('temperature',
     'Vondrick: 0.5 at test (1 in training), raw dot products; MAST: 1, raw dot products',
     '$\\tau = 0.1$ on cosine similarities',
     'unit-length features need a sharper softmax; chapter 2 trains in the same geometry'),
    ('context',
     'CorrFlow: the previous frame; MAST: {0, 5} + {t-1, t-3, t-5}',
     'frame 0 + 7 recent frames',
     "DINO's; chapter 3's `MEMORY_LAYOUTS` gives the papers' memories"),
    ('frames scored',
     'the whole validation set at 480p',
     "480p, the profile's subset (`eval_subset`; cpu: 4 sequences x 40 frames)",
     'a chapter renders in minutes; the CLI scores everything'),
]
show_markdown(changes_table(changes))

# %% [markdown]
# ## Summary
# - Label propagation: affinity (cosine) -> window of radius $r$ -> top-$k$ over the context ->
#   softmax with temperature $\tau$ -> weighted sum of labels; `vos_lab.propagation` does exactly this,
#   windowed so 480p fits in memory.
# - The context is frame 0 plus recent frames with soft labels.
# - Raw pixels and a random CNN already propagate somewhat; learned features (next chapters) must beat
#   the numbers above. The explorer takes any encoder or features, so you will reuse it with trained ones.
#
# ## Exercises to go further
# 1. Replace soft labels by hard (one-hot) ones for the recent frames: does J&F drop?
# 2. Why does a radius of 1 hurt more on fast objects? Find one in the synthetic videos with the explorer.
#
# ## References
# - A. Jabri, A. Owens, A. Efros, *Space-Time Correspondence as a Contrastive Random Walk*, NeurIPS 2020
#   (the label propagation protocol, Sec. 3.3).
# - M. Caron et al., *Emerging Properties in Self-Supervised Vision Transformers* (DINO), ICCV 2021
#   (`eval_video_segmentation.py`).
# - C. Vondrick et al., *Tracking Emerges by Colorizing Videos*, ECCV 2018.
# - Z. Lai, E. Lu, W. Xie, *MAST: A Memory-Augmented Self-Supervised Tracker*, CVPR 2020.
