# %% [markdown]
# # Chapter 7: One benchmark for every method
#
# Chapters 1-6 each compared a new method with the ones before it. Here they all meet: the three baselines of
# chapter 1 (RGB and Lab pixels, a random CNN) and every model trained in chapters 2-6, propagated with **one
# protocol** (frame 0 + 7 recent frames, top-5, radius 12 cells, $\tau = 0.1$) on **the same sequences** and
# scored with the official DAVIS metric. Beside accuracy we measure what each method costs to run: seconds per
# frame and peak memory. The numbers come from the same code as `python -m vos_lab benchmark`, so the table of
# this chapter and the command's files are the same numbers.
#
# **Learning goals**
# - read a benchmark table: J&F, J and F mean, recall and decay, per method and per sequence;
# - see where methods differ on an easy sequence and on a hard one, and in the affinities of one pixel;
# - weigh accuracy against cost, and find the methods worth their cost (the Pareto front, exercise);
# - compare our numbers with the published ones, and say what differs.

# %% tags=["parameters"]
PROFILE = None  # "smoke", "cpu" or "gpu"; None: $VOS_LAB_PROFILE, else "cpu"
SEED = 0  # seed of every random generator
DATA_ROOT = None  # a DAVIS folder; None: $VOS_LAB_DATA, else ../shared/data/davis2016-dev when present
DEVICE = "auto"  # "auto", "cpu" or "cuda"
INTERACTIVE = False  # True in JupyterLab for live widgets; False for papermill / nbval
PROFILE_SET = {}  # profile fields to override, e.g. {"train_steps": 400} (lectures --set)
CHECKPOINTS = None  # folder of the trained checkpoints; None: as the benchmark command (the zoo, else checkpoints/)
TRAIN_DATA = None  # None: the real clips the course's tables used when present ($VOS_LAB_DATA/videos, else
# ../shared/data/videos), else "embedded" (synthetic + bundled clips); or folders of videos/frames, comma-separated
ABLATION_METHOD = "corrflow"  # the method the ablation widget starts with (section 6)

# %% [markdown]
# ## Setup

# %%
# %matplotlib inline
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from vos_lab.benchmark import read_benchmark, run_benchmark
from vos_lab.cache import reuse_or_compute
from vos_lab.course import exercises, plots
from vos_lab.course.ablation import AblationWidget
from vos_lab.course.notebook import (
    HOME,
    changes_table,
    eval_subset,
    score_table,
    setup,
    show_markdown,
    training_sources,
)
from vos_lab.course.widgets import AffinityExplorer
from vos_lab.data.davis import DavisDataset
from vos_lab.data.synthetic import write_synthetic_davis
from vos_lab.evaluation import read_results
from vos_lab.features import build_encoder
from vos_lab.training.checkpoints import load_checkpoint

lab = setup(globals(), CHECKPOINTS=(str, None), TRAIN_DATA=(str, None), ABLATION_METHOD=str)
P = lab.profile
SOURCES = training_sources(TRAIN_DATA, P)  # TRAIN_DATA None: see default_training_data (the ablation widget trains)
SMOKE = P.name == "smoke"
CLI_OUT = HOME / "benchmark" / P.name  # where `python -m vos_lab benchmark --profile <profile>` writes by default
RUNS = HOME / "runs" / "ch07" / P.name  # this chapter's own run, when the command's results are absent
print(lab)

# %% [markdown]
# ## 1. One protocol, one table
# `vos_lab.benchmark.run_benchmark` propagates every method through every sequence, writes the masks in the
# official submission layout (`<out>/<method>/<sequence>/00000.png`) and scores them as the DAVIS toolkit does.
# Each (method, sequence) is cached with what it was computed from: the checkpoint's content hash (or the
# baseline's name), the protocol, the frames and the device. A re-run computes only what is missing, and a
# retrained model is never scored on old masks.
#
# From the command line, on every frame of every sequence (here: the 14 sequences of the development copy):
# `python -m vos_lab benchmark --profile cpu --out benchmark/cpu` (relative to the course's working folder).
# When that folder holds results, this chapter shows them; otherwise it runs the same function on the profile's
# evaluation subset (`eval_subset`: the same sequences and frames as every chapter; cpu: the first 40 frames of
# 4 sequences). In the smoke profile (CI) it runs on a small synthetic DAVIS folder and **trains nothing**:
# without checkpoints it shows the baselines only; checkpoints that chapters 2-6 left behind (a few steps each)
# are benchmarked too, and their numbers mean nothing.

