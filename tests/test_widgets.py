"""The affinity explorer's handlers, called with fake events (no browser)."""

from pathlib import Path
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
    """What `interactive()` does, with the Agg backend: the live view drawn on a figure."""
    explorer.attach(plt.figure())


def _control(name: str) -> SimpleNamespace:
    """A stand-in for the ipywidgets control whose description is `name`."""
    return SimpleNamespace(description=name)


def _two_encoders(**kwargs) -> AffinityExplorer:
    """Two feature sets of the toy scene: a copy of the random features and features that see no structure."""
    images, masks, features = _toy(frames=4)
    flat = F.normalize(torch.ones_like(features), dim=1)
    return AffinityExplorer(images, masks, features={"random": features, "flat": flat}, stride=8, **kwargs)


def test_click_on_target_selects_pixel_and_best_match_is_itself():
    explorer = _explorer(topk=1, radius=None)
    _attach(explorer)
    explorer.on_click(SimpleNamespace(inaxes=explorer.axes[0][0], xdata=13.4, ydata=20.6, button=1))
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
    explorer.on_click(SimpleNamespace(inaxes=explorer.axes[0][1], xdata=1.0, ydata=1.0, button=1))
    explorer.on_click(SimpleNamespace(inaxes=None, xdata=None, ydata=None, button=1))
    assert explorer.pixel == before
    plt.close(explorer.fig)


def test_sliders_change_topk_temperature_and_radius():
    explorer = _explorer(topk=5, radius=None)
    _attach(explorer)
    explorer.select(4, 4)
    explorer.on_control({"owner": _control("top-k"), "new": 2, "name": "value"})
    assert explorer.config.topk == 2 and len(explorer.view().matches) == 2
    sharp = explorer.view().attention.max()
    explorer.on_control({"owner": _control("temperature"), "new": 1.0, "name": "value"})
    assert explorer.view().attention.max() < sharp  # a higher temperature spreads the attention
    explorer.on_control({"owner": _control("radius"), "new": 0, "name": "value"})
    attention = explorer.view().attention
    assert np.count_nonzero(attention) == len(explorer.references)  # radius 0: only the same cell per reference
    explorer.on_control({"owner": _control("radius"), "new": -1, "name": "value"})
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


def test_static_figure_can_draw_every_encoder():
    """Chapter 7: one row per encoder for the same pixel, not only the chosen one and the one compared."""
    images, masks, features = _toy()
    named = {"a": features, "b": features.flip(0), "c": features.roll(1, -1)}
    explorer = AffinityExplorer(images, masks, features=named, stride=8, context=1)
    fig = explorer.static_figure([(3, 3)], encoders=list(named))
    assert [row[0].get_ylabel() for row in np.reshape(fig.axes, (3, -1))] == ["a", "b", "c"]
    plt.close(fig)
    with pytest.raises(VosLabError, match="unknown encoder"):
        explorer.static_figure([(3, 3)], encoders=["a", "d"])


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
        assert "Click" in box.children[0].value  # the instruction, only where clicking works
        sliders = {s.description: s for row in box.children[1:3] for s in row.children}
        assert set(sliders) == {"temperature", "top-k", "radius", "target", "reference masks"}
        sliders["top-k"].value = 2
        assert explorer.config.topk == 2 and len(explorer.view().matches) == 2
        sliders["radius"].value = -1
        assert explorer.config.radius is None
        x, y = explorer.axes[0][0].transData.transform((30.0, 12.0))
        explorer.fig.canvas.callbacks.process("button_press_event",
                                              MouseEvent("button_press_event", explorer.fig.canvas, x, y, button=1))
        assert explorer.pixel == (12, 30)
        plt.close(explorer.fig)
    finally:
        plt.switch_backend("Agg")


def test_target_frame_can_be_chosen_and_the_layout_follows_its_references():
    images, masks, features = _toy(frames=5)
    explorer = AffinityExplorer(images, masks, features=features, stride=8, context=2)
    _attach(explorer)
    assert explorer.references == [0, 2, 3] and len(explorer.axes[0]) == 5
    explorer.on_control({"owner": _control("target"), "new": 1, "name": "value"})
    assert explorer.target == 1 and explorer.references == [0]
    assert len(explorer.axes[0]) == 3  # target, one reference, propagated mask
    assert explorer.view().attention.shape[0] == 1
    assert explorer.axes[0][0].get_xlabel().endswith("target frame 1")
    with pytest.raises(VosLabError, match="target frame 5"):
        explorer.set_param("target", 5)
    plt.close(explorer.fig)


