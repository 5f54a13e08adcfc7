# %% [markdown]
# # Chapter 5: Contrastive transformation (ContrastCorr)
#
# Chapters 2-4 reconstructed a target frame from references *of the same video*. Nothing in that proxy
# task tells two different videos apart: features only need to be good enough to pick the right pixel among
# the few candidates of one clip. ContrastCorr (Wang, Zhou & Li, AAAI 2021) adds a **contrastive** view:
# the target is also reconstructed through one softmax over the reference pixels of *every video of the
# batch*, so the other videos act as negatives, and it pairs crops by **tracking** a patch, so the pairs
# follow the content.
#
# **Learning goals**
# - build patch-level tracking (attention to the whole frame, mean location of the matches, differentiable crop)
#   and check it against `vos_lab`;
# - build the intra-video transformation and its backward ("colour switch") twin;
# - write the inter-video softmax (exercise) and read the sparsity term off the batch affinity matrix;
# - build the whole loss from scratch and check it against the package's `ContrastCorrMethod`;
# - train (load-or-train), see where the tracker puts its crops, compare with chapters 2-4 and ablate the
#   inter-video term, the consistency, the sparsity, the tracking and the batch size.

# %% tags=["parameters"]
PROFILE = None  # "smoke", "cpu" or "gpu"; None: $VOS_LAB_PROFILE, else "cpu"
SEED = 0  # seed of every random generator
DATA_ROOT = None  # a DAVIS folder; None: $VOS_LAB_DATA, else ../shared/data/davis2016-dev when present
DEVICE = "auto"  # "auto", "cpu" or "cuda"
INTERACTIVE = False  # True in JupyterLab for live widgets; False for papermill / nbval
PROFILE_SET = {}  # profile fields to override, e.g. {"train_steps": 400} (lectures --set)
TRAIN_DATA = None  # None: the real clips the course's tables used when present ($VOS_LAB_DATA/videos, else
# ../shared/data/videos), else "embedded" (synthetic + bundled clips); or folders of videos/frames, comma-separated
CHECKPOINTS = "checkpoints"  # folder for load-or-train, relative to the course's working folder
ABLATION_STEPS = None  # training steps of each ablation model; None: the model zoo's (cpu: 800, as the main model)
ABLATION_SEQUENCES = None  # ablations are scored on the first this many evaluation sequences; None: all

# %% [markdown]
# ## Setup

# %%
# %matplotlib inline
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.patches import Rectangle

from vos_lab import zoo
from vos_lab.cache import reuse_or_compute
from vos_lab.course import exercises, plots
from vos_lab.course.notebook import (
    HOME,
    cached_predictions,
    checkpoint_key,
    eval_subset,
    setup,
    training_sources,
)
from vos_lab.data.clips import ClipSampler, synthetic_videos
from vos_lab.data.davis import DavisDataset
from vos_lab.data.synthetic import write_synthetic_davis
from vos_lab.errors import VosLabError
from vos_lab.evaluation import score_results
from vos_lab.features import build_encoder
from vos_lab.methods.contrastcorr import (
    ContrastCorrMethod,
    batch_pointer_weights,
    box_around,
    cell_lab,
    crop_cells,
    own_video_mass,
    sparsity_loss,
    track,
)
from vos_lab.propagation import PropagationConfig
from vos_lab.training.run import method_for_profile, profile_sampler

lab = setup(globals(), TRAIN_DATA=(str, None), CHECKPOINTS=str, ABLATION_STEPS=(int, None),
            ABLATION_SEQUENCES=(int, None))
P = lab.profile
SMOKE = P.name == "smoke"
SOURCES = training_sources(TRAIN_DATA, P)  # TRAIN_DATA None: see default_training_data
CHECKPOINT_DIR = HOME / CHECKPOINTS
RUNS = HOME / "runs" / "ch05" / P.name  # cached propagation results (git-ignored)
print(lab)
print("training data:", SOURCES, "| checkpoints:", CHECKPOINT_DIR)

