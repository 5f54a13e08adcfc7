"""The ablation widget of chapter 7: pick a method, switch its components and the protocol's knobs, see J&F.

A *variant* is a method with some of its `--option`s changed from the chapter's base (the components that
chapters 2-6 ablate, `COMPONENTS`, and any other option: `set_option`). Each variant trains briefly, the
profile's `ablation_steps` (`vos_lab.training.run.train_from_profile`, the short-run options of its chapter on
top: `SHORT_RUN`), into a checkpoint named after the method and a digest of its whole config, data, steps and
seed. A *run* is a variant under one protocol (`KNOBS`: top-k, radius, context, temperature, memory layout
`vos_lab.propagation.MEMORY_LAYOUTS`, online adaptation `vos_lab.adaptation`) on the profile's evaluation
subset (`vos_lab.course.notebook.eval_subset`; a small synthetic video without real data). Masks are cached
by checkpoint + protocol (`cached_predictions`, `vos_lab.cache.reuse_or_compute`), adapted masks by their
pseudo labels + the adaptation, and the DAVIS scores by all of it, so a run done once shows at once; a
protocol change propagates again without training, and only a component or option change trains.

Bad input (an unknown method, option or knob, a value of the wrong type) is a VosLabError of one line,
raised before anything changes. Handlers are plain methods (`set_method`, `toggle`, `set_option`, `set_knob`,
`on_control`), so tests call them without a browser; `interactive()` wires them to ipywidgets controls, and
`static_figure()` draws the J&F of every cached run and the masks of the current one for papermill.

Cell for chapter 7's `## Ablations` (`lab` is the setup cell's session, SOURCES its training sources):

    from vos_lab.course.ablation import AblationWidget

    ablation = AblationWidget(lab, SOURCES, method="corrflow")  # steps=N: other than P.ablation_steps
    ablation.run()                      # the base variant: trains P.ablation_steps steps once, then cached
    ablation.set_knob("radius", 4)      # a protocol change: propagates again, no training
    if INTERACTIVE:
        display(ablation.interactive())
    else:
        ablation.static_figure();
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import html
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from tqdm.auto import tqdm

from vos_lab import zoo
from vos_lab.adaptation import AdaptConfig
from vos_lab.cache import MANIFEST, reuse_or_compute, stale_reason
from vos_lab.course.notebook import HOME, Session, cached_predictions, checkpoint_key, eval_subset
from vos_lab.course.plots import image_panel, overlay
from vos_lab.data.davis import DavisDataset
from vos_lab.data.synthetic import write_synthetic_davis
from vos_lab.errors import VosLabError
from vos_lab.evaluation import adapt_results, read_results, score_results
from vos_lab.methods.registry import METHODS, method_name
from vos_lab.options import Option, Value
from vos_lab.paths import atomic_path
from vos_lab.propagation import MEMORY_LAYOUTS, PropagationConfig
from vos_lab.training.checkpoints import load_checkpoint, load_method
from vos_lab.training.loop import TrainConfig, finished
from vos_lab.training.run import method_for_profile, profile_run, train_from_profile

# method -> component -> the options that switch it off (the ablations of chapters 3-6; on: the method's own)
COMPONENTS: dict[str, dict[str, dict[str, Value]]] = {
    "colourisation": {},
    "corrflow": {"scheduled sampling": {"sampling": False}, "cycle consistency": {"cycle_weight": 0.0}},
    "mast": {},
    "momentum": {"momentum encoder": {"momentum": 0.0}},  # m = 0: the key encoder copies the query (one encoder)
    "contrastcorr": {"inter-video reconstruction": {"inter": 0.0}, "intra/inter consistency": {"consistency": 0.0},
                     "sparsity": {"sparsity": 0.0}, "tracking": {"tracking": False}},
    "ino": {"out-generative": {"out_generative": False}, "in-generative": {"in_generative": False},
            "affinity consistency": {"affinity": False}},
}
# method -> options with a few named values, shown as drop-downs (chapter 2's variants, chapter 4's schedules)
CHOICES: dict[str, tuple[str, ...]] = {"colourisation": ("variant",), "momentum": ("momentum_schedule",)}
# method -> its chapter's options for a short run of `steps` steps (chapter 3: the sampling schedule over the
# run; chapter 5: warm-up for half of it)
SHORT_RUN: dict[str, Callable[[int], dict[str, Value]]] = {
    "corrflow": lambda steps: {"schedule_steps": steps},
    "contrastcorr": lambda steps: {"warmup_steps": steps // 2},
}
_DEFAULT = PropagationConfig()
# the protocol's knobs (chapter 1's protocol by default; radius -1: the whole frame)
KNOBS: dict[str, Option] = {
    "topk": Option(_DEFAULT.topk, "matches kept per target cell", at_least=1),
    "radius": Option(_DEFAULT.radius, "window half-size in feature cells, -1 for the whole frame", at_least=-1),
    "context": Option(_DEFAULT.context, "recent frames in the default memory layout", at_least=0),
    "temperature": Option(_DEFAULT.temperature, "softmax temperature of the affinities", above=0),
    "memory": Option("default", "memory layout (chapter 3)", choices=tuple(MEMORY_LAYOUTS)),
    "adapt": Option(False, "online adaptation of a U-Net per video (chapter 4)"),
}
SWITCH = Option(True, "a component on (True) or off (False)")
STEPS = Option(1, "training steps of each variant", at_least=1)
KNOB_NAMES = {"topk": "top-k", "radius": "radius", "context": "context", "temperature": "temperature",
              "memory": "memory", "adapt": "online adaptation"}  # knob -> its control's description


def _digest(value: object) -> str:
    """A short content digest of a JSON-able value (folder and file names of variants and runs)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _plain(value: Value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class AblationRun:
    """A scored run: its label, the toolkit's J&F-Mean, J-Mean and F-Mean, and the folder of its masks."""

    label: str
    scores: dict[str, float]
    masks: Path

    @property
    def jf(self) -> float:
        return self.scores["J&F-Mean"]


class AblationWidget:
    """Ablations of one method at a time on the profile's evaluation subset (module docstring). `sources`: the
    training data (`training_sources`); `steps`: each variant's training (default: the profile's
    `ablation_steps`); `checkpoints` and `runs`: where variants and runs are kept (default: under the course's
    working folder, `checkpoints/ablation/<profile>` and `runs/ablation/<profile>`)."""

    def __init__(self, session: Session, sources: list[str] | None = None, method: str = "corrflow", *,
                 steps: int | None = None, checkpoints: Path | None = None, runs: Path | None = None,
                 progress: bool = True) -> None:
        self.session, self.profile = session, session.profile
        self.sources = list(sources or ["embedded"])
        self.steps = STEPS.check("ablation steps", self.profile.ablation_steps if steps is None else steps)
        self.checkpoints = Path(checkpoints or HOME / "checkpoints" / "ablation") / self.profile.name
        self.runs = Path(runs or HOME / "runs" / "ablation") / self.profile.name
        self.progress = progress
        self.method, self.options = self._method(method), {}
        self.dataset, self.names = self._subset()
        self.knobs = {name: option.default for name, option in KNOBS.items()}
        self._keys: dict[tuple, dict | None] = {}  # checkpoint path, size, mtime -> its key when finished
        self._configs: dict[str, dict] = {}  # method and options -> the method's config (`variant`)
        self.label, self.output, self._component_box = None, None, None  # the live widget's (`interactive`)
        self.current = self.cached()

    # ------------------------------------------------------------------------------ state and keys
    def _subset(self) -> tuple[DavisDataset, list[str]]:
        """The chapters' evaluation subset; without real data a small synthetic video (as chapter 4)."""
        subset = eval_subset(self.session)
        if subset is not None:
            return subset
        spec = {"sequences": 1, "frames": self.profile.eval_max_frames or 8, "height": 96, "width": 160,
                "seed": self.session.seed}
        folder = self.runs / "synthetic"
        reuse_or_compute(folder, spec, lambda: write_synthetic_davis(folder, **spec))
        dataset = DavisDataset(folder)
        return dataset, dataset.names[: self.profile.eval_sequences]

    @staticmethod
    def _method(name: object) -> str:
        if not isinstance(name, str) or method_name(name) not in METHODS:
            raise VosLabError(f"unknown method {name!r} (choose {', '.join(METHODS)})")
        return method_name(name)

    def _training_options(self, options: dict[str, Value] | None = None) -> dict[str, Value]:
        short = SHORT_RUN.get(self.method)
        return {**(short(self.steps) if short else {}), **(self.options if options is None else options)}

    def variant(self, options: dict[str, Value] | None = None) -> dict:
        """What the variant's checkpoint depends on: the whole method config (the profile's sizes, the short
        run's and the chosen `options`, default: the current ones), training steps, data and seed."""
        options = self._training_options(options)
        memo = json.dumps([self.method, options], sort_keys=True)
        if memo not in self._configs:  # building the method checks the options (an INO ViT takes seconds)
            profile = dataclasses.replace(self.profile, train_steps=self.steps)  # as train_from_profile sizes it
            self._configs[memo] = method_for_profile(self.method, profile, **options).config
        return {"config": self._configs[memo], "steps": self.steps, "data": self.sources, "seed": self.session.seed}

    def checkpoint_path(self) -> Path:
        return self.checkpoints / f"{self.method}-{_digest(self.variant())}.pt"

    def protocol(self, knobs: dict[str, Value] | None = None) -> PropagationConfig:
        """The knobs (default: the current ones) as a PropagationConfig: a memory layout other than "default"
        sets its own context."""
        k = self.knobs if knobs is None else knobs
        return PropagationConfig(**{"temperature": k["temperature"], "topk": k["topk"], "context": k["context"],
                                    "radius": None if k["radius"] < 0 else k["radius"], **MEMORY_LAYOUTS[k["memory"]]})

    def adaptation(self) -> AdaptConfig | None:
        return AdaptConfig.from_profile(self.profile, seed=self.session.seed) if self.knobs["adapt"] else None

    def label_text(self) -> str:
        """The run in words: method, changed options (or "base"), changed knobs (or "default protocol")."""
        options = ", ".join(f"{k}={_plain(v)}" for k, v in sorted(self.options.items())) or "base"
        layout = self.knobs["memory"] != "default"
        knobs = [f"{KNOB_NAMES[k]} {_plain(v)}" for k, v in self.knobs.items()
                 if v != KNOBS[k].default and k not in ("adapt", "memory") and not (k == "context" and layout)]
        knobs += [f"memory {self.knobs['memory']}"] * layout + ["adapted"] * self.knobs["adapt"]
        return f"{self.method} ({options}) | {', '.join(knobs) or 'default protocol'}"

    def _trained_key(self, path: Path) -> dict | None:
        """`checkpoint_key` of the checkpoint at `path` when it is finished (the variant's steps), else None;
        remembered while the file is unchanged."""
        if not path.is_file():
            return None
        stat = path.stat()
        memo = (str(path), stat.st_size, stat.st_mtime_ns)
        if memo not in self._keys:
            budget = TrainConfig(self.steps, self.profile.batch_size, self.profile.train_minutes)  # as trained
            self._keys[memo] = checkpoint_key(path) if finished(load_checkpoint(path), budget) else None
        return self._keys[memo]

    def _run_key(self, checkpoint: dict) -> dict:
        adapt = self.adaptation()
        return {"variant": self.variant(), "checkpoint": checkpoint, "protocol": dataclasses.asdict(self.protocol()),
                "adapt": adapt and dataclasses.asdict(adapt), "dataset": str(self.dataset.root),
                "sequences": self.names, "max_frames": self.profile.eval_max_frames}

    def _folders(self) -> tuple[Path, Path, Path]:
        """The variant's masks (by protocol), adapted masks and scores (by protocol and adaptation) folders."""
        variant = self.runs / self.checkpoint_path().stem
        protocol = dataclasses.asdict(self.protocol())
        adapt = self.adaptation()
        run = _digest([protocol, adapt and dataclasses.asdict(adapt)])
        return variant / f"masks-{_digest(protocol)}", variant / f"adapt-{run}", variant / f"scores-{run}"

    # ------------------------------------------------------------------------------ computation
    def cached(self) -> AblationRun | None:
        """The current run when it is complete on disk (read, nothing computed), else None."""
        checkpoint = self._trained_key(self.checkpoint_path())
        if checkpoint is None:
            return None
        masks, adapted, scores = self._folders()
        if stale_reason(scores, self._run_key(checkpoint)) is not None:
            return None
        return AblationRun(self.label_text(), json.loads((scores / "scores.json").read_text())["scores"],
                           adapted if self.knobs["adapt"] else masks)

    def run(self) -> AblationRun:
        """The current run: cached, else computed (what is missing of training, propagation, adaptation and
        scoring, with progress bars) and cached."""
        found = self.cached()
        if found is None:
            with self.output or contextlib.nullcontext():  # progress bars inside the live widget
                if self.output is not None:
                    self.output.clear_output()
                found = self._compute()
        self.current = found
        self._show()
        return found

    def _reuse_a_chapters_model(self, path: Path) -> None:
        """Copy into `path` the zoo's or a chapter's checkpoint of this very variant, if there is one (chapter 3
        trains CorrFlow's ablations, chapter 5 ContrastCorr's): said in one line."""
        method, config = profile_run(self.method, self.profile, self.sources, steps=self.steps, minutes=None,
                                     seed=self.session.seed, **self._training_options())
        found = zoo.same_run(method, config, self.profile, HOME / "checkpoints")
        if found is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                shutil.copyfile(found, tmp)
            print(f"ablation: {self.label_text()}: trained already ({found.name}), reused")

    def _compute(self) -> AblationRun:
        path, device = self.checkpoint_path(), self.session.device
        masks, adapted, scores = self._folders()
        adapt = self.adaptation()
        stages = ["train", "propagate"] + ["adapt"] * bool(adapt) + ["score"]
        with tqdm(stages, desc=f"ablation {self.method}", unit="stage", disable=not self.progress) as bar:
            bar.set_postfix_str("train")
            if self._trained_key(path) is None:
                self._reuse_a_chapters_model(path)
            if self._trained_key(path) is None:
                method = train_from_profile(self.method, self.profile, path, self.sources, steps=self.steps,
                                            minutes=None, seed=self.session.seed, device=str(device),
                                            progress=self.progress, **self._training_options()).method
            else:
                method = load_method(path)
            checkpoint = self._trained_key(path)
            if checkpoint is None:  # e.g. replaced meanwhile by a run of other steps (another process)
                raise VosLabError(f"{path}: training stopped before {self.steps} steps")
            bar.update(1)
            bar.set_postfix_str("propagate")
            encoder = method.frame_encoder().to(device).eval()
            cached_predictions(encoder, self.dataset, masks, self.protocol(), self.names, checkpoint, self.progress)
            bar.update(1)
            if adapt is not None:
                bar.set_postfix_str("adapt")
                for name in self.names:
                    pseudo = json.loads((masks / name / MANIFEST).read_text())["key"]
                    reuse_or_compute(adapted / name, {"pseudo_labels": pseudo, "adapt": dataclasses.asdict(adapt)},
                                     lambda name=name: adapt_results(self.dataset, masks, adapted, adapt, [name],
                                                                     device, self.progress))
                bar.update(1)
            bar.set_postfix_str("score")
            results = adapted if adapt else masks
            reuse_or_compute(scores, self._run_key(checkpoint), lambda: self._score(results, scores))
            bar.update(1)
        return AblationRun(self.label_text(), json.loads((scores / "scores.json").read_text())["scores"], results)

    def _score(self, results: Path, folder: Path) -> None:
        row = score_results(self.dataset, results, self.names, progress=False).global_row
        scores = {name: float(row[name]) for name in ("J&F-Mean", "J-Mean", "F-Mean")}
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / "scores.json") as tmp:
            tmp.write_text(json.dumps({"label": self.label_text(), "scores": scores}, indent=1) + "\n")

    def cached_runs(self) -> dict[str, float]:
        """{label: J&F} of every complete run on this subset whose checkpoint is still the one it scored."""
        found, here = {}, [str(self.dataset.root), self.names, self.profile.eval_max_frames, self.sources,
                           self.steps, self.session.seed]
        for manifest in sorted(self.runs.glob(f"*/scores-*/{MANIFEST}")):
            try:
                key = json.loads(manifest.read_text())["key"]
                variant = key["variant"]
                if [key["dataset"], key["sequences"], key["max_frames"], variant["data"], variant["steps"],
                        variant["seed"]] != here:
                    continue
                if self._trained_key(self.checkpoints / f"{manifest.parent.parent.name}.pt") != key["checkpoint"]:
                    continue
                record = json.loads((manifest.parent / "scores.json").read_text())
                found[record["label"]] = record["scores"]["J&F-Mean"]
            except (OSError, ValueError, KeyError, TypeError, VosLabError):  # damaged or foreign: not a cached run
                continue
        return found

    # ------------------------------------------------------------------------------ handlers
    def set_method(self, name: str) -> AblationRun:
        """Another method, its base variant (its components all on), the same protocol."""
        self.method, self.options = self._method(name), {}
        self._rebuild_components()
        return self.run()

    def set_option(self, name: str, value: object) -> AblationRun:
        """One option of the method (checked by the method: an unknown option or a wrong value is an error);
        the method's default value removes the change."""
        checked = METHODS[self.method].check_options({name: value})[name]
        options = {k: v for k, v in self.options.items() if k != name}
        if self.variant(options)["config"][name] != checked:  # else the base's value: no change
            options[name] = checked
        self.variant(options)  # a combination the method refuses is an error here, before anything changes
        self.options = options
        return self.run()

    def components(self) -> dict[str, bool]:
        """{component: on} of the current method."""
        config = self.variant()["config"]
        return {name: any(config[k] != v for k, v in off.items()) for name, off in COMPONENTS[self.method].items()}

    def toggle(self, component: str, on: bool | None = None) -> AblationRun:
        """Switch a component of the method on or off (None: the other way)."""
        known = COMPONENTS[self.method]
        if component not in known:
            raise VosLabError(f"{self.method}: unknown component {component!r} "
                              f"(known: {', '.join(known) or 'none, see its options'})")
        on = not self.components()[component] if on is None else SWITCH.check(f"component {component}", on)
        options = {k: v for k, v in self.options.items() if k not in known[component]}
        options = options if on else {**options, **known[component]}
        self.variant(options)  # refused combinations (e.g. contrastcorr without intra and backward) fail here
        self.options = options
        return self.run()

    def set_knob(self, name: str, value: object) -> AblationRun:
        """One knob of the protocol (`KNOBS`); the variant is not retrained."""
        if name not in KNOBS:
            raise VosLabError(f"unknown protocol knob {name!r} (known: {', '.join(KNOBS)})")
        value = KNOBS[name].check(f"knob {name}", value)
        if isinstance(value, float):  # 3 significant digits (a log slider's steps): one value, one run
            value = float(f"{value:.3g}")
        knobs = {**self.knobs, name: value}
        self.protocol(knobs)  # an invalid combination is an error before anything changes
        self.knobs = knobs
        return self.run()

    def on_control(self, change: dict) -> None:
        """ipywidgets `observe(..., names="value")`: the control's description names what it sets. In the live
        widget a change the method refuses (e.g. INO's last loss off) is shown on the J&F line, and the
        component controls go back to the state, which is unchanged."""
        description, value = change["owner"].description, change["new"]
        knobs = {text: name for name, text in KNOB_NAMES.items()}
        try:
            if description == "method":
                self.set_method(value)
            elif description in knobs:
                self.set_knob(knobs[description], value)
            elif description in COMPONENTS[self.method]:
                self.toggle(description, value)
            else:
                self.set_option(description, value)
        except VosLabError as error:
            if self.label is None:
                raise
            self._rebuild_components()
            self.label.value = f"<b>error: {html.escape(str(error))}</b>"

    # ------------------------------------------------------------------------------ drawing
    def summary(self) -> str:
        """The J&F line shown above the figure."""
        run = self.current
        if run is None:
            return f"J&F not computed yet: {self.label_text()}"
        return (f"J&F {run.jf:.3f} (J {run.scores['J-Mean']:.3f}, F {run.scores['F-Mean']:.3f}) on "
                f"{len(self.names)} sequence(s): {run.label}")

    def figure(self, fig=None):
        """J&F of every cached run (the current one in orange) above the current run's masks on one sequence."""
        runs = self.cached_runs()
        fig = fig or plt.figure(layout="constrained")
        fig.clear()
        fig.set_size_inches(9, 3.6 + 0.22 * len(runs))
        grid = fig.add_gridspec(3, 4, height_ratios=[0.5 + 0.22 * len(runs), 1, 1])
        ax = fig.add_subplot(grid[0, :])
        labels = list(runs)[::-1]
        current = self.current.label if self.current else None
        ax.barh(labels, [runs[label] for label in labels],
                color=["tab:orange" if label == current else "tab:blue" for label in labels])
        ax.set(xlabel="J&F-Mean", ylabel="run", xlim=(0, 1),
               title=f"Cached runs on {', '.join(self.names)} ({self.profile.name} profile, "
                     f"{self.steps} training steps each)")
        ax.tick_params(axis="y", labelsize=7)
        sequence = self.dataset.sequence(self.names[0])
        times = np.linspace(0, len(sequence) - 1, 4).round().astype(int)
        gt, void = sequence.masks()
        rows = {"ground truth": np.where(void, 0, gt)}
        if self.current is not None:
            rows["this run"] = read_results(self.current.masks, sequence)
        for r, (name, masks) in enumerate(rows.items()):
            for c, t in enumerate(times):
                panel = fig.add_subplot(grid[1 + r, c])
                image_panel(panel, overlay(sequence.frame(t), masks[t]), f"frame {t}")
                if c == 0:
                    panel.set_ylabel(name)
        fig.suptitle(f"Ablation: {self.summary()}", fontsize=9)
        return fig

    def static_figure(self):
        """The figure for rendered lectures (papermill): cached runs' J&F and the current run's masks."""
        return self.figure()

    def _show(self) -> None:
        if self.label is not None:
            self.label.value = f"<b>{html.escape(self.summary())}</b>"
        if self.output is not None:
            from IPython.display import display

            with self.output:
                self.output.clear_output(wait=True)
                fig = self.figure()
                display(fig)
                plt.close(fig)

    def _component_controls(self) -> list:
        import ipywidgets as widgets

        common = {"style": {"description_width": "initial"}}
        controls = [widgets.Checkbox(value=on, description=name, **common) for name, on in self.components().items()]
        for option in CHOICES.get(self.method, ()):
            spec = METHODS[self.method].options[option]
            controls.append(widgets.Dropdown(options=spec.choices, description=option, **common,
                                             value=self.options.get(option, METHODS[self.method].defaults[option])))
        for control in controls:
            control.observe(self.on_control, names="value")
        return controls

    def _rebuild_components(self) -> None:
        if self._component_box is not None:
            self._component_box.children = self._component_controls()

    def controls(self) -> list:
        """The method drop-down and the protocol's knobs, each observed by `on_control`."""
        import ipywidgets as widgets

        common = {"style": {"description_width": "initial"}}
        slider = {**common, "continuous_update": False}
        k = self.knobs
        found = [widgets.Dropdown(options=list(METHODS), value=self.method, description="method", **common),
                 widgets.IntSlider(value=k["topk"], min=1, max=20, description="top-k", **slider),
                 widgets.IntSlider(value=k["radius"], min=-1, max=30, description="radius", **slider),
                 widgets.IntSlider(value=k["context"], min=0, max=10, description="context", **slider),
                 widgets.FloatLogSlider(value=k["temperature"], base=10, min=-3, max=0, step=0.1,
                                        description="temperature", **slider),
                 widgets.Dropdown(options=list(MEMORY_LAYOUTS), value=k["memory"], description="memory", **common),
                 widgets.Checkbox(value=k["adapt"], description="online adaptation", **common)]
        for control in found:
            control.observe(self.on_control, names="value")
        return found

    def interactive(self):
        """The live widget: method and components, the protocol's knobs, the J&F line, then progress bars while
        a run computes and the figure."""
        import ipywidgets as widgets

        controls = self.controls()
        self._component_box = widgets.HBox(self._component_controls())
        self.label, self.output = widgets.HTML(), widgets.Output()
        self._show()
        return widgets.VBox([widgets.HBox([controls[0], self._component_box]), widgets.HBox(controls[1:4]),
                             widgets.HBox(controls[4:]), self.label, self.output])
