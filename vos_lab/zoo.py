"""The model zoo: every checkpoint the chapters train, trained once into one folder with a manifest.

`MODELS` is the one definition of each chapter's model (keyed by the checkpoint stem the chapter uses, e.g.
"ch03-corrflow"): method, options, budget, batch size, and whether it is validated during training; all train on
the course's data by default (`default_training_data`, the chapters' TRAIN_DATA None). Chapters get their models
through `trained`, which returns the zoo's checkpoint when it was trained as asked and otherwise trains (or
loads) one in the chapter's own folder, as `train_from_profile` always did; `python -m vos_lab zoo build`
(`build`) fills the zoo, `zoo list` shows it.

The zoo of a profile lives in ``$VOS_LAB_ZOO``, else ``course_home()/zoo/<profile>``; its
``manifest.json`` (written atomically after each finished model, so an interrupted build resumes) holds per
model: the file, method, options, data, seed, batch size, steps, training seconds, the file's SHA-256 and J&F
on the profile's evaluation subset of the DAVIS folder (`vos_lab.course.notebook.eval_data`, the figure the
chapters print). A checkpoint whose SHA-256 differs from the manifest is refused (VosLabError), never
overwritten; one trained otherwise than asked (method config, data, seed, batch size, steps) is not used.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vos_lab.course.notebook import default_training_data, eval_data, training_validation
from vos_lab.data.download import file_digest
from vos_lab.device import pick_device
from vos_lab.errors import VosLabError
from vos_lab.evaluation import validation_jf
from vos_lab.methods.base import Method
from vos_lab.paths import ZOO_VAR, atomic_path, course_home, writable_dir
from vos_lab.profiles import Profile
from vos_lab.training.checkpoints import load_checkpoint
from vos_lab.training.loop import Evaluate, TrainConfig, TrainResult, finished_as_asked, loaded
from vos_lab.training.run import profile_run, train_from_profile

FORMAT = "vos_lab-zoo-1"
MANIFEST = "manifest.json"


def _train_steps(profile: Profile) -> int:
    return profile.train_steps


def _ablation_steps(profile: Profile) -> int:
    return profile.ablation_steps


@dataclass(frozen=True)
class ZooModel:
    """One chapter's model, trained on the course's data (`default_training_data`, what a chapter's TRAIN_DATA None
    means). `steps(profile)` is its default budget (a chapter may ask for another); `step_option` = (option,
    fraction) sets an option to that fraction of the steps (CorrFlow's sampling schedule, ContrastCorr's warm-up);
    `batch_size` None is the profile's (a batch size at least the profile's is no ablation: the model is not in that
    profile's zoo)."""

    chapter: int
    method: str
    options: dict = field(default_factory=dict)
    steps: Callable[[Profile], int] = _train_steps
    step_option: tuple[str, float] | None = None
    batch_size: int | None = None
    validated: bool = False

    def in_profile(self, profile: Profile) -> bool:
        return self.batch_size is None or self.batch_size < profile.batch_size

    def profile(self, profile: Profile) -> Profile:
        """The profile the model trains with (its batch size)."""
        return profile if self.batch_size is None else dataclasses.replace(profile, batch_size=self.batch_size)

    def budget(self, profile: Profile, steps: int | None = None) -> dict:
        """`train_from_profile`'s steps and method options for `steps` (None: the model's default); the time cap
        is the profile's `train_minutes`."""
        steps = steps or self.steps(profile)
        options = dict(self.options)
        if self.step_option is not None:
            name, fraction = self.step_option
            options[name] = max(1, int(steps * fraction))
        return {"steps": steps, **options}


def _chapter_steps(profile: Profile) -> int:
    return 2 if profile.name == "smoke" else profile.train_steps  # chapters 4-6's main models


def _short_ablation_steps(profile: Profile) -> int:
    """Chapters 5 and 6's ablations: as long as the main model on a CPU (about 3 and 5 minutes each there, so
    an ablation differs from the main model in the one thing it switches off), the profile's ablation budget on a
    GPU."""
    return {"smoke": 2, "cpu": profile.train_steps}.get(profile.name, profile.ablation_steps)