# %% [markdown]
# ## 1. Pairs that follow the content: patch-level tracking
# A training pair is a square crop of the reference frame and a crop of the target frame. During a
# **warm-up** the target crop is at the same place (random crop pairs); the features are poor, and the
# content may have left the crop. After the warm-up the reference crop is **tracked**: every reference cell
# $r$ attends to *every* cell $t$ of the whole target frame,
# $$P_{rt} = \mathrm{softmax}_t\,(f_r^\top f_t/\tau), \qquad \hat p_r = \sum_t P_{rt}\, p_t, \qquad
#   c = \frac{1}{N_r}\sum_r \hat p_r,$$
# where $p_t$ is cell $t$'s (y, x): $\hat p_r$ is the mean location of $r$'s best matches and the centre $c$
# their mean. The target crop is taken around $c$ with `grid_sample`, which is differentiable in $c$.

# %%
def track_scratch(reference, target, temperature):
    """reference crop (B, C, p, p), target frame (B, C, h, w) -> tracked centre (B, 2) in cells (y, x)."""
    _, _, h, w = target.shape
    scores = torch.einsum("bcr,bct->brt", reference.flatten(2), target.flatten(2)) / temperature
    weights = torch.softmax(scores, dim=-1)  # each reference cell over the whole target frame
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    located = torch.stack([weights @ ys.flatten().float(), weights @ xs.flatten().float()], dim=-1)  # (B, Nr, 2)
    return located.mean(1)


g = torch.Generator().manual_seed(SEED)
frame0 = F.normalize(torch.randn(1, 32, 14, 18, generator=g), dim=1)  # random unit features
frame1 = torch.roll(frame0, shifts=(3, -4), dims=(2, 3))  # the content moved by (3, -4) cells
corner = torch.tensor([[4.0, 8.0]])
reference = crop_cells(frame0, corner, 5)
ours = track_scratch(reference, frame1, 0.05)
assert torch.allclose(ours, track(reference, frame1, 0.05), atol=1e-5)
moved = box_around(ours, 5, 14, 18)
print("reference crop at", corner.tolist(), "-> tracked crop at", moved.round(decimals=2).tolist())
assert torch.allclose(moved, corner + torch.tensor([[3.0, -4.0]]), atol=0.05)

# %% [markdown]
# The crop samples the feature map at the cells' centres, $(y_0 + i, x_0 + j)$, bilinearly (`grid_sample`
# with `align_corners=False` puts cell $k$'s centre at $(2k+1)/h - 1$). At whole cells it is a slice; between
# cells it blends neighbours, so the loss has a gradient with respect to the tracked centre.

# %%
maps = torch.randn(1, 4, 10, 12, generator=g)
assert torch.allclose(crop_cells(maps, torch.tensor([[2.0, 3.0]]), 4), maps[:, :, 2:6, 3:7], atol=1e-5)
halfway = crop_cells(maps, torch.tensor([[2.5, 3.0]]), 4)
assert torch.allclose(halfway, (maps[:, :, 2:6, 3:7] + maps[:, :, 3:7, 3:7]) / 2, atol=1e-5)
centre = torch.tensor([[5.0, 6.0]], requires_grad=True)
crop_cells(maps, box_around(centre, 4, 10, 12), 4).sum().backward()
print("d(crop sum) / d(centre) =", centre.grad.tolist())
assert centre.grad.abs().sum() > 0

# %% [markdown]
# ## 2. Intra-video transformation, forward and backward
# With the target crop's cells $t$ and the reference crop's cells $r$, the affinity
# $A_{tr} = \mathrm{softmax}_r\,(f_t^\top f_r/\tau)$ transforms the reference into the target:
# $\hat L_t = \sum_r A_{tr} L_r$, where $L$ is each cell's Lab colour (scaled to about $[-1, 1]$). The loss is
# an L1 with a and b weighted 10x against L (the authors' code). The **backward** ("colour switch", from UVC)
# reuses the *same* affinity transposed: $\tilde L_r = \sum_t A_{tr} L_t$ must give back the reference (weight
# 0.1), which pushes $A$ towards a one-to-one matching. We build both on a small batch, with crops formed by
# the package.