# %%
result = read_benchmark(CLI_OUT)
if result is not None:
    print(f"the benchmark command's results in {CLI_OUT}")
    changed = result.changed_checkpoints()
    if changed:
        print(f"note: retrained since they were benchmarked: {', '.join(changed)} (run the command again)")
else:
    subset = None if SMOKE else eval_subset(lab)
    if subset is not None:
        dataset, names = subset
        data = {"davis": dataset.root, "split": dataset.split, "sequences": names, "frames": P.eval_max_frames}
    else:
        synthetic = {"sequences": 2, "frames": P.synthetic_frames, "height": P.synthetic_height,
                     "width": P.synthetic_width, "seed": SEED}
        reuse_or_compute(RUNS / "synthetic", synthetic, lambda: write_synthetic_davis(RUNS / "synthetic", **synthetic))
        data = {"davis": RUNS / "synthetic", "split": None, "sequences": None, "frames": None}
    result = run_benchmark(RUNS, P.name, checkpoints=CHECKPOINTS, device=lab.device.type, progress=not SMOKE, **data)
assert read_benchmark(result.setup["out"]).column("J&F-Mean") == result.column("J&F-Mean")  # = the files' numbers
methods = [row["method"] for row in result.rows]
setting = result.setup
print(f"{len(methods)} methods on {len(setting['sequences'])} sequence(s) of {setting['davis']} ({setting['split']}),"
      f" frames: {setting['frames'] or 'all'}; device {setting['device']}")
show_markdown(result.markdown())

# %% [markdown]
# What we measured on all 14 sequences of the development copy (941 frames at 480p; cpu profile, 800 training
# steps per model from the cpu model zoo, 2 idle cores; `python -m vos_lab benchmark --profile cpu --out
# benchmark/cpu`, the README's table), which this chapter shows when that folder holds them:
#
# | method | J&F | s/frame | | method | J&F | s/frame |
# |---|---|---|---|---|---|---|
# | rgb | 0.603 | 0.077 | | rgb-colourisation | **0.747** | 0.133 |
# | lab | 0.633 | 0.070 | | corrflow | 0.691 | 0.135 |
# | random-resnet18 | 0.537 | 0.490 | | mast | 0.708 | 0.151 |
# | vondrick | 0.656 | 0.148 | | momentum | 0.701 | 0.153 |
# | bottleneck | 0.697 | 0.132 | | contrastcorr | 0.668 | 0.130 |
# | | | | | ino | 0.411 | 0.109 |
#
# On the evaluation subset (4 sequences x 40 frames, the cpu render without those files) the order differs:
# bottleneck 0.815 leads and rgb pixels (0.660) beat Lab (0.630). Four short sequences are not a ranking.
#
# J and F are the region (IoU) and boundary measures of chapter 0; *mean* is over the scored frames of every
# object, *recall* the share of frames above 0.5, *decay* the loss from the first to the last quarter of the
# video (high decay: the masks drift). The last line below names the best method *of this run*.

# %%
print(score_table(result.column("J&F-Mean"), baseline="lab"))

# %% [markdown]
# ## 2. Sequence by sequence
# A mean hides which videos are hard. Each group of bars is one sequence, one bar per method.

# %%
per_sequence = result.sequence_jf()
names = setting["sequences"]
colours = plt.get_cmap("tab20")(np.linspace(0, 1, max(len(methods), 2)))
fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(names) + 2.5), 3.4))
width = 0.8 / len(methods)
for i, method in enumerate(methods):
    ax.bar(np.arange(len(names)) - 0.4 + (i + 0.5) * width, [per_sequence[method][n] for n in names], width,
           label=method, color=colours[i])