_CH03_ABLATION = {"steps": _ablation_steps, "step_option": ("schedule_steps", 1.0)}
_CH05_ABLATION = {"steps": _short_ablation_steps, "step_option": ("warmup_steps", 0.5)}
MODELS: dict[str, ZooModel] = {
    **{f"ch02-{variant}": ZooModel(2, "colourisation", {"variant": variant})
       for variant in ("vondrick", "bottleneck", "rgb")},
    "ch03-corrflow": ZooModel(3, "corrflow", step_option=("schedule_steps", 0.5), validated=True),
    "ch03-mast": ZooModel(3, "mast", validated=True),
    "ch03-ablation-base": ZooModel(3, "corrflow", **_CH03_ABLATION),
    "ch03-ablation-no-sampling": ZooModel(3, "corrflow", {"sampling": False}, **_CH03_ABLATION),
    "ch03-ablation-no-cycle": ZooModel(3, "corrflow", {"cycle_weight": 0.0}, **_CH03_ABLATION),
    "ch04-momentum": ZooModel(4, "momentum", steps=_chapter_steps),  # chapter 4 compares it with ch03-mast
    "ch05-contrastcorr": ZooModel(5, "contrastcorr", step_option=("warmup_steps", 0.5)),
    "ch05-ablation-full": ZooModel(5, "contrastcorr", **_CH05_ABLATION),
    "ch05-ablation-no-inter": ZooModel(5, "contrastcorr", {"inter": 0.0, "consistency": 0.0, "sparsity": 0.0},
                                       **_CH05_ABLATION),
    "ch05-ablation-no-consistency": ZooModel(5, "contrastcorr", {"consistency": 0.0}, **_CH05_ABLATION),
    "ch05-ablation-no-sparsity": ZooModel(5, "contrastcorr", {"sparsity": 0.0}, **_CH05_ABLATION),
    "ch05-ablation-no-tracking": ZooModel(5, "contrastcorr", {"tracking": False}, **_CH05_ABLATION),
    **{f"ch05-ablation-batch-{k}": ZooModel(5, "contrastcorr", batch_size=k, **_CH05_ABLATION) for k in (1, 2, 4)},
    "ch06-ino": ZooModel(6, "ino", steps=_chapter_steps),
    **{f"ch06-ablation-{key}": ZooModel(6, "ino", options, steps=_short_ablation_steps)
       for key, options in [("base", {}), ("no-out", {"out_generative": False}), ("no-in", {"in_generative": False}),
                            ("no-affinity", {"affinity": False})]},
}


def model(key: str) -> ZooModel:
    """The model `key` of MODELS; VosLabError naming the known ones otherwise."""
    if key not in MODELS:
        raise VosLabError(f"unknown zoo model '{key}' (known: {', '.join(MODELS)})")
    return MODELS[key]


def zoo_dir(profile: Profile) -> Path:
    """The zoo of `profile`: $VOS_LAB_ZOO (one profile's zoo: its manifest says which), else
    course_home()/zoo/<profile> (where `vos_lab.benchmark` looks too)."""
    if os.environ.get(ZOO_VAR):
        return Path(os.environ[ZOO_VAR]).expanduser().resolve()
    return course_home() / "zoo" / profile.name


def checkpoint_name(key: str, profile: Profile) -> str:
    """The file name of a model's checkpoint, in the zoo and in a chapter's folder alike."""
    return f"{key}-{profile.name}.pt"


# ------------------------------------------------------------------------------------------- manifest
def read_manifest(folder: Path, profile: Profile) -> dict:
    """The manifest of the zoo `folder` ({"format", "profile", "models": {key: entry}}; an empty one when the
    folder has none); VosLabError for an unreadable one or one of another profile."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return {"format": FORMAT, "profile": profile.name, "models": {}}
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise VosLabError(f"{path}: unreadable zoo manifest ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest["models"], dict):
        raise VosLabError(f"{path}: not a vos_lab zoo manifest")
    if manifest.get("profile") != profile.name:
        raise VosLabError(f"{path}: the zoo of the {manifest.get('profile')} profile, not of {profile.name}")
    return manifest


def write_manifest(folder: Path, manifest: dict) -> None:
    with atomic_path(Path(folder) / MANIFEST, durable=True) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1) + "\n")


def verified(folder: Path, key: str, entry: dict) -> Path | None:
    """The checkpoint of the manifest's `entry`, checked against its SHA-256; None (said in one line) when the
    file is missing; VosLabError when its content differs from the manifest (replaced or tampered with)."""
    path = Path(folder) / entry["file"]
    if not path.is_file():
        print(f"zoo: {key}: {path} is missing")
        return None
    if file_digest(path) != entry["sha256"]:
        raise VosLabError(f"{path}: its SHA-256 differs from the zoo's manifest (replaced or tampered with); "
                          "restore it, or delete it and run `python -m vos_lab zoo build` again")
    return path


# ------------------------------------------------------------------------------------- load or train
@dataclass
class Asked:
    """What training model `key` asks for: its profile (batch size), `train_from_profile`'s budget keywords (steps,
    method options), and the untrained method with its TrainConfig (what a checkpoint is checked
    against)."""

    key: str
    spec: ZooModel
    profile: Profile
    budget: dict
    method: Method
    config: TrainConfig

    @classmethod
    def of(cls, key: str, profile: Profile, sources: list[str], seed: int, steps: int | None = None) -> Asked:
        spec = model(key)
        run_profile, budget = spec.profile(profile), spec.budget(profile, steps)
        return cls(key, spec, run_profile, budget, *profile_run(spec.method, run_profile, sources, seed=seed,
                                                                **budget))

    def mismatch(self, state: dict) -> str | None:
        """Why the checkpoint `state` is not a finished run as asked (None: it is)."""
        return finished_as_asked(state, self.method, self.config)


def _zoo_file(key: str, profile: Profile, zoo: Path | None) -> Path | None:
    """The zoo's checkpoint of `key`, SHA-256 checked (VosLabError when it differs); None when not in the zoo."""
    folder = Path(zoo) if zoo is not None else zoo_dir(profile)
    entry = read_manifest(folder, profile)["models"].get(key)
    return None if entry is None else verified(folder, key, entry)


