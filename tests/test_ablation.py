"""The ablation widget (chapter 7) without a browser: its handlers on a small synthetic DAVIS folder, smoke
profile (2 training steps a variant), training and propagation replaced by failing stand-ins where a test
claims they are not needed."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import matplotlib.pyplot as plt
import pytest
import torch
from helpers import write_davis2017

from vos_lab.course import ablation
from vos_lab.course.ablation import AblationWidget
from vos_lab.course.notebook import Session
from vos_lab.errors import VosLabError
from vos_lab.methods.registry import METHODS
from vos_lab.profiles import get_profile


@pytest.fixture(scope="module")
def davis(tmp_path_factory) -> Path:
    """One small textured sequence, two objects (tests/helpers.py)."""
    return write_davis2017(tmp_path_factory.mktemp("davis"), frames=4, size=(48, 64))


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """One checkpoint and run folder for the module: runs done by one test are cached for the next."""
    root = tmp_path_factory.mktemp("ablation")
    return {"checkpoints": root / "checkpoints", "runs": root / "runs"}


def widget(davis: Path, folders: dict[str, Path], method: str = "corrflow") -> AblationWidget:
    session = Session(get_profile("smoke"), torch.device("cpu"), 0, davis, False, {})
    return AblationWidget(session, ["embedded"], method, progress=False, **folders)


class Calls:
    """A stand-in that counts its calls and forwards them to `real` (None: fails the test)."""

    def __init__(self, real=None) -> None:
        self.real, self.calls = real, []

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        if self.real is None:
            raise AssertionError(f"unexpected call with {kwargs}")
        return self.real(*args, **kwargs)


def files(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_handlers_update_state_and_shown_jf(davis, folders, monkeypatch):
    w = widget(davis, folders)
    assert w.current is None and w.summary().startswith("J&F not computed yet")
    base = w.run()
    assert 0 <= base.jf <= 1 and set(base.scores) == {"J&F-Mean", "J-Mean", "F-Mean"}
    assert w.summary().startswith(f"J&F {base.jf:.3f}") and "corrflow (base) | default protocol" in w.summary()

    tight = w.set_knob("radius", 0)  # each cell sees only its own position in the references
    assert w.knobs["radius"] == 0 and w.protocol().radius == 0 and w.current is tight
    assert "radius 0" in w.summary() and tight.masks != base.masks

    w.set_knob("radius", -1)
    assert w.protocol().radius is None and "radius -1" in w.summary()

    changed = w.set_method("mast")
    assert w.method == "mast" and w.options == {} and changed.label.startswith("mast (base) | radius -1")
    assert w.summary().startswith(f"J&F {changed.jf:.3f}")

    w.on_control({"owner": SimpleNamespace(description="top-k"), "new": 2})  # an ipywidgets change
    assert w.knobs["topk"] == 2 and w.protocol().topk == 2 and "top-k 2" in w.current.label
    w.on_control({"owner": SimpleNamespace(description="memory"), "new": "previous"})
    assert w.protocol().context == 1 and w.protocol().long_term == ()
    assert "memory previous" in w.current.label and "context" not in w.current.label


def test_cached_run_is_shown_without_recomputing(davis, folders, monkeypatch):
    first = widget(davis, folders)
    computed = first.set_knob("temperature", 0.05)
    for name in ("train_from_profile", "cached_predictions", "adapt_results", "score_results"):
        monkeypatch.setattr(ablation, name, Calls())  # any of them called: the test fails
    again = widget(davis, folders)  # a new session: nothing in memory
    shown = again.set_knob("temperature", 0.05)
    assert shown == computed and again.summary() == first.summary()
    assert computed.label in again.cached_runs()


def test_protocol_knob_propagates_again_but_does_not_train(davis, folders, monkeypatch):
    w = widget(davis, folders)
    w.run()
    checkpoints = files(folders["checkpoints"])
    monkeypatch.setattr(ablation, "train_from_profile", Calls())
    propagate = Calls(ablation.cached_predictions)
    monkeypatch.setattr(ablation, "cached_predictions", propagate)
    run = w.set_knob("context", 1)
    assert len(propagate.calls) == 1 and run.masks.is_dir() and "context 1" in run.label
    adapted = w.set_knob("adapt", True)  # online adaptation on the masks just propagated
    assert adapted.masks.name.startswith("adapt-") and "adapted" in adapted.label
    assert adapted.masks.parent == run.masks.parent and (adapted.masks / "seq").is_dir()
    assert files(folders["checkpoints"]) == checkpoints  # no checkpoint written


def test_component_toggle_trains_a_new_variant(davis, folders, monkeypatch):
    w = widget(davis, folders)
    base = w.run()
    train = Calls(ablation.train_from_profile)
    monkeypatch.setattr(ablation, "train_from_profile", train)
    assert w.components() == {"scheduled sampling": True, "cycle consistency": True}
    run = w.toggle("cycle consistency")
    assert w.options == {"cycle_weight": 0.0} and w.components()["cycle consistency"] is False
    assert len(train.calls) == 1
    (name, _, path, _), options = train.calls[0]
    assert (name, options["cycle_weight"], options["steps"]) == ("corrflow", 0.0, 2) and path.is_file()
    assert options["schedule_steps"] == 2  # chapter 3's short run: the sampling schedule over the run
    assert path != w.checkpoints / f"{base.masks.parent.name}.pt" and "cycle_weight=0" in run.label
    w.toggle("cycle consistency", True)  # back to the base variant: cached, not trained again
    assert w.options == {} and len(train.calls) == 1 and w.current == base
    w.set_option("cycle_weight", 0.1)  # the base's own value: no change
    assert w.options == {} and len(train.calls) == 1


@pytest.mark.parametrize(("handler", "args", "message"), [
    ("set_method", ("dino",), "unknown method 'dino' (choose colourisation, corrflow"),
    ("set_option", ("cycle", 0.0), "corrflow: unknown option(s) cycle (known:"),
    ("set_option", ("sampling", 3), "corrflow option sampling=3: expected True or False"),
    ("set_option", ("radius", "wide"), "corrflow option radius='wide': expected an integer >= 0"),
    ("toggle", ("tracking",), "corrflow: unknown component 'tracking' (known: scheduled sampling"),
    ("toggle", ("cycle consistency", "yes"), "component cycle consistency='yes': expected True or False"),
    ("set_knob", ("top_k", 3), "unknown protocol knob 'top_k' (known: topk, radius"),
    ("set_knob", ("topk", 0), "knob topk=0: expected an integer >= 1"),
    ("set_knob", ("temperature", "hot"), "knob temperature='hot': expected a number > 0"),
    ("set_knob", ("memory", "mast+"), "knob memory='mast+': expected one of default, previous, mast"),
])
def test_bad_input_is_one_line_and_changes_nothing(davis, folders, monkeypatch, handler, args, message):
    w = widget(davis, folders)
    w.run()
    state, shown, before = (w.method, dict(w.options), dict(w.knobs)), w.summary(), files(folders["runs"].parent)
    monkeypatch.setattr(ablation, "train_from_profile", Calls())
    with pytest.raises(VosLabError) as error:
        getattr(w, handler)(*args)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)
    assert (w.method, w.options, w.knobs) == state and w.summary() == shown
    assert files(folders["runs"].parent) == before


def test_an_unknown_method_or_bad_steps_write_nothing(davis, tmp_path):
    with pytest.raises(VosLabError, match="^unknown method 'resnet' "):
        widget(davis, {"checkpoints": tmp_path / "c", "runs": tmp_path / "r"}, method="resnet")
    with pytest.raises(VosLabError, match="^ablation steps=0: expected an integer >= 1"):
        widget(davis, {"checkpoints": tmp_path / "c", "runs": tmp_path / "r", "steps": 0})
    assert list(tmp_path.iterdir()) == []


def test_steps_set_the_training_of_each_variant(davis, folders, monkeypatch):
    w = widget(davis, {**folders, "steps": 1})
    train = Calls(ablation.train_from_profile)
    monkeypatch.setattr(ablation, "train_from_profile", train)
    run = w.run()
    assert [kwargs["steps"] for _, kwargs in train.calls] == [1] and w.checkpoint_path().is_file()
    assert run.masks.parent.name == w.checkpoint_path().stem != widget(davis, folders).checkpoint_path().stem


def test_temperature_is_kept_to_three_digits_so_one_value_is_one_run(davis, folders):
    w = widget(davis, folders)
    w.set_knob("temperature", 10 ** -0.9999999999)  # where a log slider lands
    assert w.knobs["temperature"] == 0.1 and "default protocol" in w.summary()


def test_every_component_and_choice_is_an_option_of_its_method():
    assert set(ablation.COMPONENTS) == set(METHODS)
    for method, components in ablation.COMPONENTS.items():
        for off in components.values():
            METHODS[method].check_options(off)
    for method, names in ablation.CHOICES.items():
        assert all(METHODS[method].options[name].choices for name in names)


def test_static_figure_has_a_title_labelled_axes_and_a_bar_per_cached_run(davis, folders):
    w = widget(davis, folders)
    w.run()
    damaged = folders["runs"] / "smoke" / "corrflow-0" / "scores-0"
    damaged.mkdir(parents=True)
    (damaged / "manifest.json").write_text("{not json")  # not a cached run, and no error either
    runs = w.cached_runs()
    assert w.current.label in runs and len(runs) >= 3  # the runs of the tests before
    w.sources = ["elsewhere"]  # runs trained on other data are not this widget's
    assert w.cached_runs() == {}
    w.sources = ["embedded"]
    fig = w.static_figure()
    bars, *panels = fig.axes
    assert fig._suptitle.get_text().startswith("Ablation: J&F")
    assert bars.get_title().startswith("Cached runs on seq") and bars.get_xlabel() == "J&F-Mean"
    assert bars.get_ylabel() == "run" and len(bars.patches) == len(runs)
    assert [t.get_text() for t in bars.get_yticklabels()] == list(runs)[::-1]
    assert len(panels) == 8 and all(ax.get_xlabel().startswith("frame ") for ax in panels)
    assert [ax.get_ylabel() for ax in panels[::4]] == ["ground truth", "this run"]
    plt.close(fig)


def test_controls_follow_the_method(davis, folders):
    w = widget(davis, folders)
    box = w.interactive()
    assert "J&amp;F" in w.label.value
    method = w.controls()[0]
    assert [c.description for c in w._component_box.children] == ["scheduled sampling", "cycle consistency"]
    w.on_control({"owner": method, "new": "colourisation"})
    assert [c.description for c in w._component_box.children] == ["variant"]
    w.on_control({"owner": w._component_box.children[0], "new": "rgb"})
    assert w.options == {"variant": "rgb"} and "colourisation (variant=rgb)" in w.label.value
    assert box.children[-1] is w.output


def test_a_refused_change_in_the_live_widget_is_shown_and_the_controls_go_back(davis, folders):
    w = widget(davis, folders, method="ino")
    w.interactive()
    w.toggle("out-generative", False)
    w.toggle("in-generative", False)
    shown = w.summary()
    last = next(c for c in w._component_box.children if c.description == "affinity consistency")
    last.value = False  # the last loss off: INO refuses
    assert w.label.value == "<b>error: ino: every loss is off</b>"
    assert w.options == {"out_generative": False, "in_generative": False} and w.summary() == shown
    assert [c.value for c in w._component_box.children] == [False, False, True]
    quiet = widget(davis, folders, method="ino")  # without the live widget: the error itself
    quiet.options = dict(w.options)
    with pytest.raises(VosLabError, match="every loss is off"):
        quiet.on_control({"owner": SimpleNamespace(description="affinity consistency"), "new": False})


def test_a_variant_a_chapter_trained_is_reused_not_trained_again(davis, tmp_path, monkeypatch):
    """Chapter 3 trains CorrFlow's ablations: the widget's corrflow base (the same config, data, seed and steps)
    is that checkpoint, copied, not a second training run."""
    from vos_lab import zoo

    monkeypatch.setenv("VOS_LAB_HOME", str(tmp_path / "home"))  # no model zoo there
    monkeypatch.delenv(zoo.ZOO_VAR, raising=False)
    monkeypatch.setattr(ablation, "HOME", tmp_path / "home")
    chapter = zoo.trained("ch03-ablation-base", get_profile("smoke"), ["embedded"], folder=tmp_path / "home" /
                          "checkpoints", device="cpu", progress=False)
    w = widget(davis, {"checkpoints": tmp_path / "widget", "runs": tmp_path / "runs"})
    monkeypatch.setattr(ablation, "train_from_profile", Calls())  # training would fail the test
    run = w.run()
    assert 0 <= run.jf <= 1 and w.checkpoint_path().read_bytes() == chapter.path.read_bytes()
