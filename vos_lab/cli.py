"""Command line: `python -m vos_lab <command> --help`.

Input problems (paths, files, parameters) and output problems (a folder that cannot be written, a full disk)
end with one line on stderr and exit status 2. Output paths are checked before the work starts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from vos_lab.errors import VosLabError
from vos_lab.paths import atomic_path, fs_error

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str):
    def register(function: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = function
        return function

    return register


def _names(text: str | None) -> list[str] | None:
    return [n.strip() for n in text.split(",") if n.strip()] if text else None


def _dataset_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--davis", type=Path, required=True, help="DAVIS root (with JPEGImages/, Annotations/)")
    parser.add_argument("--year", type=int, choices=(2016, 2017), help="mask format (default: from the layout)")
    parser.add_argument("--split", default="val", help="split list in ImageSets (default: val)")
    parser.add_argument("--sequences", help="comma-separated subset of the split")


def _propagation_args(parser: argparse.ArgumentParser) -> None:
    from vos_lab.propagation import PropagationConfig

    default = PropagationConfig()
    parser.add_argument("--topk", type=int, default=default.topk,
                        help="matches kept per cell, 0 = every position of the windows (default: %(default)s)")
    parser.add_argument("--radius", type=int, default=default.radius,
                        help="neighbourhood radius in feature cells, -1 = whole frame (default: %(default)s)")
    parser.add_argument("--context", type=int, default=default.context,
                        help="recent frames used besides frame 0 (default: %(default)s)")
    parser.add_argument("--temperature", type=float, default=default.temperature,
                        help="softmax temperature tau (default: %(default)s)")


def _adapt_args(parser: argparse.ArgumentParser) -> None:
    """`propagate --online-adapt`: chapter 4's U-Net trained per video on the propagated masks."""
    parser.add_argument("--online-adapt", action="store_true",
                        help="train a U-Net per video on the propagated masks and write its predictions (chapter 4)")
    parser.add_argument("--adapt-iters", type=int, help="U-Net iterations per video (default: the profile's)")
    parser.add_argument("--profile", default=None,
                        help="profile giving the U-Net's iterations and size (default: $VOS_LAB_PROFILE, else cpu)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the U-Net (default: 0)")


def _adapt_config(args: argparse.Namespace):
    """The online adaptation asked for (None without --online-adapt), checked before any work."""
    from vos_lab.adaptation import AdaptConfig
    from vos_lab.profiles import get_profile

    if not args.online_adapt:
        if args.adapt_iters is not None:
            raise VosLabError("--adapt-iters needs --online-adapt")
        return None
    return AdaptConfig.from_profile(get_profile(args.profile), args.adapt_iters, args.seed)


def _config(args: argparse.Namespace):
    from vos_lab.propagation import PropagationConfig

    radius = None if args.radius is not None and args.radius < 0 else args.radius
    config = PropagationConfig(temperature=args.temperature, topk=args.topk or None, radius=radius,
                               context=args.context)
    return _memory(config, args)


def _memory(config, args: argparse.Namespace):
    """`propagate --memory/--roi`: one of the memory layouts of chapter 3, optionally with MAST's ROI."""
    from dataclasses import replace

    from vos_lab.propagation import MEMORY_LAYOUTS

    return replace(config, **MEMORY_LAYOUTS[getattr(args, "memory", "default")], roi=getattr(args, "roi", False))


def _check_output(path: Path, folder: bool = False) -> Path:
    """Refuse, before any work, an output that cannot be written: a folder where a file is wanted (or the
    reverse), a file where a folder would have to be, or a folder without write permission. Creates nothing."""
    if path.exists() and path.is_dir() != folder:
        found, wanted = ("file", "folder") if folder else ("folder", "file")
        raise VosLabError(f"{path}: is a {found}; expected a {wanted}")
    start = path if folder else path.parent
    existing = next(p for p in (start, *start.parents) if p.exists())
    if not existing.is_dir():
        raise VosLabError(f"{existing}: is a file, so {path} cannot be written")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise VosLabError(f"{existing}: cannot write here (permission denied); choose a writable folder")
    return path


