"""One benchmark for every method (chapter 7): the baselines and each chapter's trained model under the one
protocol (`PropagationConfig()`, as `propagate`) on the same DAVIS sequences.

For each method the masks go to `out/<method>/<sequence>/<frame>.png` (the official submission layout, with the
toolkit's CSVs in `out/<method>/`), and the figures to `out/benchmark.csv` (one row per method: J&F, J and F
mean/recall/decay as the toolkit's global row, seconds per frame, peak memory), `out/per_sequence.csv` (J&F of each
method on each sequence) and `out/benchmark.json` (both, with what they were measured on).

Each (method, sequence) is a cached result (`vos_lab.cache`): its folder's manifest holds the features (the
checkpoint's content hash and step, or the baseline's name), the data, the protocol, the frames and the device,
and `measures.json` beside the masks holds the propagation's seconds, its peak memory and the per-frame J and F
of every object, so a re-run computes only what is missing or stale and reports the rest without recomputing.
Peak memory is measured in this process, per sequence, above the memory in use when the sequence starts (after
the C allocator has returned its free memory to the system, so no method re-uses another's freed buffers): the
resident set (Linux `VmHWM`, as `vos_lab.bench`) and, on a GPU, the CUDA allocator's peak. A method's figure is
the largest of its sequences'; the first method measured also pays one-time costs (thread pools, libraries).
"""

from __future__ import annotations

import csv
import ctypes
import io
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from vos_lab import zoo
from vos_lab.bench import _peak_since, _reset_peak
from vos_lab.cache import reuse_or_compute, stale_reason
from vos_lab.course.notebook import checkpoint_key, find_davis, prediction_key
from vos_lab.data.davis import DavisDataset, DavisSequence
from vos_lab.data.download import file_digest
from vos_lab.device import pick_device
from vos_lab.errors import VosLabError
from vos_lab.evaluation import predict_sequence, read_results, write_sequence
from vos_lab.features import build_encoder
from vos_lab.metrics import GLOBAL_COLUMNS, ObjectScores, evaluate_sequence, summarize, write_toolkit_csvs
from vos_lab.models.encoders import BASELINES
from vos_lab.paths import atomic_path, course_home
from vos_lab.profiles import get_profile
from vos_lab.propagation import PropagationConfig
from vos_lab.training.checkpoints import load_checkpoint

# trained method -> its model in the zoo (`vos_lab.zoo.MODELS`: the checkpoint as its chapter names it)
TRAINED: dict[str, str] = {
    "vondrick": "ch02-vondrick", "bottleneck": "ch02-bottleneck", "rgb-colourisation": "ch02-rgb",
    "corrflow": "ch03-corrflow", "mast": "ch03-mast", "momentum": "ch04-momentum",
    "contrastcorr": "ch05-contrastcorr", "ino": "ch06-ino",
}
METHODS = (*BASELINES, *TRAINED)
RESULTS, TABLE, PER_SEQUENCE, MEASURES = "benchmark.json", "benchmark.csv", "per_sequence.csv", "measures.json"
COST_COLUMNS = ("seconds_per_frame", "peak_cpu_mib", "peak_cuda_mib")
TABLE_COLUMNS = ("method", "kind", *GLOBAL_COLUMNS, *COST_COLUMNS, "sequences", "frames", "checkpoint", "sha256")
SEQUENCE_COLUMNS = ("method", "sequence", "J&F-Mean", "J-Mean", "F-Mean", "frames", *COST_COLUMNS)


def checkpoint_path(method: str, profile: str, folder: Path | None = None) -> Path:
    """The checkpoint of a trained method as its chapter names it (e.g. `ch03-mast-cpu.pt`): in `folder` when
    given, else the model zoo's (SHA-256 checked) when the zoo holds it, else the chapters' `checkpoints/`."""
    if folder is not None:
        return folder / zoo.checkpoint_name(TRAINED[method], get_profile(profile))
    return zoo.checkpoint(TRAINED[method], get_profile(profile), course_home() / "checkpoints")


