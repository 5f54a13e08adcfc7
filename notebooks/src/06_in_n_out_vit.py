# %% [markdown]
# # Chapter 6: In-N-Out generative learning with a Vision Transformer
#
# Chapters 2-5 trained CNNs to *reconstruct* one frame from another. INO (Pan et al., ACM MM 2022) trains a
# **Vision Transformer** (ViT) by *self-distillation*: a student network learns to predict what a slowly moving
# copy of itself, the teacher, outputs for other views of the video. "Out" of the image, the class token of a
# small local view (or of the other frame) must imagine the teacher's view of the whole; "in" the image, masked
# patches must imagine the teacher's tokens at their place; and the frame-to-frame affinities of student and
# teacher must agree. The ViT's patch tokens, one per 8x8 pixels, are then features for the same label
# propagation as before.
#
# **Learning goals**
# - cut a frame into patches and tokens, and build the ViT's patch embedding from scratch (timm's
#   `VisionTransformer`, no pretrained weights);
# - draw multi-crop views of two frames;
# - build DINO's centring and sharpening, and INO's three losses, and check them against `vos_lab`;
# - write the masked-token (in-generative) loss yourself (exercise);
# - train INO (load-or-train), look at the class-token attention of each head before and after training, and
#   find which block's tokens propagate best;
# - ablate each loss and compare with the earlier chapters under one protocol.

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

# %% [markdown]
# ## Setup

# %%
# %matplotlib inline

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from vos_lab import zoo
from vos_lab.cache import reuse_or_compute
from vos_lab.colour import to_input, to_unit_rgb
from vos_lab.course import exercises, plots
from vos_lab.course.notebook import (
    HOME,
    cached_predictions,
    checkpoint_key,
    eval_subset,
    setup,
    training_sources,
)
from vos_lab.data.crops import multi_crop
from vos_lab.data.davis import DavisDataset
from vos_lab.data.synthetic import write_synthetic_davis
from vos_lab.evaluation import score_results
from vos_lab.features import build_encoder
from vos_lab.methods.ino import (
    GLOBAL_SCALE,
    LOCAL_SCALE,
    affinity_loss,
    out_generative_loss,
    patch_masks,
)
from vos_lab.models.dino import Centre, distillation_cross_entropy
from vos_lab.propagation import PropagationConfig
from vos_lab.training.run import method_for_profile

lab = setup(globals(), TRAIN_DATA=(str, None), CHECKPOINTS=str, ABLATION_STEPS=(int, None))
P = lab.profile
SMOKE = P.name == "smoke"
SOURCES = training_sources(TRAIN_DATA, P)  # TRAIN_DATA None: see default_training_data
CHECKPOINT_DIR = HOME / CHECKPOINTS
RUNS = HOME / "runs" / "ch06" / P.name  # cached propagation results
print(lab)
print("training data:", SOURCES, "| checkpoints:", CHECKPOINT_DIR)

# %% [markdown]
# The data: the profile's real sequences (DAVIS-2016 development copy when present, else a synthetic DAVIS
# folder), cut to `eval_sequences` x `eval_max_frames` (cpu: the first 40 frames of 4 sequences).

# %%
subset = eval_subset(lab)  # the sequences and frames of every chapter (the zoo's J&F too)
synthetic = None if subset is not None else {
    "sequences": 1, "frames": P.eval_max_frames or 8, "height": 96, "width": 160, "seed": SEED}
if subset is not None:
    dataset, ALL = subset
else:
    reuse_or_compute(RUNS / "synthetic", synthetic, lambda: write_synthetic_davis(RUNS / "synthetic", **synthetic))
    dataset = DavisDataset(RUNS / "synthetic", max_frames=P.eval_max_frames)
    ALL = dataset.names[: P.eval_sequences]
sequences = dataset.sequences(ALL)
frame = sequences[0].frame(0)
print(f"{len(sequences)} sequence(s):", {s.name: len(s) for s in sequences})

# %% [markdown]
# ## 1. Patches and tokens
# A ViT/8 cuts the frame into 8x8-pixel patches. Each patch (3 x 8 x 8 = 192 numbers) is mapped by one linear
# layer to a **token** of width $D$; a learned **class token** is put in front, and a learned **position
# embedding** is added to every token (resampled to the frame's grid). Transformer blocks then let every token
# attend to every other. A 854x480 frame gives $107 \times 60 = 6420$ patch tokens: after any block they form a
# feature map of stride 8, exactly what label propagation needs.