# %%
SMALL = {"width": 8, "multipliers": (1, 2, 2, 2), "embed_dim": 16, "cosine": True, "temperature": 0.1,
         "warmup_steps": 0}
torch.manual_seed(SEED)
toy = ContrastCorrMethod(**SMALL)
toy_videos = synthetic_videos(3, 10, 72, 96, seed=SEED)
toy_batch = toy.prepare(ClipSampler(toy_videos, 2, toy.gaps, crop=64, seed=SEED).batch(3), torch.device("cpu"))
with torch.no_grad():
    toy_features = F.normalize(toy.encode_clips(toy_batch["inputs"]), dim=2)  # (B, 2, D, h, w); no dropout
    toy_colours = cell_lab(toy_batch["lab"], toy_features.shape[-2:])  # (B, 2, 3, h, w)
    torch.manual_seed(SEED)
    pairs = toy.pairs(toy_features, toy_colours, step=0)  # after warm-up (0 steps): tracked
print("crops:", tuple(pairs.reference.shape), "| reference corners", pairs.reference_corner.tolist(),
      "| target corners", pairs.target_corner.round(decimals=1).tolist())


def weighted_l1(predicted, target, ab_weight=10.0):
    """Lab values (B, N, 3): mean |dL| + ab_weight (mean |da| + mean |db|)."""
    return (predicted - target).abs().mean((0, 1)) @ torch.tensor([1.0, ab_weight, ab_weight])


def intra_scratch(pairs, temperature):
    """The intra-video affinity (B, Nt, Nr), the reconstructed target (B, Nt, 3), the intra and backward losses."""
    queries, keys = pairs.target.flatten(2), pairs.reference.flatten(2)
    affinity = torch.softmax(torch.einsum("bcq,bck->bqk", queries, keys) / temperature, dim=-1)
    ref_lab, tar_lab = pairs.reference_lab.flatten(2).transpose(1, 2), pairs.target_lab.flatten(2).transpose(1, 2)
    intra = affinity @ ref_lab
    backward = affinity.transpose(1, 2) @ tar_lab  # the colour switch: the same affinity, transposed
    return affinity, intra, weighted_l1(intra, tar_lab), weighted_l1(backward, ref_lab)


_, toy_intra, intra_loss, backward_loss = intra_scratch(pairs, 0.1)
print(f"intra L1 {intra_loss:.4f}, backward L1 {backward_loss:.4f}")

# %% [markdown]
# ## 3. Inter-video transformation: the other videos as negatives
# Stack the target cells of all $B$ videos as rows and the reference cells of all $B$ videos as columns.
# The inter-video affinity is **one** softmax per row over all $B N_r$ reference cells:
# $$W_{(i,t),(j,r)} = \frac{\exp(f_{i,t}^\top f_{j,r}/\tau)}{\sum_{j'}\sum_{r'} \exp(f_{i,t}^\top f_{j',r'}/\tau)}.$$
# Its diagonal blocks ($j = i$) hold the same scores as the intra-video affinity; the off-diagonal blocks
# are other videos, which cannot hold the target's content. Reconstructing the target through $W$
# ($\hat L^{inter} = W L$) copies colours from other videos wherever they leak in.
#
# **Exercise 5.1.** Write `inter_video_softmax(queries, keys, temperature)`: queries `(B, C, Nq)` (target
# cells), keys `(B, C, Nk)` (reference cells) -> `(B Nq, B Nk)`, rows and columns video by video, each row
# one softmax over all $B N_k$ columns.

# %%
def inter_video_softmax(queries: torch.Tensor, keys: torch.Tensor, temperature: float) -> torch.Tensor:
    raise NotImplementedError  # your code here


exercises.check_inter_video_softmax(inter_video_softmax)

# %% [markdown] jupyter={"source_hidden": true}
# **Solution**: `exercises.show_solution(5, "inter_video_softmax")`, or `notebooks/solutions/ch05.py`.