def select_methods(methods: list[str] | None, profile: str, folder: Path | None = None,
                   say: Callable[[str], object] = print) -> dict[str, Path | None]:
    """method -> its checkpoint (None for a baseline; see `checkpoint_path` for where). Default: the baselines and
    every trained method whose checkpoint is present (one line names the others). An unknown method, or an asked
    trained method without its checkpoint, is a VosLabError."""
    where = folder or f"the model zoo or {course_home() / 'checkpoints'}"
    unknown = [m for m in methods or [] if m not in METHODS]
    if unknown:
        raise VosLabError(f"unknown method(s) {', '.join(unknown)} (choose from {', '.join(METHODS)})")
    how = f"python -m vos_lab zoo build --profile {profile}"
    if methods:
        missing = [m for m in methods if m in TRAINED and not checkpoint_path(m, profile, folder).is_file()]
        if missing:
            names = ", ".join(checkpoint_path(m, profile, folder).name for m in missing)
            raise VosLabError(f"no checkpoint for {', '.join(missing)} in {where} ({names}); train it: {how}")
        chosen = list(dict.fromkeys(methods))
    else:
        chosen = [m for m in METHODS if m in BASELINES or checkpoint_path(m, profile, folder).is_file()]
        missing = [m for m in TRAINED if m not in chosen]
        if missing:
            say(f"not benchmarked, no checkpoint in {where}: {', '.join(missing)} (train them: {how})")
    return {m: None if m in BASELINES else checkpoint_path(m, profile, folder) for m in chosen}


def features_key(method: str, path: Path | None) -> dict:
    """What a method's masks depend on besides data and protocol: the baseline's name, or the checkpoint's
    content hash and step, refused when the checkpoint holds another method than its name says."""
    if path is None:
        return {"features": method}
    config = load_checkpoint(path).get("config", {})
    model = zoo.MODELS[TRAINED[method]]
    name, variant = model.method, model.options.get("variant")
    if config.get("method") != name or (variant and config.get("variant") != variant):
        found = config.get("method") if not variant else f"{config.get('method')} {config.get('variant')}"
        raise VosLabError(f"{path}: holds {found}, not {method} (a checkpoint of another method under its name)")
    return {"features": checkpoint_key(path)}


def open_dataset(davis: str | Path | None = None, split: str | None = None,
                 frames: int | None = None) -> DavisDataset:
    """The DAVIS data: `davis` (default: `find_davis()`, the data root's or the development copy), `split`
    (default: val, else train: the development copy has only train), each sequence cut to `frames`."""
    root = find_davis() if davis in (None, "") else Path(davis).expanduser()
    if root is None:
        raise VosLabError("no DAVIS data found: give --davis ROOT (or set $VOS_LAB_DATA)")
    if frames is not None and frames < 3:
        raise VosLabError(f"--frames must be at least 3 (the metric skips the first and last), got {frames}")
    root = Path(root).resolve()
    if split is not None:
        return DavisDataset(root, split=split, max_frames=frames)
    try:
        return DavisDataset(root, split="val", max_frames=frames)
    except VosLabError:
        return DavisDataset(root, split="train", max_frames=frames)


@dataclass
class Benchmark:
    """What `run_benchmark` measured: one row per method (`TABLE_COLUMNS`), one per method and sequence
    (`SEQUENCE_COLUMNS`), and what it was measured on (`setup`: data, split, sequences, frames, protocol,
    profile, device, checkpoints)."""

    rows: list[dict]
    per_sequence: list[dict]
    setup: dict

    def column(self, name: str) -> dict[str, float]:
        """method -> one figure, e.g. `column("J&F-Mean")` or `column("seconds_per_frame")`."""
        return {row["method"]: row[name] for row in self.rows}

    def sequence_jf(self) -> dict[str, dict[str, float]]:
        """method -> {sequence: J&F-Mean}."""
        table: dict[str, dict[str, float]] = {}
        for row in self.per_sequence:
            table.setdefault(row["method"], {})[row["sequence"]] = row["J&F-Mean"]
        return table

    def changed_checkpoints(self) -> list[str]:
        """The trained methods whose checkpoint has changed (or gone) since they were benchmarked."""
        return [row["method"] for row in self.rows if row["sha256"] and (
            not Path(row["checkpoint"]).is_file() or file_digest(Path(row["checkpoint"])) != row["sha256"])]

    def _peak_name(self) -> str:
        return "peak CUDA MiB" if self.setup["device"] == "cuda" else "peak RSS MiB"

    def _peak(self, row: dict) -> float | None:
        """The peak shown: the CUDA allocator's on a GPU, else the resident set's."""
        return row["peak_cuda_mib"] if self.setup["device"] == "cuda" else row["peak_cpu_mib"]

    def markdown(self) -> str:
        """The table as Markdown: the toolkit's global row, seconds per frame and peak MiB of each method."""
        head = ["method", *GLOBAL_COLUMNS, "s/frame", self._peak_name()]
        lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
        for row in self.rows:
            cells = [row["method"], *(f"{row[c]:.3f}" for c in GLOBAL_COLUMNS), f"{row['seconds_per_frame']:.3f}",
                     _mib_text(self._peak(row))]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def text(self) -> str:
        """The table as aligned text: J&F, J and F means, seconds per frame and peak memory per method."""
        width = max(len(row["method"]) for row in self.rows)
        lines = [f"{'method':>{width}}  J&F-Mean  J-Mean  F-Mean  s/frame  {self._peak_name()}"]
        for row in self.rows:
            lines.append(f"{row['method']:>{width}}  {row['J&F-Mean']:8.3f}  {row['J-Mean']:6.3f}  {row['F-Mean']:6.3f}"
                         f"  {row['seconds_per_frame']:7.3f}  {_mib_text(self._peak(row)):>8}")
        return "\n".join(lines)