# %%
fig, ax = plt.subplots(figsize=(7, 4))
ax.imshow(frame)
h, w = frame.shape[:2]
step = 8 if SMOKE else 32  # draw every 4th grid line (cpu/gpu) so the picture stays readable
ax.set_xticks(np.arange(0, w, step) - 0.5, minor=True)
ax.set_yticks(np.arange(0, h, step) - 0.5, minor=True)
ax.grid(which="minor", color="white", linewidth=0.3)
ax.add_patch(plt.Rectangle((200 - 0.5, 200 - 0.5), 8, 8, fill=False, edgecolor="red", linewidth=1.5))
ax.set(title=f"{sequences[0].name}: {-(-h // 8)} x {-(-w // 8)} patches of 8x8 px (grid every {step} px; "
             "one patch in red)", xlabel="x (pixels)", ylabel="y (pixels)");

# %% [markdown]
# The patch embedding is a convolution with an 8x8 kernel and stride 8, i.e. `unfold` into patches followed by
# one matrix product. We build the tokens of a small image from scratch and check them against timm's
# `patch_embed` and against `vos_lab.models.vit.ViT.embed` (class token, position embedding, and the **mask
# token** that replaces hidden patches in section 5).

# %%
torch.manual_seed(SEED)
model = method_for_profile("ino", P).eval()  # the chapter's model, untrained: a student ViT and its EMA teacher
vit = model.student["vit"]
size = model.config["global_size"]
image = to_input(frame[:size, :size], "rgb")  # (1, 3, size, size), ImageNet-normalised
conv = vit.vit.patch_embed.proj
patches = F.unfold(image, kernel_size=8, stride=8)  # (1, 3*8*8, N)
tokens = (conv.weight.flatten(1) @ patches + conv.bias[:, None]).transpose(1, 2)  # (1, N, D)
assert torch.allclose(tokens, vit.vit.patch_embed(image).flatten(1, 2), atol=1e-5)
ours = torch.cat([vit.vit.cls_token, tokens], dim=1) + vit.vit.pos_embed  # class token first, then position
assert torch.allclose(ours, vit.embed(image), atol=1e-5)
hide = torch.zeros(1, size // 8, size // 8, dtype=torch.bool)
hide[0, 0, :3] = True
masked = ours.clone()
masked[:, 1:4] = vit.mask_token + vit.vit.pos_embed[:, 1:4]
assert torch.allclose(masked, vit.embed(image, hide), atol=1e-5)
print(f"{patches.shape[-1]} patches of {patches.shape[1]} values -> tokens of width {tokens.shape[-1]}; "
      f"ViT: {model.config['depth']} blocks, {model.config['heads']} heads")

# %% [markdown]
# ## 2. Multi-crop views of two frames
# INO samples two frames of a clip (the course's `ClipSampler`: one crop shared by both, moved a little) and
# cuts **views** out of each: `global_crops` large ones (80-95 % of the area, resized to `global_size`) and
# `local_crops` small ones (5-80 %, resized to `local_size`). The teacher sees only the global views; the student
# sees all of them (`vos_lab.data.crops.multi_crop`: random boxes, bilinear `roi_align`).

# %%
clip = np.stack([sequences[0].frame(0)[:, :480], sequences[0].frame(min(5, len(sequences[0]) - 1))[:, :480]])
generator = torch.Generator().manual_seed(SEED)
rgb = to_unit_rgb(clip)  # (2, 3, H, W) in [0, 1]
views = {"global": multi_crop(rgb, 1, size, GLOBAL_SCALE, generator),
         "local": multi_crop(rgb, 3, model.config["local_size"], LOCAL_SCALE, generator)}
fig, axes = plt.subplots(2, 5, figsize=(10, 4.2))
for t in range(2):
    axes[t, 0].imshow(clip[t])
    for kind, colour in (("global", "yellow"), ("local", "cyan")):
        for x0, y0, x1, y1 in views[kind][1][t].tolist():
            axes[t, 0].add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour))
    axes[t, 0].set(title=f"frame {t}: boxes", xlabel="x (px)", ylabel="y (px)")
    crops = [("global", 0), ("local", 0), ("local", 1), ("local", 2)]
    for ax, (kind, i) in zip(axes[t, 1:], crops, strict=True):
        plots.image_panel(ax, views[kind][0][t, i].permute(1, 2, 0).clamp(0, 1).numpy(), f"{kind} view {i}")