def _from_zoo(asked: Asked, profile: Profile, device: torch.device, zoo: Path | None) -> TrainResult | None:
    """The zoo's model if the zoo holds it and it is a finished run as asked (method config, data, seed, batch
    size, steps); else None, with one line saying why when the zoo holds it."""
    path = _zoo_file(asked.key, profile, zoo)
    if path is None:
        return None
    state = load_checkpoint(path, device)
    reason = asked.mismatch(state)
    if reason is not None:
        print(f"zoo: {asked.key}: not used, trained otherwise than asked ({reason})")
        return None
    print(f"zoo: {asked.key}: loaded from the model zoo ({path})")
    return loaded(asked.method, state, path, asked.config, device)


def trained(key: str, profile: Profile, sources: list[str], *, folder: Path, seed: int = 0, device: str = "auto",
            evaluate: Evaluate | None = None, progress: bool = True, steps: int | None = None,
            zoo: Path | None = None) -> TrainResult:
    """A chapter's model `key` (MODELS) trained on `sources`: the zoo's (default `zoo_dir`) when it was trained
    as asked, else loaded, resumed or trained in `folder/<key>-<profile>.pt` (`train_from_profile`, validated
    with `evaluate`). `steps` asks for another budget than the model's default (a chapter's parameter)."""
    asked = Asked.of(key, profile, sources, seed, steps)
    found = _from_zoo(asked, profile, pick_device(device), zoo)
    if found is not None:
        return found
    return train_from_profile(asked.spec.method, asked.profile, Path(folder) / checkpoint_name(key, profile), sources,
                              seed=seed, device=device, evaluate=evaluate, progress=progress, **asked.budget)


def checkpoint(key: str, profile: Profile, folder: Path, zoo: Path | None = None) -> Path:
    """Where an earlier chapter's model is, for a later chapter's comparison: the zoo's file (SHA-256 checked)
    when the zoo holds it, else `folder/<key>-<profile>.pt` (which may not exist)."""
    return _zoo_file(key, profile, zoo) or Path(folder) / checkpoint_name(key, profile)


def same_run(method: Method, config: TrainConfig, profile: Profile, folder: Path,
             zoo: Path | None = None) -> Path | None:
    """A finished checkpoint of one of the chapters' models that is this very run (method config, data, seed, batch
    size, steps): the zoo's (default `zoo_dir`, SHA-256 checked), else the one a chapter trained into `folder`; None
    when there is none. So a run asked elsewhere (the ablation widget, another key of the zoo that is the same run,
    a zoo built after the chapters) loads what was trained instead of training it again."""
    for key, spec in MODELS.items():
        if spec.method != method.name or not spec.in_profile(profile):
            continue
        for path in (_zoo_file(key, profile, zoo), Path(folder) / checkpoint_name(key, profile)):
            if path is not None and path.is_file():
                if finished_as_asked(load_checkpoint(path), method, config) is None:
                    return path
    return None


# -------------------------------------------------------------------------------------------- build
def dev_jf(encoder, davis: Path | None, profile: Profile) -> dict | None:
    """J&F, J and F of a FrameEncoder on the profile's evaluation subset of `davis` (the chapters' protocol
    and frames), with the data it was measured on; None without DAVIS data."""
    subset = eval_data(davis, profile)
    if subset is None:
        return None
    dataset, names = subset
    figures = validation_jf(dataset, names, profile.eval_max_frames)(encoder)
    return {**{k: round(v, 4) for k, v in figures.items()}, "davis": str(Path(davis).resolve()),
            "split": dataset.split, "sequences": names, "frames": profile.eval_max_frames}