ax.set_xticks(np.arange(len(names)), names, rotation=30, ha="right")
ax.set(xlabel="sequence", ylabel="J&F-Mean", ylim=(0, 1), title="J&F of every method on every sequence")
ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0));

# %% [markdown]
# ## 3. The masks side by side
# Two sequences, chosen by the numbers above: the **easiest** (highest J&F averaged over the methods) and the
# **hardest** (lowest). On real data the hardest is typically one with fast motion, large deformation or an
# occlusion, where errors of one frame are copied into the next. Each row is one method, on the same frames.

# %%
mean_jf = {n: float(np.mean([per_sequence[m][n] for m in methods])) for n in names}
easy, hard = max(mean_jf, key=mean_jf.get), min(mean_jf, key=mean_jf.get)
print({n: round(v, 3) for n, v in sorted(mean_jf.items(), key=lambda item: -item[1])})
dataset = DavisDataset(setting["davis"], split=setting["split"], max_frames=setting["frames"])
out = result.setup["out"]
for name, label in ({easy: "easiest"} | {hard: "hardest" if hard != easy else "the only"}).items():
    sequence = dataset.sequence(name)
    times = [int(t) for t in np.linspace(1, len(sequence) - 1, 4).round()]
    gt = sequence.masks()[0]
    rows = {"ground truth": gt, **{m: read_results(f"{out}/{m}", sequence) for m in methods}}
    frames = {t: sequence.frame(t) for t in times}
    plots.masks_over_time(frames, rows, times, title=f"{label} sequence: {name} (mean J&F {mean_jf[name]:.3f})");

# %% [markdown]
# ## 4. Where one pixel points, for every method
# The affinity explorer of chapter 1 with every method's features on the same pixel of the hardest sequence
# (the centre of its first object in frame 3): one row per method, the attention over each reference frame
# (frame 0 and frame 2), circles on the top-5 matches, and the propagated mask. Good features concentrate the
# attention on the same object part; pixel colours spread it over everything of a similar colour.
# (`INTERACTIVE = True` in JupyterLab makes it live: any pixel, frame, method and setting.)

# %%
sequence = dataset.sequence(hard)
clip = np.stack([sequence.frame(t) for t in range(4)])
encoders = {}
for row in result.rows:
    if row["checkpoint"] and not Path(row["checkpoint"]).is_file():
        print(f"skipped {row['method']}: its checkpoint {row['checkpoint']} is gone")
        continue
    encoders[row["method"]] = build_encoder(row["checkpoint"] or row["method"], lab.device)
explorer = AffinityExplorer(clip, sequence.masks()[0][:4], encoder=encoders, context=1, show_masks=True)
explorer.static_figure(explorer.preset_pixels()[:1], encoders=list(encoders));
for name in encoders:
    view = explorer.view(explorer.preset_pixels()[0], encoder=name)
    assert np.isclose(float(np.asarray(view.label).sum()), 1.0, atol=1e-4)
if lab.interactive:
    display(explorer.interactive())  # noqa: F821 (IPython)

# %% [markdown]
# ## 5. Accuracy against cost
# Propagation cost is the wall-clock time per frame, encoding included (the network's forward pass plus the
# windowed attention of chapter 3), on this machine and device. Peak memory is in the table of section 1.
# A method is worth its cost when no other method is both at most as slow and at least as accurate.
#
# **Exercise 7.1.** Write `pareto_front(cost, score)`: given two dicts method -> seconds per frame and method ->
# J&F, return the methods on the **Pareto front**: those that no other method beats, where $o$ beats $m$ when
# $\text{cost}_o \le \text{cost}_m$ and $\text{score}_o \ge \text{score}_m$, strictly in at least one. Return them
# cheapest first (ties: the better first, then by name).

# %%
def pareto_front(cost: dict[str, float], score: dict[str, float]) -> list[str]:
    raise NotImplementedError  # your code here


exercises.check_pareto_front(pareto_front)

# %% [markdown] jupyter={"source_hidden": true}
# **Solution**: `exercises.show_solution(7, "pareto_front")`, or `notebooks/solutions/ch07.py`.