def test_two_encoders_side_by_side_on_the_same_pixel():
    explorer = _two_encoders(compare="flat", radius=None, topk=3)
    _attach(explorer)
    assert explorer.shown == ["random", "flat"] and len(explorer.axes) == 2
    second_target = explorer.axes[1][0]
    explorer.on_click(SimpleNamespace(inaxes=second_target, xdata=9.0, ydata=17.0, button=1))
    assert explorer.pixel == (17, 9)  # a click on either row's target panel selects the pixel of both
    random, flat = explorer.view(encoder="random"), explorer.view(encoder="flat")
    assert random.pixel == flat.pixel == (17, 9)
    assert random.attention.max() > 20 * random.attention.mean()  # random features: peaked on the same patch
    assert np.allclose(flat.attention, flat.attention.flat[0])  # flat features: uniform
    assert [(row[0].get_ylabel(), row[0].get_xlabel()) for row in explorer.axes] == [
        ("random", "target frame 3"), ("flat", "target frame 3")]
    explorer.on_control({"owner": _control("compare with"), "new": "", "name": "value"})
    assert explorer.compare is None and len(explorer.axes) == 1
    explorer.on_control({"owner": _control("encoder"), "new": "flat", "name": "value"})
    assert explorer.axes[0][0].get_ylabel() == "flat"
    assert np.allclose(explorer.view().attention, flat.attention)
    with pytest.raises(VosLabError, match="unknown encoder 'rgb'"):
        explorer.set_param("compare", "rgb")
    plt.close(explorer.fig)


def test_reference_masks_are_outlined_on_demand():
    explorer = _explorer()
    _attach(explorer)
    before = [len(ax.collections) for ax in explorer.axes[0][1:-1]]
    explorer.on_control({"owner": _control("reference masks"), "new": True, "name": "value"})
    after = [len(ax.collections) for ax in explorer.axes[0][1:-1]]
    assert explorer.show_masks and all(a == b + 1 for a, b in zip(after, before, strict=True))
    plt.close(explorer.fig)


def test_preset_pixels_are_object_centres_then_background():
    images, _, features = _toy(h=6, w=8)
    masks = np.zeros((3, 48, 64), np.uint8)
    masks[:, 4:20, 4:36] = 1  # a 16 x 32 box
    masks[:, 30:44, 40:60] = 2  # a 14 x 20 box
    explorer = AffinityExplorer(images[:, :48, :64], masks, features=features, stride=8)
    (y1, x1), (y2, x2), (yb, xb) = explorer.preset_pixels()
    assert 11 <= y1 <= 12 and 11 <= x1 <= 28  # deepest inside box 1: 8 pixels from its top and bottom edges
    assert 36 <= y2 <= 37 and 46 <= x2 <= 53
    assert masks[2, yb - 8: yb + 9, xb - 8: xb + 9].max() == 0  # background, 8 pixels away from any object


def test_static_figure_never_says_click_but_the_live_view_does():
    explorer = _two_encoders(compare="flat")
    fig = explorer.static_figure()
    pixels = explorer.preset_pixels()
    assert len(fig.axes) == len(pixels) * 2 * (len(explorer.references) + 2)  # pixel x encoder rows
    texts = [fig._suptitle.get_text()] + [t for ax in fig.axes for t in (ax.get_title(), ax.get_xlabel())]
    assert not any("click" in t.lower() for t in texts)
    plt.close(fig)
    _attach(explorer)
    assert explorer.axes[0][0].get_title() == "click a pixel"
    plt.close(explorer.fig)


CHAPTERS = sorted((Path(__file__).resolve().parents[1] / "notebooks" / "src").glob("0[1-3]_*.py"))


@pytest.mark.parametrize("source", CHAPTERS, ids=lambda p: p.stem)
def test_chapters_draw_the_explorer_at_its_preset_pixels_and_say_click_only_when_live(source):
    """Rendered lectures show the static figure at the object-centred presets, and their prose (markdown)
    never asks to click: only the live widget (INTERACTIVE) does."""
    import jupytext

    notebook = jupytext.read(source)
    code = "\n".join(c.source for c in notebook.cells if c.cell_type == "code")
    markdown = "\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")
    assert "AffinityExplorer(" in code and ".static_figure()" in code
    assert "static_figure([" not in code and "static_figure(presets" not in code
    assert "click" not in markdown.lower()


def test_interactive_shows_the_cells_static_figures_before_switching_backend(capsys):
    """In a notebook cell drawing `static_figure()` then `interactive()`, the static figure must still be shown:
    the inline backend shows figures at the end of the cell, and by then the backend is ipympl's."""
    from IPython.core.interactiveshell import InteractiveShell
    from matplotlib._pylab_helpers import Gcf

    class Shell(InteractiveShell):  # a real IPython shell, without a kernel or an event loop
        def enable_gui(self, gui=None):
            pass

    shell = Shell.instance()
    try:
        shell.run_line_magic("matplotlib", "inline")
        explorer = _explorer()
        static = explorer.static_figure()
        explorer.interactive()
        assert plt.get_backend() in ("widget", "ipympl", "module://ipympl.backend_nbagg")
        assert "<Figure size" in capsys.readouterr().out  # displayed (without a kernel, display() prints it)
        assert all(m.canvas.figure is not static for m in Gcf.get_all_fig_managers())  # and closed
        plt.close(explorer.fig)
    finally:
        Shell.clear_instance()
        plt.switch_backend("Agg")