def build(profile: Profile, folder: Path | None = None, sources: list[str] | None = None,
          davis: Path | None = None, keys: list[str] | None = None, *, seed: int = 0, device: str = "auto",
          progress: bool = True) -> list[dict]:
    """Train (or resume, or reuse) the models `keys` (default: every model of the profile) into the zoo
    `folder` (default `zoo_dir`), each on `sources` (default: the course's data), validated on `davis` where
    its chapter does, and scored on it; the manifest is written after each model. Returns one summary row per
    model. Every selected checkpoint is checked against the manifest before any training."""
    keys = keys or [key for key, spec in MODELS.items() if spec.in_profile(profile)]
    for key in keys:
        spec = model(key)
        if not spec.in_profile(profile):
            raise VosLabError(f"zoo model '{key}': batch size {spec.batch_size} is no ablation in the {profile.name} "
                              f"profile (batch size {profile.batch_size})")
    folder = writable_dir(folder if folder is not None else zoo_dir(profile))
    manifest = read_manifest(folder, profile)
    files = {key: verified(folder, key, manifest["models"][key]) for key in keys if key in manifest["models"]}
    validation = training_validation(davis, profile)
    rows = []
    for key in keys:
        run_sources = sources or [default_training_data(profile)]
        asked = Asked.of(key, profile, run_sources, seed)
        spec, config = asked.spec, asked.config
        entry, path = manifest["models"].get(key), folder / checkpoint_name(key, profile)
        reason = "its file is missing" if files.get(key) is None else asked.mismatch(load_checkpoint(path))
        if reason is None:
            print(f"zoo: {key}: reused ({path.name}, SHA-256 as in the manifest)")
            rows.append(_row(key, entry, "reused"))
            continue
        if entry is not None:  # trained otherwise (an older definition): forget it before the file changes
            print(f"zoo: {key}: training anew ({reason})")
            del manifest["models"][key]
            write_manifest(folder, manifest)
        status = "trained"
        if not path.exists():  # nothing to resume: the same run trained already (by a chapter, or another key)?
            found = same_run(asked.method, config, asked.profile, course_home() / "checkpoints", zoo=folder)
            if found is not None:
                print(f"zoo: {key}: the same run as {found}, copied")
                with atomic_path(path, durable=True) as tmp:
                    shutil.copyfile(found, tmp)
                status = "copied"
        result = train_from_profile(spec.method, asked.profile, path, run_sources, seed=seed, device=device,
                                    evaluate=validation[0] if spec.validated and validation else None,
                                    progress=progress, **asked.budget)
        entry = {"file": path.name, "chapter": spec.chapter, "method": spec.method,
                 "options": {k: v for k, v in asked.budget.items() if k != "steps"},
                 "data": result.data, "seed": seed, "batch_size": config.batch_size, "steps": result.step,
                 "asked_steps": config.steps, "minutes": config.minutes, "training_seconds": round(result.seconds, 1),
                 "validated": bool(result.evaluations), "sha256": file_digest(path),
                 "dev": dev_jf(result.method.frame_encoder(), davis, profile)}
        manifest["models"][key] = entry
        write_manifest(folder, manifest)
        rows.append(_row(key, entry, status))
    return rows


def _row(key: str, entry: dict, status: str) -> dict:
    """One line of the zoo's tables."""
    dev = entry.get("dev")
    options = ", ".join(f"{k}={v}" for k, v in entry["options"].items()) or "-"
    return {"model": key, "status": status, "method": entry["method"], "options": options,
            "steps": str(entry["steps"]), "batch": str(entry["batch_size"]),
            "train min": f"{entry['training_seconds'] / 60:.1f}", "J&F": f"{dev['J&F']:.3f}" if dev else "-",
            "data": Path(entry["data"]).name if entry["data"] != "embedded" else "embedded",
            "sha256": entry["sha256"][:12]}


def listing(profile: Profile, folder: Path | None = None) -> list[dict]:
    """The rows of `zoo list`: every model of the manifest, with whether its file is there and unchanged."""
    folder = Path(folder) if folder is not None else zoo_dir(profile)
    if not (folder / MANIFEST).is_file():
        raise VosLabError(f"{folder}: no model zoo here (build one: python -m vos_lab zoo build --profile "
                          f"{profile.name})")
    rows = []
    for key, entry in read_manifest(folder, profile)["models"].items():
        path = folder / entry["file"]
        status = "missing" if not path.is_file() else "ok" if file_digest(path) == entry["sha256"] else "TAMPERED"
        rows.append(_row(key, entry, status))
    return rows


def format_rows(rows: list[dict]) -> str:
    """Rows of equal keys as an aligned text table."""
    if not rows:
        return "(no models)"
    widths = {k: max(len(k), *(len(row[k]) for row in rows)) for k in rows[0]}
    lines = ["  ".join(k.ljust(w) for k, w in widths.items())]
    lines += ["  ".join(row[k].ljust(w) for k, w in widths.items()) for row in rows]
    return "\n".join(line.rstrip() for line in lines)