# %% [markdown]
# Three terms come from $W$: the **inter** reconstruction $\|\hat L^{inter} - L\|_1$; the **intra/inter
# consistency** $\|\hat L^{inter} - \hat L^{intra}\|_1$ (the authors' code uses only this one); and the
# **sparsity** constraint: the mass of each row inside its own video, $m_{i,t} = \sum_r W_{(i,t),(i,r)}$, must
# be 1, $\mathcal{L}_{sparse} = \mathrm{mean}\,|1 - m_{i,t}|$. The whole loss from scratch, checked against
# `ContrastCorrMethod.terms` on the same crops:

# %%
try:
    inter_video_softmax(torch.zeros(1, 1, 1), torch.zeros(1, 1, 1), 1.0)
except NotImplementedError:  # Exercise 5.1 not done yet: use the solution
    inter_video_softmax = exercises.solution(5, "inter_video_softmax")


def contrastcorr_terms(pairs, temperature):
    """Every unweighted term: intra, backward, inter, consistency, sparsity."""
    _, intra, intra_l1, backward_l1 = intra_scratch(pairs, temperature)
    b = len(intra)
    weights = inter_video_softmax(pairs.target.flatten(2), pairs.reference.flatten(2), temperature)
    inter = (weights @ pairs.reference_lab.flatten(2).transpose(1, 2).flatten(0, 1)).view_as(intra)
    own = weights.view(b, -1, b, weights.shape[1] // b).sum(-1).diagonal(dim1=0, dim2=2).T  # (B, Nt)
    return {"intra": intra_l1, "backward": backward_l1,
            "inter": weighted_l1(inter, pairs.target_lab.flatten(2).transpose(1, 2)),
            "consistency": weighted_l1(inter, intra), "sparsity": (1 - own).abs().mean()}


ours = contrastcorr_terms(pairs, 0.1)
theirs = toy.terms(pairs, step=0)
for name in ours:
    print(f"{name:>12}: ours {float(ours[name]):.5f}  vos_lab {float(theirs[name]):.5f}")
    assert torch.allclose(ours[name], theirs[name], atol=1e-5), name
weights = {name: toy.config[name] for name in ours}
print("weighted sum:", round(float(sum(weights[n] * ours[n] for n in ours)), 5), "with weights", weights)

# %% [markdown]
# ## 4. The batch affinity matrix, drawn
# For a small batch of training clips: $W$ with the own-video blocks outlined, and each target cell's mass
# inside its own video. The sparsity term is read off the picture: one minus the mass inside the outlined
# blocks, averaged over rows. An untrained network first (section 6 draws it again after training).

# %%
sampler = profile_sampler(method_for_profile("contrastcorr", P), P, SOURCES, SEED)
show_clips = sampler.batch(4)


def batch_affinity(method, clips):
    """The inter-video affinity (B Nt, B Nr) of `clips` under `method`, on tracked crop pairs, and B."""
    method = method.to(lab.device).eval()
    with torch.no_grad():
        batch = method.prepare(clips, lab.device)
        features = method.encode_clips(batch["inputs"]).float()
        if method.config["cosine"]:
            features = F.normalize(features, dim=2)
        torch.manual_seed(SEED)
        pairs = method.pairs(features, cell_lab(batch["lab"], features.shape[-2:]), step=10**9)
        w = batch_pointer_weights(pairs.target.flatten(2), pairs.reference.flatten(2), method.config["temperature"])
    return w.cpu(), len(clips)


def draw_batch_affinity(w, videos, title):
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), gridspec_kw={"width_ratios": [1, 1.3]})
    axes[0].imshow(w, cmap="magma", vmax=float(w.max()))
    nq, nk = w.shape[0] // videos, w.shape[1] // videos
    for i in range(videos):
        axes[0].add_patch(Rectangle((i * nk - 0.5, i * nq - 0.5), nk, nq, fill=False, color="cyan", lw=1))
    axes[0].set(title="inter-video affinity W", xlabel="reference cells (video by video)",
                ylabel="target cells (video by video)")
    own = own_video_mass(w, videos)
    for i in range(videos):
        axes[1].plot(np.arange(i * nq, (i + 1) * nq), own[i].numpy(), ".", ms=3, label=f"video {i}")
    axes[1].set(title=f"mass inside the own video (sparsity = {float(sparsity_loss(w, videos)):.3f})",
                xlabel="target cell (row of W)", ylabel="own-video mass", ylim=(0, 1.05))
    axes[1].legend(fontsize=7)
    fig.suptitle(title)
    return own