def _options(items: list[str]) -> dict:
    """`--option key=value` pairs; values are Python literals when they parse as one, else strings."""
    import ast

    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise VosLabError(f"--option '{item}': expected key=value")
        try:
            options[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            options[key] = value
    return options


def build_parser() -> argparse.ArgumentParser:
    from vos_lab.methods.registry import ALIASES, METHODS

    parser = argparse.ArgumentParser(prog="python -m vos_lab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("synthetic", help="write a synthetic DAVIS-2017-format dataset")
    p.add_argument("out", type=Path, help="output root")
    p.add_argument("--sequences", type=int, default=4)
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--width", type=int, default=432)
    p.add_argument("--objects", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("propagate", help="propagate first-frame masks through a DAVIS split")
    _dataset_args(p)
    p.add_argument("--out", type=Path, required=True, help="results folder (<out>/<seq>/<frame>.png)")
    p.add_argument("--features", default="lab", help="rgb, lab, random-resnet18 or a checkpoint .pt")
    p.add_argument("--memory", choices=("default", "mast", "previous"), default="default",
                   help="reference frames: the protocol's, MAST's {0,5}+{t-1,t-3,t-5}, or the previous frame only")
    p.add_argument("--roi", action="store_true",
                   help="MAST's coarse-to-fine ROI for references more than 15 frames back")
    p.add_argument("--block", type=int, help="a ViT checkpoint's block whose patch tokens are the features "
                                             "(default: the checkpoint's `block` option)")
    _propagation_args(p)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    _adapt_args(p)

    p = sub.add_parser("evaluate", help="score a results folder with the DAVIS metric (J, F, J&F)")
    _dataset_args(p)
    p.add_argument("--results", type=Path, required=True, help="folder with <seq>/<frame>.png")
    p.add_argument("--json", type=Path, help="also write every figure (global and per object) here")

    p = sub.add_parser("train", help="train a self-supervised method (resumes an interrupted run)")
    p.add_argument("method", choices=(*METHODS, *ALIASES), metavar="METHOD",
                   help=f"{', '.join(METHODS)} ({', '.join(ALIASES)} is accepted too)")
    p.add_argument("--variant", default="vondrick", help="colourisation: vondrick, bottleneck or rgb")
    p.add_argument("--profile", default=None, help="smoke, cpu or gpu (default: $VOS_LAB_PROFILE, else cpu)")
    p.add_argument("--data", default="embedded",
                   help="comma-separated: 'embedded', folders of videos or frames, DAVIS roots (default: embedded)")
    p.add_argument("--steps", type=int, help="training steps (default: the profile's)")
    p.add_argument("--minutes", type=float, help="training time limit (default: the profile's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, required=True, help="checkpoint file (.pt); resumed when it exists")
    p.add_argument("--replace", action="store_true",
                   help="train anew over a checkpoint trained otherwise (default: refuse it, nothing is lost)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="method option, repeatable (e.g. radius=4, cycle_weight=0, sampling=False)")
    p.add_argument("--val", type=Path, metavar="DAVIS", help="DAVIS root for periodic J&F validation")
    p.add_argument("--val-split", default="val", help="split of --val (default: val)")
    p.add_argument("--val-sequences", type=int, default=3, help="first N sequences of --val (default: 3)")
    p.add_argument("--val-frames", type=int, default=30, help="first N frames of each (default: 30)")
    p.add_argument("--eval-every", type=int, help="validate every N steps (default: the profile's; 0: at the end)")
    p.add_argument("--workers", type=int, help="processes reading clips (default: 4 per GPU, none on the CPU); "
                                               "under torchrun, per process")

    p = sub.add_parser("zoo", help="the model zoo: every chapter's checkpoint, trained once, with a manifest")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = actions.add_parser("build", help="train (or resume, or reuse) the chapters' models into the zoo")
    build.add_argument("--models", help="comma-separated model names, e.g. ch03-corrflow,ch03-mast (default: all)")
    build.add_argument("--data", help="comma-separated training sources for every model (default: each chapter's)")
    build.add_argument("--davis", type=Path, help="DAVIS folder for validation and the manifest's J&F (default: "
                                                  "$VOS_LAB_DATA's, else ../shared/data/davis2016-dev)")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--device", default="auto")
    listed = actions.add_parser("list", help="print the zoo's manifest as a table")
    for z in (build, listed):
        z.add_argument("--profile", default=None, help="smoke, cpu or gpu (default: $VOS_LAB_PROFILE, else cpu)")
        z.add_argument("--out", type=Path, help="the zoo's folder (default: $VOS_LAB_ZOO, else "
                                                "<course folder>/zoo/<profile>)")

    p = sub.add_parser("lectures", help="render the chapters with papermill to executed notebooks and HTML")
    from vos_lab.course.lectures import add_arguments as _lectures_args

    _lectures_args(p)

    p = sub.add_parser("demo", help="synthetic data -> propagate with each baseline -> J&F table")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="working folder (default: %(default)s)")
    p.add_argument("--sequences", type=int, default=4)
    p.add_argument("--frames", type=int, default=24)

    p = sub.add_parser("benchmark", help="every baseline and trained method under one protocol: J&F, speed, memory")
    p.add_argument("--profile", default=None,
                   help="whose checkpoints (ch03-mast-<profile>.pt ...): smoke, cpu or gpu (default: $VOS_LAB_PROFILE, "
                        "else cpu)")
    p.add_argument("--methods", help="comma-separated (default: the baselines and every trained method whose "
                                     "checkpoint is present)")
    p.add_argument("--davis", type=Path,
                   help="DAVIS root (default: $VOS_LAB_DATA's, else ../shared/data/davis2016-dev)")
    p.add_argument("--split", help="split list in ImageSets (default: val, else train)")
    p.add_argument("--sequences", help="comma-separated subset of the split (default: all)")
    p.add_argument("--frames", type=int, help="the first N frames of each sequence (default: all)")
    p.add_argument("--checkpoints", type=Path,
                   help="folder of the trained checkpoints (default: each from the model zoo when it holds it, "
                        "else from the course's checkpoints/)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--out", type=Path, required=True,
                   help="folder: <method>/<seq>/<frame>.png, benchmark.csv, per_sequence.csv, benchmark.json")

    p = sub.add_parser("bench", help="benchmarks that print speed and memory figures")
    p.add_argument("what", choices=("propagation", "sampler", "attention", "adapt", "ino-step"))
    p.add_argument("--heights", default="120,240,360,480", help="attention: frame heights to measure (16:9)")
    p.add_argument("--references", type=int, default=1, help="attention: reference frames")
    p.add_argument("--profile", default="gpu", help="sampler, ino-step: whose batch size and crop to use")
    p.add_argument("--batch", type=int, help="ino-step: clips per batch (default: the profile's)")
    p.add_argument("--steps", type=int, default=3, help="ino-step: timed steps after the first (0: time the first)")
    p.add_argument("--features", default="random-resnet18",
                   help="propagation: lab, rgb, random-resnet18 (a random stride-8 CNN with 256-d output, standing "
                        "in for a learned encoder: the speed does not depend on the weights) or a checkpoint .pt")
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=854)
    p.add_argument("--frames", type=int, help="propagation: frames of the synthetic video (default: 12) or the "
                                              "first N of the --davis sequence (default: all)")
    p.add_argument("--device", default="auto", help="propagation: auto (CUDA when available), cpu or cuda")
    p.add_argument("--davis", type=Path, help="use this DAVIS root instead of a synthetic video")
    p.add_argument("--sequence", help="sequence of --davis to use (default: the first)")
    p.add_argument("--split", default=None)
    p.add_argument("--data", default="embedded", help="sampler: training data, as for train (default: embedded)")
    p.add_argument("--workers", default="0,1,2", help="sampler: numbers of loader processes to measure")
    _propagation_args(p)
    p.set_defaults(topk=5, radius=12, context=7)
    p.add_argument("--adapt-iters", type=int, help="adapt: U-Net iterations (default: the --profile's)")
    return parser


@command("synthetic")
def _synthetic(args: argparse.Namespace) -> int:
    from vos_lab.data.synthetic import write_synthetic_davis

    names = write_synthetic_davis(_check_output(args.out, folder=True), sequences=args.sequences,
                                  frames=args.frames, height=args.height, width=args.width, seed=args.seed,
                                  objects=args.objects)
    print(f"wrote {len(names)} sequences x {args.frames} frames to {args.out}")
    return 0


@command("propagate")
def _propagate(args: argparse.Namespace) -> int:
    from vos_lab.data.davis import DavisDataset
    from vos_lab.device import pick_device
    from vos_lab.evaluation import propagate_dataset
    from vos_lab.features import build_encoder

    config, adapt = _config(args), _adapt_config(args)
    _check_output(args.out, folder=True)
    dataset = DavisDataset(args.davis, args.year, args.split)
    encoder = build_encoder(args.features, pick_device(args.device), args.block)
    run = propagate_dataset(encoder, dataset, args.out, config, _names(args.sequences), adapt=adapt)
    adapted = f", online adaptation {adapt.iters} iterations at {adapt.size} px" if adapt else ""
    print(f"{run.frames} frames of {len(run.sequences)} sequences in {run.seconds:.1f} s "
          f"({run.seconds_per_frame:.3f} s/frame{adapted}) -> {args.out}")
    return 0


def format_table(row: dict[str, float]) -> str:
    """The global figures as a two-line aligned table."""
    widths = [max(len(k), 8) for k in row]
    head = "  ".join(k.rjust(w) for k, w in zip(row, widths, strict=True))
    values = "  ".join(f"{v:.3f}".rjust(w) for v, w in zip(row.values(), widths, strict=True))
    return f"{head}\n{values}"


@command("evaluate")
def _evaluate(args: argparse.Namespace) -> int:
    from vos_lab.data.davis import DavisDataset
    from vos_lab.evaluation import score_results
    from vos_lab.metrics import write_toolkit_csvs

    if args.json:
        _check_output(args.json)
    dataset = DavisDataset(args.davis, args.year, args.split)
    scores = score_results(dataset, args.results, _names(args.sequences))
    paths = write_toolkit_csvs(args.results, args.split, scores.global_row, scores.per_object_rows)
    print(format_table(scores.global_row))
    print("wrote " + ", ".join(str(p) for p in paths))
    if args.json:
        payload = {"global": scores.global_row, "objects": scores.per_object_rows}
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(payload, indent=2))
    return 0


@command("train")
def _train(args: argparse.Namespace) -> int:
    from vos_lab.methods.registry import METHODS, method_name
    from vos_lab.profiles import get_profile
    from vos_lab.training.run import train_from_profile

    method = method_name(args.method)
    options = _options(args.option)
    if method == "colourisation":
        if "variant" in options:
            raise VosLabError("--option variant: give the variant with --variant")
        options["variant"] = args.variant
    options = METHODS[method].check_options(options)  # before any work: an error, not a crash mid-run
    if args.workers is not None and args.workers < 0:
        raise VosLabError(f"--workers must be 0 or more, got {args.workers}")
    _check_output(args.out)
    evaluate = None
    if args.val is not None:
        from vos_lab.data.davis import DavisDataset
        from vos_lab.evaluation import validation_jf

        dataset = DavisDataset(args.val, split=args.val_split)
        evaluate = validation_jf(dataset, dataset.names[: args.val_sequences], args.val_frames)
    result = train_from_profile(method, get_profile(args.profile), args.out, _names(args.data),
                                steps=args.steps, minutes=args.minutes, seed=args.seed, device=args.device,
                                evaluate=evaluate, eval_every=args.eval_every, replace=args.replace,
                                workers=args.workers, **options)
    if int(os.environ.get("RANK", "0")):  # under torchrun, rank 0 reports
        return 0
    last = result.history[-1] if result.history else {}
    loss = last.get("loss", float("nan"))
    print(f"{args.out}: {result.step} steps in {result.seconds / 60:.1f} min on {result.data or 'unrecorded data'}; "
          f"last loss {loss:.3f}")
    for figures in result.evaluations:
        print("  validation at step {step}: J&F {J&F:.3f} (J {J:.3f}, F {F:.3f})".format(**figures))
    return 0


@command("zoo")
def _zoo(args: argparse.Namespace) -> int:
    from vos_lab import zoo
    from vos_lab.course.notebook import find_davis
    from vos_lab.profiles import get_profile

    profile = get_profile(args.profile)
    folder = args.out or zoo.zoo_dir(profile)
    if args.action == "list":
        print(f"zoo of the {profile.name} profile: {folder}")
        print(zoo.format_rows(zoo.listing(profile, folder)))
        return 0
    keys = _names(args.models)
    for key in keys or []:
        zoo.model(key)  # an unknown name: an error before any work
    if args.davis is not None and not (args.davis / "ImageSets").is_dir():
        raise VosLabError(f"--davis {args.davis}: not a DAVIS folder (no ImageSets/ inside)")
    davis = args.davis or find_davis()
    rows = zoo.build(profile, _check_output(folder, folder=True), _names(args.data), davis, keys, seed=args.seed,
                     device=args.device)
    print(f"\nzoo of the {profile.name} profile: {folder} (J&F: {profile.eval_sequences or 'all'} sequences x "
          f"{profile.eval_max_frames or 'all'} frames of {davis or 'no DAVIS folder'})")
    print(zoo.format_rows(rows))
    return 0


@command("lectures")
def _lectures(args: argparse.Namespace) -> int:
    from vos_lab.course.lectures import run

    return run(args)


@command("demo")
def _demo(args: argparse.Namespace) -> int:
    from vos_lab.data.davis import DavisDataset
    from vos_lab.data.synthetic import write_synthetic_davis
    from vos_lab.device import pick_device
    from vos_lab.evaluation import propagate_dataset, score_results
    from vos_lab.features import build_encoder
    from vos_lab.models.encoders import BASELINES
    from vos_lab.propagation import PropagationConfig

    root = _check_output(args.out, folder=True) / "synthetic"
    write_synthetic_davis(root, sequences=args.sequences, frames=args.frames)
    dataset = DavisDataset(root)
    rows = {}
    for name in BASELINES:
        results = args.out / "results" / name
        run = propagate_dataset(build_encoder(name, pick_device()), dataset, results, PropagationConfig())
        rows[name] = (score_results(dataset, results, progress=False).global_row, run.seconds_per_frame)
    print(f"\nJ&F on {len(dataset.names)} synthetic sequences x {args.frames} frames ({root}):")
    for name, (row, seconds) in rows.items():
        print(f"  {name:>16}: J&F {row['J&F-Mean']:.3f}  J {row['J-Mean']:.3f}  F {row['F-Mean']:.3f}  "
              f"{seconds:.3f} s/frame")
    return 0


@command("benchmark")
def _benchmark(args: argparse.Namespace) -> int:
    from vos_lab.benchmark import PER_SEQUENCE, RESULTS, TABLE, run_benchmark

    _check_output(args.out, folder=True)
    result = run_benchmark(args.out, args.profile, _names(args.methods), args.davis, args.split,
                           _names(args.sequences), args.frames, args.checkpoints, args.device)
    print(result.text())
    print("wrote " + ", ".join(str(args.out / name) for name in (TABLE, PER_SEQUENCE, RESULTS)) +
          f" and the masks in {args.out}/<method>/")
    return 0


@command("bench")
def _bench(args: argparse.Namespace) -> int:
    from vos_lab.bench import bench_attention, bench_propagation, bench_sampler
    from vos_lab.device import pick_device

    if args.what == "attention":
        bench_attention(tuple(int(h) for h in _names(args.heights)), references=args.references,
                        radius=args.radius, topk=args.topk, device=pick_device().type)
        return 0
    if args.what == "sampler":
        counts = [w for w in _names(args.workers) or [] if w.isdigit()]
        if not counts or len(counts) != len(_names(args.workers)):
            raise VosLabError(f"--workers: comma-separated numbers of processes (0 or more), got {args.workers!r}")
        bench_sampler(args.profile, sources=_names(args.data), workers=tuple(int(w) for w in counts))
        return 0
    if args.what == "adapt":
        from vos_lab.adaptation import AdaptConfig
        from vos_lab.bench import bench_adapt
        from vos_lab.profiles import get_profile

        adapt = AdaptConfig.from_profile(get_profile(args.profile), args.adapt_iters)
        bench_adapt(adapt, args.features, _config(args), args.height, args.width, args.frames, davis=args.davis,
                    sequence=args.sequence, split=args.split, device=args.device)
        return 0
    if args.what == "ino-step":
        from vos_lab.bench import bench_ino_step

        bench_ino_step(args.profile, args.batch, args.steps, args.device)
        return 0
    bench_propagation(args.features, _config(args), args.height, args.width, args.frames,
                      davis=args.davis, sequence=args.sequence, split=args.split, device=args.device)
    return 0


def _error(message: object) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except VosLabError as error:
        return _error(error)
    except OSError as error:  # the file system refused a read or a write
        return _error(fs_error(Path(error.filename), error) if error.filename else error.strerror or error)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