# %%
from vos_lab.course.notebook import pareto_front as package_front

cost, score = result.column("seconds_per_frame"), result.column("J&F-Mean")
try:
    front = pareto_front(cost, score)
except NotImplementedError:  # Exercise 7.1 not done yet: use the solution
    front = exercises.solution(7, "pareto_front")(cost, score)
assert front == package_front(cost, score)
fig, ax = plt.subplots(figsize=(6, 3.8))
for i, method in enumerate(methods):
    ax.scatter(cost[method], score[method], color=colours[i], s=40, zorder=3)
    ax.annotate(method, (cost[method], score[method]), xytext=(4, 3), textcoords="offset points", fontsize=7)
ax.plot([cost[m] for m in front], [score[m] for m in front], "--", color="0.4", label="Pareto front")
ax.set(xscale="log", xlabel="propagation seconds per frame (log scale)", ylabel="J&F-Mean",
       title=f"Accuracy against cost ({setting['device']})")
ax.legend(fontsize=8)
print("on the front, cheapest first:", ", ".join(front))

# %% [markdown]
# ## 6. Ablations without writing code
# Each method chapter switched one component off at a time. The ablation widget does it for any method: pick the
# method, toggle its components (the `--option` switches of its chapter: CorrFlow's scheduled sampling and cycle,
# the momentum encoder, ContrastCorr's inter-video terms, INO's three losses) and the protocol's knobs (top-k,
# radius, context, temperature, memory layout, online adaptation). A run already computed shows at once; a new one
# trains the variant for the profile's `ablation_steps` (a variant a chapter trained is reused: chapter 3's
# CorrFlow ablations here) and propagates it on the evaluation subset, with a progress bar. A protocol change
# never retrains. Rendered, the cell shows every cached run's J&F and the current run's masks.

# %%
ablation = AblationWidget(lab, SOURCES, method=ABLATION_METHOD)
ablation.run()  # the base variant, with the protocol's defaults
ablation.set_knob("radius", 4)  # a protocol change: propagated again, not trained
if INTERACTIVE:
    display(ablation.interactive())  # noqa: F821 (IPython)
else:
    ablation.static_figure();

# %%
assert ablation.current is not None and 0 <= ablation.current.jf <= 1

# %% [markdown]
# ## Our numbers beside the published ones
# The papers report J&F on the 30 videos of DAVIS-2017 val (several objects per video), after training for hours
# or days on large video collections at their own resolutions; the numbers below are theirs as
# `COURSE.md` quotes them (in %). Ours come from this run: other data, a budget of minutes on a CPU (or an hour
# on one GPU) and smaller networks. They are **not** comparable as a ranking of the papers; what carries over is
# the order of magnitude of what each idea buys under one protocol.

# %%
published = {  # method: (J&F on DAVIS-2017 val in %, their training data, their network and resolution)
    "vondrick": ("34.0", "Kinetics", "ResNet-18-style trunk, 256 px crops, stride 8"),
    "corrflow": ("50.3 (49.5 on Kinetics)", "OxUvA", "ResNet-18, stride 4"),
    "mast": ("65.5 (63.7 on OxUvA)", "YouTube-VOS", "ResNet-18, stride 4"),
    "momentum": ("not quoted", "YouTube-VOS", "ResNet-18, 384 px; U-Net 480 px"),
    "contrastcorr": ("63.0", "TrackingNet", "ResNet-18, stride 8, 560p test"),
    "ino": ("about 72", "Charades / Kinetics", "ViT-S/8, block 7 of 12"),
}


def our_training(row: dict) -> str:
    """Steps, minutes and data of a trained method's checkpoint (none for the baselines)."""
    if not row["checkpoint"]:
        return "none (baseline)"
    state = load_checkpoint(row["checkpoint"])
    data = ", ".join(Path(d).name for d in str(state.get("data") or "unrecorded").split(","))
    return f"{state['step']} steps, {state['seconds'] / 60:.0f} min, on {data}"


