# %% [markdown]
# # Chapter 4: Momentum memory and online adaptation
#
# Zhu, Zhang, Fu, Guo & Xie (2020) keep MAST's proxy task (reconstruct a dropped Lab channel of the target
# from a reference frame, Huber loss) and change two things. **Training:** the target and the reference go
# through *two* encoders, as in MoCo: a *query* encoder trained by back-propagation and a *key* encoder that
# follows it as a moving average; the memory is read in a window centred on each pixel (no ROI search).
# **Testing:** after propagating the masks through a video, a small U-Net is trained *from scratch on that
# video alone*, with the propagated masks as pseudo labels; its predictions are the final masks (*online
# adaptation*). The authors released no code: this chapter is an open version of the paper, and every
# choice the paper leaves open is listed in section 8 (what the paper says, what we chose, why).
#
# **Learning goals**
# - write the momentum update and see what it does to the two encoders over training;
# - build the loss from scratch (two encoders, windowed attention centred at each pixel, Huber) and check it
#   against `vos_lab.methods.momentum`;
# - see the *deep-image-prior* effect: a U-Net fits the structure of a mask before its noise;
# - adapt a U-Net per video on propagated masks and compare with plain propagation, frame by frame;
# - ablate the momentum encoder, the adaptation's length and the source of the pseudo labels.

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
SHOWCASE = "soccerball"  # the real sequence of section 6 (fast motion: propagation loses the ball)
DIP_ITERS = 300  # iterations of the deep-image-prior demonstration (cpu/gpu; smoke uses 20)

# %% [markdown]
# ## Setup

# %%
# %matplotlib inline
import dataclasses
import functools
import json

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from vos_lab import zoo
from vos_lab.adaptation import AdaptConfig, adapt_video, fit_unet, resize_ids, resize_inputs
from vos_lab.cache import MANIFEST, reuse_or_compute
from vos_lab.course import exercises, plots
from vos_lab.course.notebook import HOME, checkpoint_key, setup, training_sources
from vos_lab.data.clips import ClipSampler, synthetic_videos
from vos_lab.data.davis import DavisDataset
from vos_lab.data.synthetic import write_synthetic_davis
from vos_lab.evaluation import predict_sequence, read_results, write_sequence
from vos_lab.methods.mast import dropped_channel
from vos_lab.methods.momentum import TEST_ENCODER, MomentumMethod, momentum_at, weight_distance
from vos_lab.metrics import evaluate_sequence, region_similarity, summarize
from vos_lab.propagation import PropagationConfig

lab = setup(globals(), TRAIN_DATA=(str, None), CHECKPOINTS=str, SHOWCASE=str, DIP_ITERS=int)
P = lab.profile
SMOKE = P.name == "smoke"
SOURCES = training_sources(TRAIN_DATA, P)  # TRAIN_DATA None: see default_training_data
CHECKPOINT_DIR = HOME / CHECKPOINTS
RUNS = HOME / "runs" / "ch04" / P.name  # cached masks (git-ignored)
ADAPT = AdaptConfig.from_profile(P, seed=SEED)  # the profile's online adaptation
print(lab)
print("training data:", SOURCES, "| checkpoints:", CHECKPOINT_DIR, "| adaptation:", ADAPT)

# %% [markdown]
# ## 1. Two encoders and the momentum update
# Chapter 3's MAST encodes the target $I_t$ and the reference $I_r$ with one network $f_\theta$. Here the target
# goes through the **query** encoder $f_{\theta_q}$ and the reference through the **key** encoder
# $f_{\theta_k}$; only $\theta_q$ gets gradients. After every optimiser step the key follows the query:
# $$\theta_k \leftarrow m\,\theta_k + (1-m)\,\theta_q, \qquad m \in [0, 1).$$
# With $m$ close to 1 the key encoder is an average of the query encoders of the last $\approx 1/(1-m)$ steps:
# the features the target is matched against change slowly and consistently (He et al., MoCo, 2020). The
# paper takes MoCo's $m = 0.999$. For short runs we warm $m$ up, $m_t = \min(m, \frac{1+t}{10+t})$: the key
# follows quickly at first (section 8 says why).
#
# **Exercise 4.1.** Write `momentum_update(key, query, m)`: move every parameter of the network `key` toward
# the same parameter of `query`, in place and without gradient; `query` must not change.

# %%
def momentum_update(key: torch.nn.Module, query: torch.nn.Module, m: float) -> None:
    raise NotImplementedError  # your code here