def _mib_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def _release_free_memory() -> None:
    """Return the C allocator's free memory to the system (glibc `malloc_trim`), so that buffers freed by an
    earlier method are not silently re-used and every method's peak counts what it allocates itself."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the peak may then miss re-used memory
        pass


def _peaks_reset(device: torch.device) -> dict[str, int | None]:
    """Reset the peak counters: the resident set (None where /proc cannot reset it) and CUDA's on a GPU."""
    before: dict[str, int | None] = {"cpu": None, "cuda": None}
    _release_free_memory()
    try:
        before["cpu"] = _reset_peak("cpu")
    except OSError:
        pass
    if device.type == "cuda":
        before["cuda"] = _reset_peak("cuda")
    return before


def _measure_sequence(encoder, sequence: DavisSequence, config: PropagationConfig, folder: Path,
                      bar: tqdm) -> dict:
    """Propagate one sequence into `folder` (submission layout); its seconds and peak bytes."""
    device = encoder.device
    before = _peaks_reset(device)
    start = time.perf_counter()
    write_sequence(folder, sequence.frame_names, predict_sequence(encoder, sequence, config), bar)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peaks = {kind: None if value is None else _peak_since(kind, value) for kind, value in before.items()}
    return {"seconds": seconds, "frames": len(sequence), "peak_cpu_bytes": peaks["cpu"],
            "peak_cuda_bytes": peaks["cuda"], "device": device.type}


def _scores(sequence: DavisSequence, method_dir: Path) -> dict:
    """Per-frame J and F of every object, read back from the written PNGs as the toolkit reads them."""
    gt, void = sequence.masks()
    scores = evaluate_sequence(gt, read_results(method_dir, sequence), void, len(sequence.object_ids))
    return {str(obj): {"j": s.j.tolist(), "f": s.f.tolist()} for obj, s in scores.items()}


def _object_scores(measures: dict) -> dict[int, ObjectScores]:
    return {int(obj): ObjectScores.from_frames(np.array(s["j"]), np.array(s["f"]))
            for obj, s in measures["objects"].items()}


def _mib(values: list[int | None]) -> float | None:
    return None if any(v is None for v in values) else max(values) / 2**20


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict]) -> None:
    """Floats with 6 decimals, None and NaN empty."""
    def cell(value: object) -> object:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        return f"{value:.6f}" if isinstance(value, float) else value

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([cell(row[c]) for c in columns] for row in rows)
    with atomic_path(path) as tmp:
        tmp.write_text(text.getvalue())


def _json_text(payload: dict) -> str:
    """JSON with NaN written as null (a decay over too few frames), so any JSON reader takes it."""
    def clean(value):
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return None if isinstance(value, float) and math.isnan(value) else value

    return json.dumps(clean(payload), indent=1) + "\n"


def run_benchmark(out: str | Path, profile: str | None = None, methods: list[str] | None = None,
                  davis: str | Path | None = None, split: str | None = None, sequences: list[str] | None = None,
                  frames: int | None = None, checkpoints: str | Path | None = None, device: str = "auto",
                  progress: bool = True, say: Callable[[str], object] = print) -> Benchmark:
    """Benchmark `methods` (default: the baselines and every trained method whose checkpoint is present) on
    `sequences` of the DAVIS split (default: all), each cut to `frames`, with the protocol's defaults; write
    the masks and tables under `out` and return them. Everything is checked before any work or any file is
    written; what is cached under `out` with the same key is reused."""
    profile_name = get_profile(profile).name
    folder = Path(checkpoints).expanduser().resolve() if checkpoints not in (None, "") else None
    chosen = select_methods(methods, profile_name, folder, say)
    keys = {method: features_key(method, path) for method, path in chosen.items()}
    dataset = open_dataset(davis, split, frames)
    videos = dataset.sequences(sequences)
    run_device = pick_device(device)
    config = PropagationConfig()
    out = Path(out).expanduser().resolve()
    folders = {(m, s.name): out / m / s.name for m in chosen for s in videos}
    full_keys = {(m, s.name): {**prediction_key(keys[m], dataset, config, s), "device": run_device.type}
                 for m in chosen for s in videos}
    missing = [(m, s) for m in chosen for s in videos if stale_reason(folders[m, s.name], full_keys[m, s.name])]
    out.mkdir(parents=True, exist_ok=True)
    say(f"benchmark of {len(chosen)} methods on {len(videos)} sequences of {dataset.root} ({dataset.split}): "
        f"{len(missing)} of {len(folders)} (method, sequence) results to compute, the others cached in {out}")
    encoder, loaded = None, None  # one method's network in memory at a time
    with tqdm(total=sum(len(s) for _, s in missing), unit="frame", desc="benchmark", disable=not progress) as bar:
        for method, sequence in missing:
            bar.set_postfix_str(f"{method}: {sequence.name}")
            if loaded != method:
                encoder = None  # freed before the next one is loaded
                encoder, loaded = build_encoder(str(chosen[method] or method), run_device), method
            target = folders[method, sequence.name]

            def compute(encoder=encoder, sequence=sequence, target=target) -> None:
                measures = _measure_sequence(encoder, sequence, config, target, bar)
                measures["objects"] = _scores(sequence, target.parent)
                with atomic_path(target / MEASURES) as tmp:
                    tmp.write_text(json.dumps(measures) + "\n")

            reuse_or_compute(target, full_keys[method, sequence.name], compute, say)
    del encoder
    benchmark = _collect(out, chosen, keys, videos, dataset, config, profile_name, folder, run_device)
    _write(out, benchmark)
    return benchmark