untrained = method_for_profile("contrastcorr", P)
w_before, videos = batch_affinity(untrained, show_clips)
own_before = draw_batch_affinity(w_before, videos, "Untrained network: mass spreads over all videos")
assert torch.isclose(1 - own_before.mean(), sparsity_loss(w_before, videos), atol=1e-5)
print(f"untrained: mean own-video mass {float(own_before.mean()):.3f} (1/B = {1 / videos:.3f} if uniform)")

# %% [markdown]
# ## 5. Training (load-or-train)
# The package's `ContrastCorrMethod` (`python -m vos_lab train contrastcorr`) trains on pairs of frames:
# warm-up on random crop pairs for the first half of the steps (intra + backward), then tracked pairs and
# all five terms. As in chapter 2, the cpu profile compares L2-normalised features at $\tau = 0.1$ (the
# test-time geometry); the gpu profile keeps the paper's raw dot products at temperature 1.

# %%
trained = zoo.trained("ch05-contrastcorr", P, SOURCES, folder=CHECKPOINT_DIR, seed=SEED, device=DEVICE)
path = trained.path  # the zoo's checkpoint, else CHECKPOINTS'
print(f"ContrastCorr: {trained.step} steps in {trained.seconds / 60:.1f} min on {trained.data or 'unrecorded data'}")
history = trained.history


def series(key):
    return np.array([h.get(key, np.nan) for h in history])


fig, axes = plt.subplots(1, 2, figsize=(10, 3))
for key in ("intra", "backward", "inter", "consistency", "sparsity"):
    axes[0].plot(series(key), label=key)
axes[0].set(title="Loss terms (unweighted)", xlabel="step", ylabel="value", yscale="log")
axes[0].legend(fontsize=7)
axes[1].plot(series("shift"))
axes[1].set(title="How far the tracker moved the target crop", xlabel="step", ylabel="cells");

# %% [markdown]
# ## 6. The batch affinity after training
# The same clips, the trained network: the mass moves into the own-video blocks, and the sparsity term falls.

# %%
w_after, _ = batch_affinity(trained.method, show_clips)
own_after = draw_batch_affinity(w_after, videos, "Trained network: mass inside the own video")
print(f"mean own-video mass: untrained {float(own_before.mean()):.3f}, trained {float(own_after.mean()):.3f}")
if trained.step >= 100:  # a few steps (smoke) move nothing
    assert own_after.mean() > own_before.mean()

# %% [markdown]
# ## 7. Where does the tracker put the crop?
# The training-time tracker, run along a video: a crop of the training size around the object in frame 0
# (the centre of object 1's first mask), tracked from each frame to the next. The dot is the object's true
# centre; the tracker never sees the masks.

# %%
subset = None if SMOKE else eval_subset(lab)  # the sequences and frames of every chapter (the zoo's J&F too)
synthetic = None if subset is not None else {
    "sequences": 1, "frames": P.eval_max_frames or 8, "height": 96, "width": 160, "seed": SEED}
if subset is not None:
    dataset, ALL = subset
else:
    reuse_or_compute(RUNS / "synthetic", synthetic, lambda: write_synthetic_davis(RUNS / "synthetic", **synthetic))
    dataset = DavisDataset(RUNS / "synthetic")
    ALL = dataset.names[: P.eval_sequences]