lines = ["| method | published J&F (DAVIS-2017 val) | their data, network | our J&F (x 100) | our training |",
         "|---|---|---|---|---|"]
for row in result.rows:
    paper = published.get(row["method"], ("-", "-", "-"))
    lines.append(f"| {row['method']} | {paper[0]} | {paper[1]}; {paper[2]} | {100 * row['J&F-Mean']:.1f} | "
                 f"{our_training(row)} |")
lines += ["| CRW (reference, not in the course) | 67.6 | Kinetics; ResNet-18 | - | - |",
          "| DINO ViT-S/8 (reference, images only) | 69.9 | ImageNet; ViT-S/8 | - | - |"]
show_markdown("\n".join(lines))

# %% [markdown]
# ## What we changed and why
# What differs between the papers' numbers and ours, for every method at once:

# %%
show_markdown(changes_table([
    ("evaluation data", "DAVIS-2017 val: 30 videos, 1-5 objects each",
     f"{Path(setting['davis']).name} ({setting['split']}): {len(setting['sequences'])} sequence(s), "
     f"frames: {setting['frames'] or 'all'}", "the development copy is what this machine has; DAVIS-2016 has one "
     "object per video, which is easier"),
    ("training budget", "hours to days on several GPUs", "cpu: minutes on 2 cores; gpu: up to an hour on one GPU",
     "a course runs in an afternoon"),
    ("networks", "ResNet-18 (stride 4 or 8), ViT-S/8", "cpu: width-32 CNNs at stride 8, a 4-block ViT",
     "the profile's sizes (`vos_lab.profiles`)"),
    ("test resolution", "480p (ContrastCorr 560p)", "480p; INO's cpu model reads frames at half size (stride 16)",
     "a ViT's attention grows with the square of the token count"),
    ("read-out", "each paper's own (e.g. CorrFlow: previous frame, hard labels)", "one protocol for all (chapter 1)",
     "so the table compares features, not read-outs"),
]))

# %% [markdown]
# ## Summary
# - One protocol and one set of sequences make the methods comparable: the table, the per-sequence bars and the
#   overlays all come from the same cached masks, the files `python -m vos_lab benchmark` writes.
# - A mean hides the hard sequences: read the per-sequence bars and the hardest sequence's masks beside it.
# - Accuracy has a price in seconds per frame and memory; the Pareto front names the methods worth it.
# - Our numbers are not the papers': other data, budgets of minutes and smaller networks.
#
# ## Exercises to go further
# 1. Rank the methods on each sequence (1 = best) and average the ranks: does the ranking by mean rank agree
#    with the ranking by mean J&F? Which sequences disagree most?
# 2. Run `python -m vos_lab benchmark --profile cpu --frames 30 --out benchmark/cpu-30` and compare with all
#    frames: which methods lose most on long videos (decay)?
# 3. On a GPU, where does the time per frame go: encoding or attention? (`python -m vos_lab bench propagation`)
#
# ## References
# - J. Pont-Tuset, F. Perazzi, S. Caelles, P. Arbelaez, A. Sorkine-Hornung, L. Van Gool. *The 2017 DAVIS
#   Challenge on Video Object Segmentation.* arXiv 1704.00675.
# - C. Vondrick et al. *Tracking Emerges by Colorizing Videos.* ECCV 2018. Z. Lai, W. Xie. *Self-supervised
#   Learning for Video Correspondence Flow.* BMVC 2019. Z. Lai, E. Lu, W. Xie. *MAST.* CVPR 2020.
# - F. Zhu et al. *Self-supervised Video Object Segmentation.* arXiv 2006.12480. N. Wang, W. Zhou, H. Li.
#   *Contrastive Transformation for Self-supervised Correspondence Learning.* AAAI 2021. X. Pan et al.
#   *In-N-Out Generative Learning for Dense Unsupervised Video Segmentation.* ACM MM 2022.
# - A. Jabri, A. Owens, A. Efros. *Space-Time Correspondence as a Contrastive Random Walk.* NeurIPS 2020.
#   M. Caron et al. *Emerging Properties in Self-Supervised Vision Transformers.* ICCV 2021.