exercises.check_momentum_update(momentum_update)

# %% [markdown] jupyter={"source_hidden": true}
# **Solution**: `exercises.show_solution(4, "momentum_update")`, or `notebooks/solutions/ch04.py`.

# %%
steps = np.arange(0, 20_000)
fig, ax = plt.subplots(figsize=(5, 2.6))
for schedule in ("constant", "warmup"):
    ax.plot(steps, [momentum_at(int(s), 0.999, schedule) for s in steps], label=schedule)
ax.set(xscale="log", xlabel="training step", ylabel="momentum m", title="Momentum schedules (m = 0.999)")
ax.legend();
assert momentum_at(0, 0.999, "warmup") < 0.2 and momentum_at(19_999, 0.999, "warmup") == 0.999

# %% [markdown]
# ## 2. The loss from scratch
# For a pair (reference $r$, target $t$) of Lab frames with one of a/b zeroed in both (chapter 3), each target
# cell $j$ reads the reference's dropped channel $v$ in the $(2R+1)^2$ window centred on $j$ itself:
# $$\hat v_j = \sum_{i \in W(j)} \operatorname{softmax}_i\big(q_j^\top k_i / T\big)\, v_i, \quad
#   q = f_{\theta_q}(I_t),\ k = f_{\theta_k}(I_r), \qquad \mathcal{L} = \operatorname{Huber}(\hat v, v_t).$$
# Below: the windowed attention with `F.unfold` (as in chapter 3), the dropped channel drawn as MAST draws it,
# the reference encoded by the key encoder without gradient. Same weights, batch and seed: the package's
# `MomentumMethod.loss` must agree, and after one step the key must have moved by $(1-m)(\theta_q - \theta_k)$.

# %%
def window_read(query, keys, values, radius, temperature):
    """query, keys (B, C, h, w), values (B, 1, h, w) -> (B, h, w): softmax over each cell's own window."""
    b, c, h, w = query.shape
    side = 2 * radius + 1
    k = F.unfold(keys, side, padding=radius).view(b, c, side * side, h * w)
    v = F.unfold(values, side, padding=radius).view(b, side * side, h * w)
    inside = F.unfold(torch.ones(1, 1, h, w), side, padding=radius).view(1, side * side, h * w)
    scores = torch.einsum("bcq,bcwq->bwq", query.flatten(2), k).masked_fill(inside == 0, float("-inf"))
    return (torch.softmax(scores / temperature, dim=1) * v).sum(1).view(b, h, w)


def momentum_loss(method, batch, radius=6, temperature=1.0):
    b = batch["inputs"].shape[0]
    channel = 1 + torch.randint(0, 2, (b,))  # 1 = a, 2 = b, the same in both frames
    keep = torch.ones(b, 1, 3, 1, 1)
    keep[torch.arange(b), 0, channel] = 0.0
    inputs = batch["inputs"] * keep
    target = method.encoder(inputs[:, 1]).float()  # query encoder: gradient
    with torch.no_grad():
        reference = method.key_encoder(inputs[:, 0]).float()  # key encoder: none
    values = dropped_channel(batch["lab"], channel, target.shape[-2:], 20.0)  # (B, 2, h, w), chapter 3
    predicted = window_read(target, reference, values[:, :1], radius, temperature)
    return F.smooth_l1_loss(predicted, values[:, 1])


# %%
torch.manual_seed(SEED)
SMALL = {"width": 8, "multipliers": (1, 2, 2, 2), "embed_dim": 16}  # a tiny trunk: the check runs in a second
toy = MomentumMethod(**SMALL, momentum=0.9, momentum_schedule="constant")
toy_videos = synthetic_videos(2, 12, 64, 64, seed=SEED)
pairs = toy.prepare(ClipSampler(toy_videos, 2, toy.gaps, crop=48, seed=SEED).batch(3), torch.device("cpu"))
for seed in range(3):
    torch.manual_seed(seed)
    ours = momentum_loss(toy, pairs)
    torch.manual_seed(seed)
    theirs, logs = toy.loss(pairs, 0)
    assert torch.allclose(ours, theirs, atol=1e-5), (seed, float(ours), float(theirs))
print(f"momentum_loss = MomentumMethod.loss: {theirs.item():.4f} (copying from the same place: "
      f"{logs['copy_same_place']:.4f})")