sequence = dataset.sequence(ALL[0]).head(P.eval_max_frames)
frames = np.stack([sequence.frame(t) for t in range(len(sequence))])
gt, _ = sequence.masks()
encoder = trained.method.frame_encoder().to(lab.device).eval()
with torch.no_grad():
    video_features = torch.cat([encoder.encode(f, lab.device) for f in frames]).cpu()  # (T, C, h, w)

# %%
side = max(1, round(trained.method.config["patch"] * P.crop_size / 8))  # the training crop, in cells
h_cells, w_cells = video_features.shape[-2:]
ys, xs = np.nonzero(gt[0] == 1)  # object 1
centre = torch.tensor([[ys.mean() / 8, xs.mean() / 8]], dtype=torch.float32)
boxes = [box_around(centre, side, h_cells, w_cells)]
for t in range(1, len(frames)):
    reference = crop_cells(video_features[t - 1: t], boxes[-1], side)
    boxes.append(box_around(track(reference, video_features[t: t + 1], trained.method.config["temperature"]), side,
                            h_cells, w_cells))
truth = [np.argwhere(m == 1).mean(0) / 8 if (m == 1).any() else np.full(2, np.nan) for m in gt]
error = [float(np.linalg.norm(b[0].numpy() + (side - 1) / 2 - c)) for b, c in zip(boxes, truth, strict=True)]
times = np.linspace(0, len(frames) - 1, 4).round().astype(int)
fig, axes = plt.subplots(1, 5, figsize=(13, 2.4))
for ax, t in zip(axes, times, strict=False):
    plots.image_panel(ax, plots.overlay(frames[t], gt[t], 0.3), f"frame {t}")
    y0, x0 = (boxes[t][0] * 8).tolist()
    ax.add_patch(Rectangle((x0, y0), side * 8, side * 8, fill=False, color="yellow", lw=2))
    ax.plot(truth[t][1] * 8 + 4, truth[t][0] * 8 + 4, "r.")
axes[-1].plot(error)
axes[-1].set(title="crop centre to object centre", xlabel="frame", ylabel="distance (cells)")
fig.suptitle(f"{sequence.name}: the tracked crop (yellow), object centre (red)");

# %% [markdown]
# ## 8. Evaluation against chapters 2-4
# The course's protocol (frame 0 + 7 recent frames, top-5, radius 12, tau 0.1) on the profile's evaluation
# sequences (cpu: the first 40 frames of the first 4 development sequences, at 480p, as every chapter; smoke: a
# small synthetic video). Masks are cached under `runs/ch05/`, keyed by the checkpoint's content. The other
# chapters' models are scored when the zoo or `CHECKPOINTS` holds them (else render those chapters first).

# %%
def evaluate(encoder, name, features, names=None):
    """J&F-Mean of one encoder on `names` (default: ALL), masks cached in runs/ch05/<name>/<sequence>."""
    names = names or ALL
    cached_predictions(encoder, dataset, RUNS / name, PropagationConfig(), names,
                       {"features": features, "synthetic": synthetic},
                       progress=not SMOKE)
    return score_results(dataset, RUNS / name, names, progress=False).global_row["J&F-Mean"]


table = {"lab pixels (ch. 1)": evaluate(build_encoder("lab", lab.device), "lab", "lab")}
others = {"bottleneck (ch. 2)": "ch02-bottleneck", "CorrFlow (ch. 3)": "ch03-corrflow", "MAST (ch. 3)": "ch03-mast"}
others["momentum (ch. 4)"] = "ch04-momentum"
for label, stem in others.items():
    other = zoo.checkpoint(stem, P, CHECKPOINT_DIR)  # the zoo's, else CHECKPOINTS'
    if not other.exists():
        print(f"{label}: no checkpoint {other.name} in {CHECKPOINT_DIR} (render that chapter first)")
        continue
    try:
        table[label] = evaluate(build_encoder(str(other), lab.device), stem, checkpoint_key(other))
    except VosLabError as error:  # e.g. a method this version of vos_lab does not know
        print(f"{label}: skipped ({error})")