fig.suptitle("Multi-crop: one global (yellow) and three local (cyan) views per frame");

# %% [markdown]
# ## 3. Self-distillation: projection head, centring and sharpening
# Student and teacher map a token through a **projection head** (an MLP to an L2-normalised bottleneck, then a
# linear layer with unit-length rows) to $K$ logits. The teacher's distribution is **centred** and
# **sharpened**, the student's is softened:
# $$p_t = \mathrm{softmax}\big((g_t(x) - c)/\tau_t\big),\quad \tau_t = 0.04, \qquad
#   \log p_s = \log\mathrm{softmax}\big(g_s(x')/\tau_s\big),\quad \tau_s = 0.1, \qquad
#   \mathcal{L} = -\textstyle\sum_k p_t[k] \log p_s[k],$$
# with the centre $c \leftarrow 0.9\,c + 0.1\,\mathrm{mean}(g_t)$ after each batch. Centring alone would make
# the teacher uniform, sharpening alone would make one dimension win for every image: together they avoid both
# collapses (DINO, Caron et al. 2021). The teacher gets no gradient; after each step it follows the student,
# $\theta_t \leftarrow m\,\theta_t + (1-m)\,\theta_s$, with $m$ rising from 0.996 to 1 along a cosine
# (`Method.after_step`).

# %%
g = torch.Generator().manual_seed(SEED)
logits_t, logits_s = torch.randn(4, 16, generator=g) * 3, torch.randn(4, 16, generator=g)
centre = Centre(16)
centre.value += torch.randn(16, generator=g) * 0.1
ours_t = torch.softmax((logits_t - centre.value) / 0.04, dim=-1)
ours_ce = -(ours_t * F.log_softmax(logits_s / 0.1, dim=-1)).sum(-1)
assert torch.allclose(ours_t, centre.probabilities(logits_t))
assert torch.allclose(ours_ce, distillation_cross_entropy(centre.probabilities(logits_t), logits_s))
fig, ax = plt.subplots(figsize=(6, 2.6))
for tau in (1.0, 0.1, 0.04):
    ax.plot(torch.softmax(logits_t[0] / tau, -1), marker="o", label=f"tau = {tau}")
ax.set(xlabel="dimension k", ylabel="probability", title="Sharpening: one teacher output at three temperatures")
ax.legend();

# %% [markdown]
# ## 4. Out-generative learning: the class token imagines the global view
# Each global view $(t, g)$ of the teacher gives a class-token distribution $p_t^{(t,g)}$. The student must
# predict it from **every local view** (of both frames) and from the **other frame's global views**: a part of
# the scene imagines the whole (DINO's local-to-global), and one frame imagines the other (INO's inter-frame
# consistency at feature level). A view is never compared with itself, nor with the other global view of the
# same frame. The loss is the mean cross-entropy over all these pairs.

# %%
def out_generative(teacher, student_global, student_local):
    """teacher probs (B, T, G, K), student logits (B, T, G, K) and (B, T, L, K)."""
    b, frames, views, _ = teacher.shape
    terms = []
    for t in range(frames):
        for v in range(views):
            students = [student_global[:, u, w] for u in range(frames) if u != t for w in range(views)]
            students += [student_local[:, u, w] for u in range(frames) for w in range(student_local.shape[2])]
            terms += [-(teacher[:, t, v] * F.log_softmax(s / 0.1, -1)).sum(-1).mean() for s in students]
    return torch.stack(terms).mean()


teacher = torch.softmax(torch.randn(3, 2, 2, 16, generator=g) / 0.04, -1)
student_global, student_local = torch.randn(3, 2, 2, 16, generator=g), torch.randn(3, 2, 4, 16, generator=g)
assert torch.allclose(out_generative(teacher, student_global, student_local),
                      out_generative_loss(teacher, student_global, student_local), atol=1e-5)
loss = out_generative_loss(teacher, student_global, student_local)
print(f"{2 * 2 * (2 + 2 * 4)} teacher-student pairs per sample; loss {float(loss):.3f}")