# %%
optimizer = torch.optim.Adam(toy.parameters(), lr=1e-2)
key_before = [p.clone() for p in toy.key_encoder.parameters()]
optimizer.zero_grad()
theirs.backward()
assert all(p.grad is None for p in toy.key_encoder.parameters()), "the key encoder gets no gradient"
optimizer.step()
toy.after_step(0)  # what the training loop calls after each optimiser step
for before, k, q in zip(key_before, toy.key_encoder.parameters(), toy.encoder.parameters(), strict=True):
    assert torch.allclose(k, 0.9 * before + 0.1 * q, atol=1e-6)
print(f"after one step: |key - query| = {weight_distance(toy.key_encoder, toy.encoder):.4f}")

# %% [markdown]
# ## 3. Training (load-or-train)
# A matching checkpoint of the model zoo (`python -m vos_lab zoo build`) or of `CHECKPOINTS` is loaded; otherwise
# the method trains into `CHECKPOINTS` (resuming an interrupted run), with the cpu profile's 800 steps of 8 pairs
# at 192 px, crop jitter and learning-rate decay, as MAST in chapter 3. From the command line: `python -m vos_lab
# train momentum --profile cpu --data ../shared/data/videos --out checkpoints/ch04-momentum-cpu.pt` (`--data
# embedded` without the real clips). Chapter 3's MAST (the same loss with one shared encoder) is loaded or trained
# the same way for the ablation of section 7.

# %%
momentum = zoo.trained("ch04-momentum", P, SOURCES, folder=CHECKPOINT_DIR, seed=SEED, device=DEVICE)
mast = zoo.trained("ch03-mast", P, SOURCES, folder=CHECKPOINT_DIR, seed=SEED, device=DEVICE)  # chapter 3's
for name, result in [("momentum", momentum), ("MAST", mast)]:
    print(f"{name}: {result.step} steps in {result.seconds / 60:.1f} min on {result.data or 'unrecorded data'}; "
          f"last loss {result.history[-1]['loss']:.3f}")

# %%
history = momentum.history
fig, axes = plt.subplots(1, 2, figsize=(9, 3))
for key in ("loss", "copy_same_place"):
    values = np.array([h[key] for h in history])
    n = min(20, len(values))
    axes[0].plot(np.convolve(values, np.ones(n) / n, mode="valid"), label=key)
axes[0].set(title="Training loss (moving average)", xlabel="step", ylabel="Huber loss")
axes[0].legend()
axes[1].plot([h["step"] for h in history], [h["key_query_distance"] for h in history])
axes[1].set(title="Key encoder behind the query", xlabel="step", ylabel="|theta_k - theta_q| (L2)");
final = weight_distance(momentum.method.key_encoder, momentum.method.encoder)
print(f"key-query distance at the end: {final:.3f}")
assert final > 0 and history[0]["key_query_distance"] == 0.0

# %% [markdown]
# The key starts as a copy of the query (distance 0). While the query moves fast the key lags behind and
# the distance grows; as the learning rate decays the query slows down and the key catches up. The key is
# a smoothed query: the average of recent query encoders.
#
# ## 4. Which encoder gives the test-time features?
# The paper propagates with the key encoder (as MoCo keeps the key encoder). Both are usable; we measure both
# with the protocol of chapter 1 (frame 0 + 7 recent frames, top-5, radius 12, tau 0.1) on the profile's
# real sequences (cpu: the first 40 frames of the first 4 development sequences at 480p), else on a small
# synthetic video. Masks are cached under `runs/ch04/` with a manifest of what they came from (checkpoint
# hash and step, protocol, frames: `vos_lab.cache`).

# %%
synthetic = None if lab.davis is not None and not SMOKE else {
    "sequences": 1, "frames": P.eval_max_frames or 8, "height": 96, "width": 160, "seed": SEED}
if synthetic is None:
    dataset = DavisDataset(lab.davis, split="val" if (lab.davis / "ImageSets" / "2017").is_dir() else "train")
else:
    reuse_or_compute(RUNS / "synthetic", synthetic, lambda: write_synthetic_davis(RUNS / "synthetic", **synthetic))
    dataset = DavisDataset(RUNS / "synthetic")
ALL = dataset.names[: P.eval_sequences]
showcase = SHOWCASE if SHOWCASE in dataset.names else ALL[0]  # section 6
SEQUENCES = {s.name: s.head(P.eval_max_frames) for s in dataset.sequences(sorted({*ALL, showcase}))}
PROTOCOL = PropagationConfig()


