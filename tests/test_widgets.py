"""The affinity explorer's handlers, called with fake events (no browser)."""

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from vos_lab.course.widgets import AffinityExplorer  # noqa: E402
from vos_lab.errors import VosLabError  # noqa: E402
from vos_lab.features import build_encoder  # noqa: E402
from vos_lab.propagation import dense_propagation, downsample_labels, ids_to_onehot  # noqa: E402


def _toy(frames: int = 3, h: int = 4, w: int = 6, seed: int = 0):
    """Random unit features of a static scene (every frame the same), masks with one object on the left."""
    base = F.normalize(torch.randn(8, h, w, generator=torch.Generator().manual_seed(seed)), dim=0)
    features = base[None].repeat(frames, 1, 1, 1)
    masks = np.zeros((frames, h * 8, w * 8), np.uint8)
    masks[:, :, : w * 4] = 1
    images = np.zeros((frames, h * 8, w * 8, 3), np.uint8)
    return images, masks, features


def _explorer(**kwargs) -> AffinityExplorer:
    images, masks, features = _toy()
    return AffinityExplorer(images, masks, features=features, stride=8, **kwargs)


def _attach(explorer: AffinityExplorer) -> None:
    """What `interactive()` does, with the Agg backend: a figure whose first axes is the target."""
    explorer.fig, axes = plt.subplots(1, len(explorer.references) + 2)
    explorer.axes = list(axes)


def test_click_on_target_selects_pixel_and_best_match_is_itself():
    explorer = _explorer(topk=1, radius=None)
    _attach(explorer)
    explorer.on_click(SimpleNamespace(inaxes=explorer.axes[0], xdata=13.4, ydata=20.6, button=1))
    assert explorer.pixel == (21, 13)
    view = explorer.view()
    assert view.cell == (2, 1)
    ref, y, x, weight = view.matches[0]
    assert (y // 8, x // 8) == (2, 1) and weight == pytest.approx(1.0)  # static scene: a patch matches itself
    assert view.label.tolist() == pytest.approx([0.0, 1.0])  # the left half is object 1
    plt.close(explorer.fig)


def test_click_outside_target_or_outside_axes_is_ignored():
    explorer = _explorer()
    _attach(explorer)
    before = explorer.pixel
    explorer.on_click(SimpleNamespace(inaxes=explorer.axes[1], xdata=1.0, ydata=1.0, button=1))
    explorer.on_click(SimpleNamespace(inaxes=None, xdata=None, ydata=None, button=1))
    assert explorer.pixel == before
    plt.close(explorer.fig)


def test_sliders_change_topk_temperature_and_radius():
    explorer = _explorer(topk=5, radius=None)
    _attach(explorer)
    explorer.select(4, 4)
    slider = lambda name: SimpleNamespace(description=name)  # noqa: E731
    explorer.on_slider({"owner": slider("top-k"), "new": 2, "name": "value"})
    assert explorer.config.topk == 2 and len(explorer.view().matches) == 2
    sharp = explorer.view().attention.max()
    explorer.on_slider({"owner": slider("temperature"), "new": 1.0, "name": "value"})
    assert explorer.view().attention.max() < sharp  # a higher temperature spreads the attention
    explorer.on_slider({"owner": slider("radius"), "new": 0, "name": "value"})
    attention = explorer.view().attention
    assert np.count_nonzero(attention) == len(explorer.references)  # radius 0: only the same cell per reference
    explorer.on_slider({"owner": slider("radius"), "new": -1, "name": "value"})
    assert explorer.config.radius is None
    assert np.count_nonzero(explorer.view().attention) == attention.size
    plt.close(explorer.fig)


def test_label_and_mask_agree_with_propagation():
    images, masks, _ = _toy()
    features = F.normalize(torch.randn(3, 8, 4, 6, generator=torch.Generator().manual_seed(1)), dim=1)
    explorer = AffinityExplorer(images, masks, features=features, stride=8, temperature=0.2, topk=3, radius=2)
    labels = torch.stack([downsample_labels(ids_to_onehot(masks[i], 2), (4, 6), 8) for i in explorer.references])
    soft = dense_propagation(features[2], features[explorer.references], labels, 2, 3, 0.2)
    for cy, cx in ((0, 0), (2, 3), (3, 5)):
        view = explorer.view((cy * 8 + 3, cx * 8 + 3))
        assert np.allclose(view.label, soft[:, cy, cx].numpy(), atol=1e-5)
    assert view.mask.shape == masks[0].shape


def test_static_figure_has_one_row_per_pixel_with_titles():
    images, masks, _ = _toy()
    explorer = AffinityExplorer(images, masks, encoder=build_encoder("lab"), context=1)
    fig = explorer.static_figure([(3, 3), (20, 40)])
    assert len(fig.axes) == 2 * (len(explorer.references) + 2)
    assert fig._suptitle.get_text().startswith("Affinity explorer")
    assert all(ax.get_title() and ax.get_xlabel() for ax in fig.axes)
    plt.close(fig)


def test_bad_arguments_are_clear_errors():
    images, masks, features = _toy()
    with pytest.raises(VosLabError, match="either features or an encoder"):
        AffinityExplorer(images, masks)
    with pytest.raises(VosLabError, match="target frame"):
        AffinityExplorer(images, masks, features=features, stride=8, target=0)
    with pytest.raises(VosLabError, match="unknown explorer setting"):
        _explorer().set_param("tau", 1.0)


def test_interactive_widget_wires_sliders_and_clicks_with_ipympl():
    """The live version: ipympl canvas + ipywidgets sliders, driven as the browser would (real events)."""
    from matplotlib.backend_bases import MouseEvent

    plt.switch_backend("module://ipympl.backend_nbagg")
    try:
        explorer = _explorer(topk=5, radius=None)
        box = explorer.interactive()
        sliders = {s.description: s for s in box.children[0].children}
        sliders["top-k"].value = 2
        assert explorer.config.topk == 2 and len(explorer.view().matches) == 2
        sliders["radius"].value = -1
        assert explorer.config.radius is None
        x, y = explorer.axes[0].transData.transform((30.0, 12.0))
        explorer.fig.canvas.callbacks.process("button_press_event",
                                              MouseEvent("button_press_event", explorer.fig.canvas, x, y, button=1))
        assert explorer.pixel == (12, 30)
        plt.close(explorer.fig)
    finally:
        plt.switch_backend("Agg")