# %% [markdown]
# ## 5. In-generative learning: masked patches imagine the teacher's tokens
# For the student, 10-50 % of the global views' patches are replaced by the mask token (with probability 0.5 a
# sample is masked at all, as in the authors' code). The mask is drawn **once per sample and shared by both
# frames** (and by every global view), so the same positions are hidden in both frames. At masked positions,
# the student's patch-token distribution must match the teacher's for the *unmasked* view, with a centre of
# its own for patch tokens (iBOT, Zhou et al. 2022).

# %%
side = size // 8
mask = patch_masks(4, side * side, (0.1, 0.5), probability=1.0, generator=torch.Generator().manual_seed(SEED))
view = views["global"][0][:, 0].permute(0, 2, 3, 1).clamp(0, 1)  # the global view of each frame
shown = mask[0].view(side, side).repeat_interleave(8, 0).repeat_interleave(8, 1)
fig, axes = plt.subplots(1, 3, figsize=(8, 2.9))
for t in range(2):
    plots.image_panel(axes[t], torch.where(shown[..., None], 0.5, view[t]).numpy(),
                      f"frame {t}: {int(mask[0].sum())} of {side * side} patches masked")
axes[2].bar(range(4), mask.float().mean(1))
axes[2].set(xlabel="sample", ylabel="masked fraction", title="one ratio in [0.1, 0.5] per sample", ylim=(0, 0.6))
fig.suptitle("The student's global views: the same patches hidden in both frames");

# %% [markdown]
# **Exercise 6.1.** Write `masked_token_loss(teacher, student, mask)`: teacher probabilities and student logits
# `(B, N, K)` of the patch tokens of one view per sample, `mask` `(B, N)` True where the student saw the mask
# token. Return the cross-entropy $-\sum_k p_t[k]\log\mathrm{softmax}(s/0.1)[k]$ averaged over the **masked**
# patches only (0 when no patch is masked).

