"""The course's figures: what they draw is what they are given (tiny sizes, Agg backend)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from vos_lab.course import plots  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _labelled(fig) -> None:
    """Every axes that draws something has a title or a figure title, and names its x axis."""
    assert fig._suptitle is not None and fig._suptitle.get_text()
    for ax in fig.axes:
        if ax.axison and (ax.lines or ax.images or ax.patches):
            assert ax.get_xlabel(), ax.get_title()


def test_feature_pca_rgb_shape_range_and_order():
    g = np.random.default_rng(0)
    features = g.normal(size=(6, 5, 7))
    features[4] *= 20.0  # channel 4 has by far the largest variance: the first component, red
    features[1] *= 5.0  # channel 1 the second: green
    rgb = plots.feature_pca_rgb(features)
    assert rgb.shape == (5, 7, 3) and rgb.dtype == np.float64
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0 and rgb.max() - rgb.min() > 0.5
    assert np.corrcoef(rgb[..., 0].ravel(), features[4].ravel())[0, 1] > 0.95  # sign fixed: positive
    assert np.corrcoef(rgb[..., 1].ravel(), features[1].ravel())[0, 1] > 0.9
    assert np.allclose(plots.feature_pca_rgb(torch.from_numpy(features)), rgb)  # tensors too
    assert np.allclose(plots.feature_pca_rgb(3 * features + 1), rgb)  # an offset or a scale changes nothing


def test_feature_pca_rgb_with_fewer_than_three_channels():
    features = np.stack([np.arange(12.0).reshape(3, 4), np.zeros((3, 4))])
    rgb = plots.feature_pca_rgb(features)
    assert rgb.shape == (3, 4, 3)
    assert np.all(np.diff(rgb[..., 0].ravel()) >= 0) and np.ptp(rgb[..., 1:]) == 0  # one direction of variance


def test_feature_pca_panels_one_per_model():
    frame = np.zeros((16, 24, 3), np.uint8)
    fig = plots.feature_pca_panels(frame, {"a": np.random.rand(4, 2, 3), "b": np.random.rand(8, 2, 3)})
    assert [ax.get_title() for ax in fig.axes] == ["input", "a", "b"]
    assert fig.axes[1].images[0].get_array().shape == (2, 3, 3)
    assert "4 channels" in fig.axes[1].get_xlabel() and "8 channels" in fig.axes[2].get_xlabel()
    _labelled(fig)


def test_attention_schematic_counts_dense_window_and_topk():
    scores = np.arange(48.0).reshape(6, 8)  # the best cells are at the bottom right
    fig = plots.attention_schematic(scores, (1, 1), radius=2, topk=3)
    read = [~np.ma.getmaskarray(ax.images[0].get_array()) for ax in fig.axes]
    assert [int(r.sum()) for r in read[:2]] == [48, 16]  # the corner cell's window is cut by the frame: 4 x 4
    assert read[1][:4, :4].all() and not read[1][4:].any() and not read[1][:, 4:].any()
    kept = fig.axes[2].collections[0].get_offsets()  # (x, y) of the circles
    assert sorted(map(tuple, np.asarray(kept).tolist())) == [(1, 3), (2, 3), (3, 3)]  # the window's 3 best
    assert "all 48 cells" in fig.axes[0].get_title() and "3 cells" in fig.axes[2].get_title()
    weights = [float(v) for v in fig.axes[2].get_title().split("weights ")[1].split()]
    assert weights == sorted(weights, reverse=True) and sum(weights) == pytest.approx(1, abs=0.02)
    assert weights[0] == pytest.approx(1 / (1 + np.exp(-10) + np.exp(-20)), abs=0.01)  # scores 27, 26, 25 at tau 0.1
    _labelled(fig)


def test_loss_curves_use_the_step_numbers():
    history = [{"step": s, "loss": 10.0 - s, "cycle": 1.0} for s in (5, 6, 7, 8, 9)]  # a resumed run: from 5
    fig = plots.loss_curves({"m": history}, smooth=1)
    line = fig.axes[0].lines[0]
    assert list(line.get_xdata()) == [5, 6, 7, 8, 9] and list(line.get_ydata()) == [5, 4, 3, 2, 1]
    assert fig.axes[0].get_xlabel() == "optimiser step"
    fig = plots.loss_curves({"m": history, "n": history[:2]}, keys=("loss", "cycle"), smooth=3)
    lines = fig.axes[0].lines
    assert [line.get_label() for line in lines] == ["m: loss", "m: cycle", "n: loss", "n: cycle"]
    assert list(lines[0].get_xdata()) == [7, 8, 9] and np.allclose(lines[0].get_ydata(), [4, 3, 2])
    assert list(lines[2].get_xdata()) == [6] and "moving average of 3" in fig.axes[0].get_title()


def test_validation_curves_use_the_step_numbers_and_draw_baselines():
    evaluations = [{"step": 200, "J&F": 0.5, "J": 0.4, "F": 0.6}, {"step": 400, "J&F": 0.6, "J": 0.5, "F": 0.7}]
    fig = plots.validation_curves({"mast": evaluations}, baselines={"lab pixels": 0.55})
    model, baseline = fig.axes[0].lines
    assert list(model.get_xdata()) == [200, 400] and list(model.get_ydata()) == [0.5, 0.6]
    assert list(baseline.get_ydata()) == [0.55, 0.55] and baseline.get_label() == "lab pixels"
    assert fig.axes[0].get_ylabel() == "J&F" and fig.axes[0].get_xlabel() == "optimiser step"
    fig = plots.validation_curves({"mast": evaluations}, key="F")
    assert list(fig.axes[0].lines[0].get_ydata()) == [0.6, 0.7]


def test_context_soft_labels_draws_the_context_and_the_soft_map():
    frames = np.zeros((6, 16, 24, 3), np.uint8)
    ids = np.zeros((6, 16, 24), np.uint8)
    soft = np.zeros((3, 16, 24))
    soft[0], soft[2, :, 12:] = 1.0, 0.8  # object 2 on the right with probability 0.8
    soft[0, :, 12:] = 0.2
    fig = plots.context_soft_labels(frames, ids, [0, 3, 4], target=5, soft=soft, obj=2)
    strip = fig.axes[0]
    colours = [tuple(bar.get_facecolor()[:3]) for bar in strip.patches]
    assert len(colours) == 6 and colours[0] != colours[1] and colours[3] == colours[4] != colours[1]
    assert [ax.get_title() for ax in fig.axes[1:4]] == ["frame 0", "frame 3", "frame 4"]
    probability = next(ax for ax in fig.axes if ax.get_title() == "soft labels")
    assert np.array_equal(probability.images[0].get_array(), soft[2])
    assert probability.images[0].get_clim() == (0, 1)
    prediction = next(ax for ax in fig.axes if ax.get_title() == "prediction")
    tinted = prediction.images[0].get_array()
    assert (tinted[:, 12:] != 0).any() and not (tinted[:, :12] != 0).any()  # the argmax: object 2 on the right
    _labelled(fig)