table["ContrastCorr"] = evaluate(encoder, "contrastcorr", checkpoint_key(path))
plots.score_bars(table, f"J&F on {len(ALL)} sequences of {dataset.root.name} ({P.name} profile)");
for label, value in table.items():
    print(f"{label:>22}: {value:.3f}")

# %% [markdown]
# ## 9. Ablations
# Each ablation retrains (`ABLATION_STEPS` steps, by default the zoo's: as long as the main model in the cpu profile,
# 2 in smoke; warm-up the first half) with one thing changed, and is scored like section 8 on the evaluation
# sequences (the first `ABLATION_SEQUENCES` of them; masks cached, so a second render only scores). "No inter"
# drops all three terms of the batch softmax; "no tracking" keeps random crop pairs throughout; the batch size is
# the number of videos, so $B - 1$ videos of negatives (a batch of 1 has none: the package then trains the
# intra-only model, and says so).

# %%
ABLATIONS = ["full", "no inter", "no consistency", "no sparsity", "no tracking"]  # options: vos_lab.zoo.MODELS
BATCH_SIZES = [k for k in (1, 2, 4) if k < P.batch_size]  # and the profile's own, the "full" row
SUBSET = ALL[:ABLATION_SEQUENCES] if ABLATION_SEQUENCES else ALL
ablations = {}
for label in [*ABLATIONS, *[f"batch {k}" for k in BATCH_SIZES]]:
    key = label.replace(" ", "-")
    run = zoo.trained(f"ch05-ablation-{key}", P, SOURCES, folder=CHECKPOINT_DIR, seed=SEED, device=DEVICE,
                      steps=ABLATION_STEPS, progress=False)
    ablations[label if label != "full" else f"full (batch {P.batch_size})"] = evaluate(
        run.method.frame_encoder().to(lab.device), f"ablation-{key}", checkpoint_key(run.path), SUBSET)
fig, ax = plt.subplots(figsize=(7, 3))
ax.barh(list(ablations)[::-1], list(ablations.values())[::-1], color="tab:blue")
ax.axvline(evaluate(build_encoder("lab", lab.device), "lab", "lab", SUBSET), color="0.5", ls="--", label="lab pixels")
ax.set(xlabel="J&F-Mean", title=f"Ablations, {run.step} steps each ({', '.join(SUBSET)})", xlim=(0, 1))
ax.legend();
for label, value in ablations.items():
    print(f"{label:>20}: {value:.3f}")