# %%
def masked_token_loss(teacher: torch.Tensor, student: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    raise NotImplementedError  # your code here


exercises.check_masked_token_loss(masked_token_loss)

# %% [markdown] jupyter={"source_hidden": true}
# **Solution**: `exercises.show_solution(6, "masked_token_loss")`, or `notebooks/solutions/ch06.py`.

# %% [markdown]
# ## 6. Affinity-level inter-frame consistency
# The frame-to-frame affinity $A_{ij} = \hat z_i^{(0)\top} \hat z_j^{(1)}$ of the L2-normalised projected patch
# tokens, softmax over the next frame's tokens $j$, is what label propagation will use. The student's
# affinities (temperature 0.1, with its masked input) must match the teacher's (0.04). As in the authors'
# code, only the masked positions take part: the student must imagine hidden tokens that still point at
# the right places in the other frame.

# %%
def affinity_consistency(teacher_tokens, student_tokens, mask):
    """tokens (B, 2, N, K) of frames 0 and 1, mask (B, N)."""
    losses = []
    for b in range(len(mask)):
        idx = mask[b].nonzero()[:, 0]
        if len(idx) == 0:
            continue
        t, s = (F.normalize(x[b][:, idx], dim=-1) for x in (teacher_tokens, student_tokens))
        p = torch.softmax(t[0] @ t[1].T / 0.04, -1)
        losses.append(-(p * F.log_softmax(s[0] @ s[1].T / 0.1, -1)).sum(-1))
    return torch.cat(losses).mean() if losses else torch.tensor(0.0)


tokens_t, tokens_s = torch.randn(4, 2, side * side, 16, generator=g), torch.randn(4, 2, side * side, 16, generator=g)
assert torch.allclose(affinity_consistency(tokens_t, tokens_s, mask), affinity_loss(tokens_t, tokens_s, mask),
                      atol=1e-5)
print("affinity consistency:", round(float(affinity_loss(tokens_t, tokens_s, mask)), 3),
      "| the teacher against itself:", round(float(affinity_loss(tokens_t, tokens_t, mask)), 3))

# %% [markdown]
# ## 7. The whole loss, checked against the package
# Now the three losses on the untrained model of section 1, from its networks: the student sees the masked
# global views and the local views, the teacher the global views. We fix the views and the mask and compare
# our sum with `InoMethod.losses`, which the training loop calls.

# %%
try:
    masked_token_loss(torch.zeros(1, 1, 1), torch.zeros(1, 1, 1), torch.ones(1, 1, dtype=torch.bool))
except NotImplementedError:  # Exercise 6.1 not done yet: use the solution
    masked_token_loss = exercises.solution(6, "masked_token_loss")
inputs = to_input(clip, "rgb")
g_views = multi_crop(inputs, 1, size, GLOBAL_SCALE, torch.Generator().manual_seed(1))[0][None]  # (1, 2, 1, ...)
l_views = multi_crop(inputs, 2, model.config["local_size"], LOCAL_SCALE, torch.Generator().manual_seed(2))[0][None]
mask = patch_masks(1, side * side, probability=1.0, generator=torch.Generator().manual_seed(3))
student, teacher_net, cfg = model.student, model.teacher, model.config
with torch.no_grad():
    s_class, s_patch = student["vit"](g_views[0, :, 0], mask.expand(2, -1).reshape(2, side, side))
    t_class, t_patch = teacher_net["vit"](g_views[0, :, 0])
    s_local = student["head"](student["vit"](l_views[0].flatten(0, 1))[0]).view(1, 2, 2, -1)
    out = out_generative(model.class_centre.probabilities(teacher_net["head"](t_class)).view(1, 2, 1, -1),
                         student["head"](s_class).view(1, 2, 1, -1), s_local)
    s_tok, t_tok = student["head"](s_patch.flatten(1, 2)), teacher_net["head"](t_patch.flatten(1, 2))
    inside = masked_token_loss(model.patch_centre.probabilities(t_tok), s_tok, mask.expand(2, -1))
    consistency = affinity_consistency(t_tok[None], s_tok[None], mask)
    theirs, logs = model.losses(g_views, l_views, mask)
print({key: round(value, 4) for key, value in logs.items()})
assert np.allclose([float(out), float(inside), float(consistency)],
                   [logs["out_generative"], logs["in_generative"], logs["affinity"]], atol=1e-4)

# %% [markdown]
# ## 8. Training (load-or-train)
# A matching checkpoint of the model zoo (`python -m vos_lab zoo build`) or of `CHECKPOINTS` is loaded; otherwise
# INO trains into `CHECKPOINTS` (resuming an interrupted run). Sizes per profile
# (`vos_lab.methods.ino.PROFILE_SIZES`): the gpu profile trains ViT-S/8 (width 384, 12 blocks, 6 heads) on 224 px
# global and 64 px local views with the authors' heads (4096 logits); the cpu profile a tiny ViT/8 (width 192, 4
# blocks, 3 heads) on 96 px and 48 px views, one global and two local views per frame, 1024 logits, for the
# profile's 800 steps (about 5 minutes on 2 cores). From the command line: `python -m vos_lab train ino --profile cpu
# --data ../shared/data/videos --out checkpoints/ch06-ino-cpu.pt` (`--option in_generative=False` and so on for the
# ablations).

# %%
ino = zoo.trained("ch06-ino", P, SOURCES, folder=CHECKPOINT_DIR, seed=SEED, device=DEVICE)
path = ino.path  # the zoo's checkpoint, else CHECKPOINTS'
print(f"INO: {ino.step} steps in {ino.seconds / 60:.1f} min on {ino.data or 'unrecorded data'}; "
      f"last loss {ino.history[-1]['loss']:.3f}")
fig, ax = plt.subplots(figsize=(6, 3))
for key in ("out_generative", "in_generative", "affinity"):
    values = np.array([h[key] for h in ino.history])
    ax.plot(np.arange(1, len(values) + 1), np.convolve(values, np.ones(min(20, len(values))) / min(20, len(values)),
                                                       "same"), label=key)
ax.set(xlabel="training step", ylabel="loss (running mean)", title="INO's three losses during training")
ax.legend();

# %% [markdown]
# ## 9. What the class token looks at, head by head
# In the last block, the attention of the class token to the patch tokens shows where each head looks. DINO
# found that self-distilled ViTs learn heads that attend to objects without any label. Here before training
# (the untrained model of section 1) and after (the trained teacher), on a frame at the resolution the
# profile's test features use.

# %%
stride = ino.method.config["test_stride"]
small = F.interpolate(to_input(frame, "rgb"), scale_factor=8 / stride, mode="bilinear", antialias=True)
grid = (-(-small.shape[-2] // 8), -(-small.shape[-1] // 8))
heads = ino.method.config["heads"]
fig, axes = plt.subplots(2, heads + 1, figsize=(2.6 * (heads + 1), 3.4), squeeze=False)
for row, (name, network) in enumerate([("before", model.teacher["vit"]), ("after", ino.method.teacher["vit"])]):
    maps = network.attention(small.to(next(network.parameters()).device))[0, :, 0, 1:].view(heads, *grid).cpu()
    plots.image_panel(axes[row, 0], frame, "frame 0", f"{name} training")
    for k in range(heads):
        axes[row, k + 1].imshow(maps[k], cmap="inferno")
        axes[row, k + 1].set(title=f"{name}: head {k}", xlabel="x (tokens)", ylabel="y (tokens)")
fig.suptitle("Class-token attention of the last block, per head");

# %% [markdown]
# ## 10. Evaluation against the earlier chapters
# One protocol for every model (frame 0 + 7 recent frames, top-5, radius 12 cells, tau 0.1) on the profile's
# sequences. The masks of each model are cached under `runs/ch06/` with the checkpoint's content hash and the
# protocol (`vos_lab.cache`), so a re-run reuses them and a retrained model is never scored on old masks.
#
# *Resolution.* On a CPU a 480p frame's 6420 tokens cost about 10 s per frame through 3 blocks of the tiny
# ViT (attention grows with the square of the token count), so the cpu profile reads the frame at half size
# (`test_stride` 16: one token per 16x16 pixels, 1605 tokens, about 1 s per frame); the gpu profile keeps the
# full 480p frame (stride 8), as the paper. The labels are propagated and scored at full resolution either way.

# %%
def evaluate(encoder, name, key):
    """J&F-Mean of one encoder on the profile's sequences; masks cached in runs/ch06/<profile>/<name>/<sequence>."""
    cached_predictions(encoder, dataset, RUNS / name, PropagationConfig(), ALL,
                       {"features": key, "synthetic": synthetic}, progress=False)
    return score_results(dataset, RUNS / name, ALL, progress=False).global_row["J&F-Mean"]


# %%
ino_key = checkpoint_key(path)
table = {"lab pixels (ch. 1)": evaluate(build_encoder("lab", lab.device), "lab", "lab")}
EARLIER = {"bottleneck (ch. 2)": "ch02-bottleneck", "CorrFlow (ch. 3)": "ch03-corrflow", "MAST (ch. 3)": "ch03-mast",
           "momentum (ch. 4)": "ch04-momentum", "ContrastCorr (ch. 5)": "ch05-contrastcorr"}
for label, stem in EARLIER.items():
    earlier = zoo.checkpoint(stem, P, CHECKPOINT_DIR)  # the zoo's, else CHECKPOINTS'
    if earlier.exists():
        table[label] = evaluate(build_encoder(str(earlier), lab.device), stem, checkpoint_key(earlier))
    else:
        print(f"skipped {label}: no checkpoint {earlier.name} (run that chapter first)")
block = ino.method.config["block"]
table[f"INO (block {block})"] = evaluate(ino.method.frame_encoder().to(lab.device), f"ino-block{block}",
                                         {**ino_key, "block": block})
plots.score_bars(table, f"J&F on {len(sequences)} sequence(s) of {dataset.root.name} ({P.name} profile)");
for name, value in table.items():
    print(f"{name:>22}: {value:.3f}")

# %% [markdown]
# What we measured (cpu profile on all 14 sequences of `../shared/data/davis2016-dev`, 941 frames; INO trained on
# the 8 real clips of `../shared/data/videos`, which hold no DAVIS sequence; `python -m vos_lab train ino --profile
# cpu --steps 200 --data ../shared/data/videos --out CKPT`, then `propagate --davis ../shared/data/davis2016-dev
# --split train --features CKPT` and `evaluate`; the other rows from chapters 1-3):
#
# | features | J&F-Mean | J-Mean | F-Mean | training on 2 shared cores |
# |---|---|---|---|---|
# | lab pixels (ch. 1) | 0.633 | 0.654 | 0.612 | none |
# | bottleneck (ch. 2) | 0.685 | 0.702 | 0.669 | 800 steps, 2.9 min |
# | MAST (ch. 3) | 0.743 | 0.759 | 0.727 | 800 steps, 3.3 min |
# | INO, 200 steps (block 3, stride 16) | 0.446 | 0.464 | 0.429 | 47 min (a heavily loaded machine) |
# | INO, 800 steps (block 3, stride 16; `zoo build`, `benchmark`) | 0.411 | 0.433 | 0.389 | 4.6 min (idle cores) |
#
# The honest result: in the cpu profile INO stays far **below** Lab pixels. A transformer trained from scratch
# for a few hundred steps of 8 clips has not learnt correspondence yet: its tokens after 3 blocks are further
# from the pixels than Lab and not yet better than them. The CNNs of chapters 2-3 learn from a dense
# reconstruction of every pixel at every step; INO's losses compare a few distributions per view and need
# many more steps (the authors train ViT-S/8 for about 12 hours on 4 GPUs on Charades and report about 72 J&F
# on DAVIS-2017). The gpu profile is the faithful version; on a CPU, this chapter is about the mechanics.
#
# %% [markdown]
# ## 11. Which block propagates best?
# Every block's patch tokens are a feature map. Early blocks are close to the pixels (the patch embedding is a
# linear map of the 8x8 patch), late blocks are shaped by the projection heads' task. The authors read block 7
# of 12.

# %%
per_block = {b: evaluate(ino.method.frame_encoder(b).to(lab.device), f"ino-block{b}", {**ino_key, "block": b})
             for b in range(1, ino.method.config["depth"] + 1)}
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(list(per_block), list(per_block.values()), "o-", label="INO teacher")
ax.axhline(table["lab pixels (ch. 1)"], color="grey", linestyle="--", label="lab pixels")
ax.set(xlabel="block (1 = first)", ylabel="J&F-Mean", title="J&F of each block's patch tokens", xticks=list(per_block))
ax.legend();
print({b: round(v, 3) for b, v in per_block.items()})

# %% [markdown]
# Measured (cpu profile, the first 40 frames of 4 sequences; Lab pixels 0.630 there): after 200 steps block 1
# 0.444, block 2 0.456, block 3 0.463, block 4 0.461; after the zoo's 800 steps (`python -m vos_lab lectures
# --profile cpu --chapters 6` with the zoo) block 1 0.467, block 2 0.451, block 3 0.439, block 4 0.430. With more
# steps the late blocks drift away from correspondence while block 1 (closest to the patches) gains: the heads'
# task shapes the late blocks first. None is near Lab pixels. (The default block stays 3 of 4, the authors' depth
# ratio: choosing the block by these four sequences would be tuning on the evaluation data.)

# %% [markdown]
# ## 12. Ablations: each loss off
# Each ablation drops one loss and retrains (`ABLATION_STEPS` steps, by default the zoo's: as long as the main
# model in the cpu profile, whose run is then the base), next to a base model trained as long with all three; all
# read the default block.

# %%
ABLATIONS = {"all three losses": "base", "no out-generative": "no-out", "no in-generative": "no-in",  # vos_lab.zoo
             "no affinity consistency": "no-affinity"}
ablations = {}
for label, key in ABLATIONS.items():
    run = zoo.trained(f"ch06-ablation-{key}", P, SOURCES, folder=CHECKPOINT_DIR, seed=SEED, device=DEVICE,
                      steps=ABLATION_STEPS, progress=False)
    ablations[label] = evaluate(run.method.frame_encoder().to(lab.device), f"ablation-{key}", checkpoint_key(run.path))
for name, value in ablations.items():
    print(f"{name:>26}: {value:.3f}")
fig, ax = plt.subplots(figsize=(6, 2.8))
ax.barh(list(ablations)[::-1], list(ablations.values())[::-1], color="tab:blue")
ax.set(xlabel="J&F-Mean", title=f"Ablations ({run.step} steps each)", xlim=(0, 1));

# %% [markdown]
# Measured (cpu profile, 800 steps each, `VOS_LAB_HOME=DIR python -m vos_lab zoo build --profile cpu`, 3.5-4.6 min
# each on 2 idle cores; J&F on the first 40 frames of 4 sequences, where Lab pixels score 0.630, from the zoo's
# manifest): all three losses 0.439, no out-generative 0.379, no in-generative 0.469, no affinity consistency 0.447.
# On all 14 sequences (941 frames; `python -m vos_lab propagate --davis ../shared/data/davis2016-dev --split train
# --features ZOO/ch06-ablation-KEY-cpu.pt --out DIR`, then `evaluate`; about 110 s each):
#
# | model (800 steps) | J&F-Mean | J-Mean | F-Mean |
# |---|---|---|---|
# | all three losses (`benchmark`) | 0.411 | 0.433 | 0.389 |
# | no out-generative | 0.357 | 0.380 | 0.335 |
# | no in-generative | 0.443 | 0.459 | 0.426 |
# | no affinity consistency | 0.422 | 0.441 | 0.402 |
# | one step of training (practically the random ViT) | 0.447 | 0.465 | 0.430 |
#
# Both sets of sequences agree: dropping the class-token (out-generative) loss costs 5-6 points; dropping either
# of the other two gains 1-3 points at this budget (one seed). The last row is the sobering one: a ViT trained for
# a single step (`train ino --steps 1`) propagates as well as any of them, so 800 CPU steps of INO's losses have
# not taught this tiny ViT correspondence yet; they move its tokens towards the heads' tasks (compare the blocks
# above). None of the models is near Lab pixels (0.633): on a CPU budget this chapter shows the mechanics, the gpu
# profile the method.
#
# %% [markdown]
# ## What we changed from the paper
#
# | | INO (paper, authors' code) | this chapter |
# |---|---|---|
# | network | ViT-S/8 | gpu: ViT-S/8; cpu: width 192, 4 blocks, 3 heads; smoke: width 48, 2 blocks |
# | frames per clip | 4 (pairs 0-2, 1-3 in the out-generative loss; 3 consecutive affinities) | 2 |
# | views per frame | 1 global 224 px + 8 local 64 px | gpu: the same; cpu: 1 x 96 px + 2 x 48 px |
# | augmentation | crops, flip, colour jitter, grayscale | crops (and the sampler's flip) |
# | heads | one DINO head for class and patch tokens, 4096 logits | the same (`shared_head`); cpu 1024 logits |
# | optimiser | AdamW, weight decay 0.04 -> 0.4, warm-up, clipping, fp16 | Adam, the course's schedule; bf16 on a GPU |
# | training data | Charades / Kinetics-400, hours on 4-8 GPUs | the profile's clips; cpu: minutes on 2 cores |
# | test features | teacher, block 7 of 12, 480p (stride 8) | teacher, `block` (cpu: 3 of 4) at half size (stride 16) |
#
# ## Summary
# - A ViT/8's patch tokens form a stride-8 feature map: label propagation needs nothing new, only a choice of
#   block (and, on a CPU, of resolution: attention grows with the square of the token count).
# - Self-distillation trains without labels or reconstruction: a student matches an EMA teacher whose outputs
#   are centred and sharpened.
# - INO's "out" loss asks local views and the other frame to imagine the global view (class tokens); its "in"
#   loss asks masked patches to imagine the teacher's tokens; its affinity loss asks the student's
#   frame-to-frame affinities to match the teacher's.
#
# ## Exercises
# 1. (Section 5) The masked-token loss (`masked_token_loss`).
# 2. Train with `global_crops=2` (two global views per frame, DINO's set-up inside each frame). Which pairs does
#    the out-generative loss gain?
# 3. Compute the affinity loss on *all* tokens instead of the masked ones. What does the student then learn from
#    the teacher that it could not before?
# 4. With `test_stride` 8 and 16, compare the J&F of the same checkpoint on one sequence: what do the finer
#    tokens buy, and at what cost in seconds per frame?
#
# ## References
# - X. Pan, P. Li, Z. Yang, H. Zhou, C. Zhou, H. Yang, J. Zhou, Y. Yang. *In-N-Out Generative Learning for Dense
#   Unsupervised Video Segmentation.* ACM MM 2022 (code: github.com/pansanity666/INO_VOS).
# - M. Caron, H. Touvron, I. Misra, H. Jegou, J. Mairal, P. Bojanowski, A. Joulin. *Emerging Properties in
#   Self-Supervised Vision Transformers* (DINO). ICCV 2021.
# - J. Zhou, C. Wei, H. Wang, W. Shen, C. Xie, A. Yuille, T. Kong. *iBOT: Image BERT Pre-Training with Online
#   Tokenizer.* ICLR 2022.
# - A. Dosovitskiy et al. *An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale.* ICLR 2021.
# - R. Wightman. *PyTorch Image Models (timm).* github.com/huggingface/pytorch-image-models.