def frames_of(sequence):
    return np.stack([sequence.frame(t) for t in range(len(sequence))])


def propagated(encoder, name, features, names=None):
    """Masks of the sequences `names` (default: ALL) in runs/ch04/<name>/<sequence>, cached by `features`."""
    for seq in (SEQUENCES[n] for n in names or ALL):
        key = {"features": features, "synthetic": synthetic, "dataset": str(dataset.root),
               "protocol": dataclasses.asdict(PROTOCOL), "sequence": seq.name, "frames": seq.frame_names}
        reuse_or_compute(RUNS / name / seq.name, key, functools.partial(
            write_sequence, RUNS / name / seq.name, seq.frame_names, predict_sequence(encoder, seq, PROTOCOL)))
    return name


def scores(name, names=None):
    """{sequence: (per-object scores)} of the cached masks runs/ch04/<name>."""
    result = {}
    for seq in (SEQUENCES[n] for n in names or ALL):
        gt, void = seq.masks()
        result[seq.name] = evaluate_sequence(gt, read_results(RUNS / name, seq), void, len(seq.object_ids))
    return result


def jf(name, names=None):
    return summarize(scores(name, names))[0]["J&F-Mean"]


# %%
key_of = {name: checkpoint_key(run.path) for name, run in [("momentum", momentum), ("mast", mast)]}  # masks' key
test_time = {}
for which in ("key", "query"):
    encoder = momentum.method.frame_encoder(which).to(lab.device).eval()
    test_time[which] = jf(propagated(encoder, f"momentum-{which}", {**key_of["momentum"], "encoder": which}))
    print(f"{which} encoder: J&F {test_time[which]:.3f}")
DEFAULT = TEST_ENCODER
print(f"the package's default test-time encoder: {DEFAULT}")

# %% [markdown]
# Measured (cpu profile, `TRAIN_DATA="../shared/data/videos"`, first 40 frames of bear, boat,
# breakdance-flare, car-turn at 480p): key encoder J&F 0.812 (J 0.803, F 0.820), query encoder 0.814 (J 0.803,
# F 0.825). The query is the better of the two by 0.2 points, well within the 1-2 points that reruns move, so
# either is a fine choice; the package keeps the better one, the query (`vos_lab.methods.momentum.TEST_ENCODER`;
# `frame_encoder("key")` gives the other). After 800 steps the key is a smoothed copy of the query (section 3),
# so they are close.
#
# ## 5. The deep-image-prior idea on one frame
# Ulyanov, Vedaldi & Lempitsky (2018) noticed that a randomly initialised convolutional network, trained to
# reproduce one corrupted image, reproduces its *structure* long before its *noise*: convolutions with shared
# weights find smooth, image-aligned shapes easier to produce than unstructured errors. Online adaptation
# relies on this: the pseudo labels are noisy (propagation errors), the U-Net fits what is consistent with
# the image, and stopping early keeps the noise out. Below a U-Net (`vos_lab.models.unet`) learns to map
# one frame to its ground-truth mask corrupted by random blocks; we follow its output, its agreement (IoU)
# with the clean mask and with the noisy target.