def _collect(out: Path, chosen: dict[str, Path | None], keys: dict, videos: list[DavisSequence],
             dataset: DavisDataset, config: PropagationConfig, profile: str, folder: Path,
             device: torch.device) -> Benchmark:
    """The tables from the cached measures of every (method, sequence)."""
    rows, per_sequence = [], []
    for method, path in chosen.items():
        measures = {s.name: json.loads((out / method / s.name / MEASURES).read_text()) for s in videos}
        scores = {name: _object_scores(m) for name, m in measures.items()}
        global_row, per_object = summarize(scores)
        write_toolkit_csvs(out / method, dataset.split, global_row, per_object)
        for name, m in measures.items():
            row, _ = summarize({name: scores[name]})
            per_sequence.append({"method": method, "sequence": name, "J&F-Mean": row["J&F-Mean"],
                                 "J-Mean": row["J-Mean"], "F-Mean": row["F-Mean"], "frames": m["frames"],
                                 "seconds_per_frame": m["seconds"] / m["frames"],
                                 "peak_cpu_mib": _mib([m["peak_cpu_bytes"]]),
                                 "peak_cuda_mib": _mib([m["peak_cuda_bytes"]])})
        total = sum(m["frames"] for m in measures.values())
        key = keys[method]["features"]
        rows.append({"method": method, "kind": "baseline" if path is None else "trained", **global_row,
                     "seconds_per_frame": sum(m["seconds"] for m in measures.values()) / total,
                     "peak_cpu_mib": _mib([m["peak_cpu_bytes"] for m in measures.values()]),
                     "peak_cuda_mib": _mib([m["peak_cuda_bytes"] for m in measures.values()]),
                     "sequences": len(measures), "frames": total, "checkpoint": "" if path is None else str(path),
                     "sha256": key["sha256"] if isinstance(key, dict) else ""})
    setup = {"davis": str(dataset.root), "split": dataset.split, "sequences": [s.name for s in videos],
             "frames": dataset.max_frames, "protocol": asdict(config), "profile": profile,
             "device": device.type, "out": str(out)}
    return Benchmark(rows, per_sequence, setup)


def _write(out: Path, benchmark: Benchmark) -> None:
    _write_csv(out / TABLE, TABLE_COLUMNS, benchmark.rows)
    _write_csv(out / PER_SEQUENCE, SEQUENCE_COLUMNS, benchmark.per_sequence)
    payload = {"setup": benchmark.setup, "methods": benchmark.rows, "per_sequence": benchmark.per_sequence}
    with atomic_path(out / RESULTS) as tmp:
        tmp.write_text(_json_text(payload))


def read_benchmark(out: str | Path) -> Benchmark | None:
    """The benchmark written in `out` by `run_benchmark` (or `python -m vos_lab benchmark`); None when there
    is none. NaN figures (a decay over too few frames) read back as NaN."""
    path = Path(out) / RESULTS
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text())
        rows = [{k: float("nan") if v is None and k in GLOBAL_COLUMNS else v for k, v in row.items()}
                for row in payload["methods"]]
        return Benchmark(rows, payload["per_sequence"], {**payload["setup"], "out": str(path.parent)})
    except (ValueError, KeyError, TypeError) as error:
        raise VosLabError(f"{path}: not a benchmark's results ({type(error).__name__})") from None