# %% [markdown]
# ## 10. What we measured
# *Figures from the cpu profile are filled in below from measured runs; the smoke profile's numbers mean
# nothing (2-4 training steps).*
#
# Measured (2 idle cores, no GPU): `VOS_LAB_HOME=DIR python -m vos_lab zoo build --profile cpu` trained the model and
# every ablation for 800 steps (400 warm-up) on the 8 real clips of `../shared/data/videos`, 2.8 min each (batch 1, 2,
# 4: 0.9, 0.8, 1.4 min); the zoo's manifest holds each J&F on this chapter's evaluation subset (first 40 frames of
# 4 sequences). `python -m vos_lab benchmark --profile cpu` scored the model on all 14 development sequences
# (941 frames, 480p), the ablations `propagate --features ZOO/ch05-ablation-K-cpu.pt` + `evaluate` on the same.
#
# | model | J&F, 4 x 40 frames | J&F, 14 sequences |
# |---|---|---|
# | lab pixels (ch. 1) | 0.630 | 0.633 |
# | bottleneck (ch. 2) | 0.815 | 0.697 |
# | ContrastCorr, full (batch 8) | 0.795 | 0.668 |
# | no inter (no batch softmax) | 0.820 | 0.693 |
# | no consistency | 0.838 | 0.692 |
# | no sparsity | 0.823 | 0.694 |
# | no tracking (random crop pairs) | 0.852 | **0.730** |
# | batch 1 (intra only) | 0.743 | 0.573 |
# | batch 2 | 0.806 | 0.645 |
# | batch 4 | 0.788 | 0.653 |
#
# ContrastCorr falls 2.9 points short of chapter 2's bottleneck model on the 14 sequences. The ablations say
# where: every ablation at batch 8 scores *above* the full model on the subset, most of all without tracking
# (+5.7; +6.2 on the 14 sequences, where it beats the bottleneck model). In 400 steps after warm-up the tracker's
# crops are often not on the content (section 7), and the
# inter-video terms push the affinity towards its own video before it matches well. The number of negatives helps
# up to a point (batch 1, no negatives, is lowest). These are one seed each at a CPU budget: differences of 2
# points are within the spread of retraining (README, "Benchmark"). The largest one holds over seeds: trained
# with `--seed 0, 1, 2` (`python -m vos_lab train contrastcorr --profile cpu --data ../shared/data/videos --seed S
# --option warmup_steps=400 [--option tracking=False]`), the full model scores 0.668 / 0.668 / 0.685 on the 14
# sequences (mean 0.674), without tracking 0.730 / 0.711 / 0.742 (mean 0.728): +5.4 points, every seed above the
# bottleneck model.
#
# ## 11. What we changed and why
# | | paper / authors' code | here | why |
# |---|---|---|---|
# | reconstruction space | UVC's frozen, pre-trained colour auto-encoder | cell Lab, L1, ab x 10 | nothing pre-trained |
# | reference crop | encoded as its own image | cropped from the frame's feature map | one encoder pass |
# | network, data | ResNet-18, 256 px of 640 px, batch 16 | our trunk; cpu: 96 px of 192 px, batch 8 | CPU budget |
# | schedule | 200 epochs, half warm-up | cpu: 800 steps, half warm-up | CPU budget |
# | affinity | raw dot products, temperature 1 | cpu: cosine, $\tau = 0.1$ (gpu: the paper's) | test geometry (ch. 2) |
# | extra terms in the code | self-reconstruction, concentration | left out | not in the paper's loss |
# | inter-video terms | the code: consistency + sparsity | inter, consistency, sparsity (weights) | ablated |
# | input | channel dropout (`dropout2d`) | the same, CorrFlow's `channel_dropout` | shared code |
# | test | frame 0 + 7 previous frames, top-5 | the course's protocol: the same | one protocol |
#
# ## Summary
# - Patch-level tracking forms the training pairs: each reference cell's mean matched location over the
#   whole target frame, averaged, is the crop's centre; `grid_sample` crops there, differentiably.
# - The intra-video transformation copies the target's colours from its own reference; the backward
#   ("colour switch") copies them back through the transposed affinity.
# - The inter-video transformation is one softmax over the reference cells of the whole batch: other videos
#   are negatives. Consistency and sparsity ask that no mass leaks out of the own video.
# - A batch of 1 has no negatives: its batch softmax *is* the intra-video one, so it trains the intra-only
#   model (with a warning).
#
# ## Exercises
# 1. (Section 3) The inter-video softmax (`inter_video_softmax`).
# 2. Why does the sparsity term fall to 0 as soon as all cross-video scores are far below the own-video ones?
#    Compute the own-video mass for $B$ videos whose cross-video scores are all $s$ lower.
# 3. Train with `temperature=1.0, cosine=False` (the paper's geometry) in the cpu profile. What happens to the
#    own-video mass, and to J&F?
# 4. Track with a colder temperature at test time (section 7): does the crop stay on the object longer?
#
# ## References
# - N. Wang, W. Zhou, H. Li. *Contrastive Transformation for Self-supervised Correspondence Learning.* AAAI 2021.
#   Code: github.com/594422814/ContrastCorr.
# - X. Li, S. Liu, S. De Mello, X. Wang, J. Kautz, M.-H. Yang. *Joint-task Self-supervised Learning for
#   Temporal Correspondence* (UVC). NeurIPS 2019.
# - Z. Lai, W. Xie. *Self-supervised Learning for Video Correspondence Flow.* BMVC 2019.