# %%
dip_seq = SEQUENCES[ALL[0]]  # a large object (bear in the development data)
frame, (clean, _) = dip_seq.frame(0), dip_seq.mask(0)
size = 32 if SMOKE else 128
image = resize_inputs(frame[None], size)
clean_small = resize_ids(clean[None].clip(0, 1), image.shape[-2:])  # object vs background
g = torch.Generator().manual_seed(SEED)
blocks = torch.rand(1, 1, image.shape[-2] // 4, image.shape[-1] // 4, generator=g) < 0.15  # 15% of 4x4 blocks flip
flip = F.interpolate(blocks.float(), size=image.shape[-2:], mode="nearest")[:, 0].bool()
noisy = torch.where(flip, 1 - clean_small, clean_small)
iters = 20 if SMOKE else DIP_ITERS
marks = sorted({0, *np.unique(np.geomspace(1, iters, 12).round().astype(int)).tolist()})
dip = fit_unet(image.to(lab.device), noisy, 2, AdaptConfig(iters=iters, size=size, width=8, lr=1e-2, seed=SEED),
               snapshots=marks, progress=not SMOKE, desc="deep image prior")
iou = {name: [region_similarity(target[0].numpy() == 1, dip.snapshots[t][0].numpy() == 1) for t in marks]
       for name, target in (("clean mask", clean_small), ("noisy target", noisy))}

# %%
strip = [t for t in marks if t > 0][:: max(1, len(marks) // 5)][:5]
fig, axes = plt.subplots(1, len(strip) + 2, figsize=(2.0 * (len(strip) + 2), 2.2))
for ax, (label, mask) in zip(axes, [("clean", clean_small[0]), ("noisy target", noisy[0])]
                             + [(f"iteration {t}", dip.snapshots[t][0]) for t in strip], strict=True):
    ax.imshow(mask, cmap="gray", vmin=0, vmax=1)
    ax.set(title=label, xlabel="x (px)", ylabel="y (px)", xticks=[], yticks=[])
fig.suptitle(f"A U-Net fitting a noisy mask ({dip_seq.name}, frame 0): structure first, noise later");
fig, ax = plt.subplots(figsize=(5, 2.8))
for name, values in iou.items():
    ax.plot(marks, values, "o-", label=f"IoU with the {name}")
ax.set(xscale="symlog", xlabel="iteration", ylabel="IoU", title="What the U-Net has fitted", ylim=(0, 1.02))
ax.legend();
best = int(np.argmax(iou["clean mask"]))
print(f"best agreement with the clean mask {iou['clean mask'][best]:.3f} at iteration {marks[best]}; "
      f"noisy target's own IoU with the clean mask {region_similarity(clean_small[0] == 1, noisy[0] == 1):.3f}")

# %% [markdown]
# Early on the output is smoother than its target and closer to the *clean* mask than the target itself is;
# with many more iterations it learns the noise blocks too (the IoU with the noisy target keeps rising while
# the IoU with the clean mask falls back). Measured in the cpu profile (bear, 128 px, 300 iterations): the
# noisy target has an IoU of 0.40 with the clean mask; the U-Net's output reaches 0.72-0.86 at iteration 63
# (1 or 2 threads), then falls to 0.45 at iteration 300 while its IoU with the noisy target rises from 0.35
# to 0.79. Online
# adaptation stops after a few hundred iterations (of a whole video, not of one frame) for this reason.
#
# ## 6. Online adaptation on a video
# For each video: propagate the masks (section 4), then train a U-Net from scratch on (frame, propagated
# mask) pairs, one output channel per object plus the background, loss pixel-wise cross-entropy + Dice,
# random frames and left-right flips (`vos_lab.adaptation.adapt_video`). The only ground truth it sees is
# frame 0's annotation, which is its pseudo label for frame 0 (propagation starts from it). Its predictions,
# upsampled to the frame, replace the propagated masks. Command line: `python -m vos_lab propagate ...
# --online-adapt [--adapt-iters N]`. Here the adaptation is cached like the masks it starts from.

# %%
def adapted(pseudo, iters=None, names=None):
    """Online adaptation on the cached masks runs/ch04/<pseudo> -> runs/ch04/<pseudo>-adapt<iters>."""
    config = dataclasses.replace(ADAPT, iters=iters or ADAPT.iters)
    name = f"{pseudo}-adapt{config.iters}"
    for seq in (SEQUENCES[n] for n in names or ALL):
        source = json.loads((RUNS / pseudo / seq.name / MANIFEST).read_text())["key"]
        key = {"pseudo_labels": source, "adapt": dataclasses.asdict(config)}
        reuse_or_compute(RUNS / name / seq.name, key, lambda seq=seq: write_sequence(
            RUNS / name / seq.name, seq.frame_names, adapt_video(frames_of(seq), read_results(RUNS / pseudo, seq),
                                                                 config, lab.device, not SMOKE, f"adapt {seq.name}")))
    return name


base = propagated(momentum.method.frame_encoder().to(lab.device).eval(), f"momentum-{DEFAULT}",
                  {**key_of["momentum"], "encoder": DEFAULT}, [showcase])
after = adapted(base, names=[showcase])
show_seq = SEQUENCES[showcase]
frames = frames_of(show_seq)
gt, _ = show_seq.masks()
rows = {"ground truth": gt, "propagation": read_results(RUNS / base, show_seq),
        f"adapted ({ADAPT.iters} it.)": read_results(RUNS / after, show_seq)}
plots.masks_over_time(frames, rows, title=f"{showcase}: propagation vs online adaptation");

# %%
curves = {name: region_similarity(gt > 0, masks > 0) for name, masks in rows.items() if name != "ground truth"}
plots.curves_over_time(curves, f"{showcase}: J per frame (all objects as one)", "J (IoU)");
for name, values in curves.items():
    print(f"{name:>22}: mean J over frames 1..T-2 {values[1:-1].mean():.3f}")

# %% [markdown]
# ## 7. Ablations
# Each row changes one thing, on the profile's sequences (cpu: 40 frames of 4 sequences; smoke: a tiny
# synthetic video, so the numbers mean nothing there):
# - **momentum vs a shared encoder:** this chapter's model against chapter 3's MAST, the same loss, data,
#   steps and seed with one encoder for both frames;
# - **adaptation off / 50 / 200 iterations** on this model's pseudo labels (the profile's default is
#   `adapt_iters`);
# - **pseudo labels** from chapter 3's MAST instead of this model, adapted with the profile's default.

# %%
few, many = (2, 4) if SMOKE else (50, 200)
mast_masks = propagated(mast.method.frame_encoder().to(lab.device).eval(), "mast", key_of["mast"])
ours = propagated(momentum.method.frame_encoder().to(lab.device).eval(), f"momentum-{DEFAULT}",
                  {**key_of["momentum"], "encoder": DEFAULT})
ablations = {"MAST (shared encoder), propagation": jf(mast_masks),
             "momentum, propagation (no adaptation)": jf(ours),
             f"momentum + adaptation {few} it.": jf(adapted(ours, few)),
             f"momentum + adaptation {many} it.": jf(adapted(ours, many)),
             f"MAST pseudo labels + adaptation {ADAPT.iters} it.": jf(adapted(mast_masks)),
             f"momentum pseudo labels + adaptation {ADAPT.iters} it.": jf(adapted(ours))}
for name, value in ablations.items():
    print(f"{name:>48}: {value:.3f}")
fig, ax = plt.subplots(figsize=(7, 3.2))
ax.barh(list(ablations)[::-1], list(ablations.values())[::-1], color="tab:blue")
ax.set(xlabel="J&F-Mean", title=f"Ablations on {len(ALL)} sequence(s) ({P.name} profile)", xlim=(0, 1));
assert all(0 <= value <= 1 for value in ablations.values())

# %% [markdown]
# ## 8. What the paper says, what we chose, and why
# The authors released no code, so these are our readings of the paper; each is an option or a parameter.
#
# | choice | the paper says | we chose | why |
# |---|---|---|---|
# | encoder | ResNet-18, 384 px | course trunk, stride 8 (cpu 192 px, gpu 256 px) | one trunk for all chapters (a) |
# | window | centred at each pixel | radius 6 cells in training, 12 at test | MAST's radius; one protocol |
# | loss | Huber | MAST's `reconstruction_loss`, shared | the paper builds on MAST |
# | momentum | as MoCo (0.999) | 0.999 after a warm-up | short runs (b) |
# | key batch norm | not said | the key's own statistics | MoCo's practice |
# | test features | not said | the query encoder | measured in section 4 |
# | frame pairs | as MAST | gaps {2, 5, 8} | MAST's |
# | U-Net | 480x480, ~200 iterations | width 16, height 480, 200 it. (gpu) | no widths given (c) |
# | adaptation loss | CE + Dice | CE + soft Dice, weight 1 | as written |
# | adaptation data | propagated masks | all frames, batches of 2, flips | nothing else is described (d) |
# | final mask | the U-Net's output | its argmax at full size | frame 0 is never scored |
# | objects | not said | one channel each + background | DAVIS-2017 protocol |
#
# (a) The gpu profile keeps the papers' widths (1, 2, 4, 4) x 64. (b) With 800 steps a constant 0.999 would
# leave the key about 45% at its random initialisation ($0.999^{800}$); the warm-up $\min(m, \frac{1+t}{10+t})$
# is the usual one of moving averages, and `momentum_schedule="constant"` is MoCo's. (c) The cpu profile
# uses width 8 and height 96 (seconds per video on a laptop) with the paper's 200 iterations (60 underfit,
# section 9); frames keep their aspect ratio instead of being squeezed to a square. (d) Frame 0's pseudo
# label is its annotation; Adam at 1e-3; the seed fixes the U-Net's initialisation and the draws.
#
# ## 9. Measured results
# cpu profile, models trained 800 steps on the 8 real clips of `../shared/data/videos` (`python -m vos_lab train
# momentum --profile cpu --data ../shared/data/videos --out checkpoints/ch04-momentum-cpu.pt`: 22.7 minutes on
# one thread of a machine loaded 6-9x over its 2 cores), all 14 sequences of `../shared/data/davis2016-dev` at
# 480p (941 frames), the protocol of chapter 1, this chapter's model with its key encoder's features; online
# adaptation with the cpu profile's U-Net (width 8, height 96):
#
# | features | J&F-Mean | J-Mean | F-Mean | J-Decay | F-Decay |
# |---|---|---|---|---|---|
# | Lab pixels (ch. 1) | 0.633 | 0.654 | 0.612 | 0.117 | 0.151 |
# | Lab pixels + adaptation, 60 iterations | 0.604 | 0.660 | 0.548 | 0.015 | -0.003 |
# | MAST (ch. 3, shared encoder, same data and steps) | **0.736** | 0.755 | 0.717 | 0.080 | 0.157 |
# | momentum (this chapter) | 0.717 | 0.736 | 0.699 | 0.088 | 0.163 |
# | momentum + adaptation, 60 iterations | 0.643 | 0.704 | 0.582 | -0.019 | -0.010 |
# | momentum + adaptation, 200 iterations (the profile's) | 0.700 | 0.738 | 0.663 | 0.038 | 0.093 |
#
# The momentum model is 8.4 points above Lab pixels, 1.9 below MAST trained the same way: on an 800-step
# schedule the moving-average key does not pay off (MoCo's key pays off over long trainings; here the loss has
# no negatives to keep consistent). Online adaptation keeps J (0.736 to 0.738) and halves the decay over the
# video, but costs 3.6 points of F: a 96-pixel-high U-Net upsampled to 480p draws coarse boundaries; overall
# J&F **does not improve** (-1.7). Per sequence it rescues the ones where propagation loses the object:
# soccerball 0.718 to 0.791 (the ball behind the tree, section 6), breakdance-flare 0.700 to 0.756,
# dog-agility 0.631 to 0.660, and loses on the easy ones (surf 0.877 to 0.801). 60 iterations underfit the
# pseudo labels (-7.4), hence the profile's 200. The paper's setting (480 px, the gpu profile) is unmeasured
# (no GPU). Adaptation cost 0.65 s per frame of video here (`python -m vos_lab bench adapt --profile cpu
# --features lab --davis ../shared/data/davis2016-dev --split train --sequence soccerball`, 60 iterations:
# 0.42 s/frame, peak 292 MiB). Reruns move J&F by 1-2 points.
#
# ## Summary
# - The momentum encoder turns MAST's single network into a query (trained) and a key (its moving average):
#   the reference features change slowly, the update is one line after each optimiser step.
# - The memory read-out is MAST's windowed attention centred on each pixel, with no ROI search.
# - Online adaptation trains a U-Net per video on its own propagated masks; the deep-image-prior effect makes
#   it fit what is consistent across frames before the propagation's errors.
#
# ## Exercises
# 1. (Section 1) The momentum update (`momentum_update`).
# 2. Train with `momentum_schedule="constant"` (the paper's 0.999) for the same 800 steps and compare the key
#    and the query encoders at test time. What does the key encoder hold after so few steps?
# 3. Adapt with `dice_weight=0` (cross-entropy only) on a sequence with a small object (`soccerball`). Why does
#    Dice matter for small objects?
# 4. Feed the U-Net Lab instead of RGB, or add the propagated soft labels as extra input channels.
#
# ## References
# - F. Zhu, L. Zhang, Y. Fu, G. Guo, W. Xie. *Self-supervised Video Object Segmentation.* arXiv 2006.12480, 2020.
# - K. He, H. Fan, Y. Wu, S. Xie, R. Girshick. *Momentum Contrast for Unsupervised Visual Representation
#   Learning.* CVPR 2020.
# - Z. Lai, E. Lu, W. Xie. *MAST: A Memory-Augmented Self-supervised Tracker.* CVPR 2020.
# - D. Ulyanov, A. Vedaldi, V. Lempitsky. *Deep Image Prior.* CVPR 2018.
# - O. Ronneberger, P. Fischer, T. Brox. *U-Net: Convolutional Networks for Biomedical Image Segmentation.*
#   MICCAI 2015.
# - F. Milletari, N. Navab, S.-A. Ahmadi. *V-Net* (the Dice loss). 3DV 2016.
