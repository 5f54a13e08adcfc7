"""The command line: end-to-end on a tiny folder, and one-line errors (exit 2, no traceback) on bad input."""

import errno
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import write_davis2017

from vos_lab.cli import COMMANDS, main
from vos_lab.data.davis import save_palette_png


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vos_lab", *map(str, args)], capture_output=True, text=True)


def run_main(capsys, *args) -> subprocess.CompletedProcess:
    """main() in this process (fast); returns what a subprocess run would."""
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, captured.out, captured.err)


@pytest.fixture
def tiny(tmp_path):
    return write_davis2017(tmp_path / "davis", frames=5)


def test_propagate_then_evaluate(tiny, tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["propagate", "--davis", str(tiny), "--out", str(out), "--features", "lab", "--topk", "1"]) == 0
    assert sorted(p.name for p in (out / "seq").iterdir()) == [f"{t:05d}.png" for t in range(5)]
    assert main(["evaluate", "--davis", str(tiny), "--results", str(out), "--json", str(tmp_path / "s.json")]) == 0
    printed = capsys.readouterr().out
    assert "J&F-Mean" in printed and (out / "global_results-val.csv").is_file()
    scores = json.loads((tmp_path / "s.json").read_text())
    assert {row["Sequence"] for row in scores["objects"]} == {"seq_1", "seq_2"}
    assert scores["global"]["J&F-Mean"] > 0.8  # a static textured video: each cell matches itself


def _expect_error(result: subprocess.CompletedProcess, text: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]  # lines before it can only be progress bars
    assert last.startswith("error:") and text in last, result.stderr
    assert sum(line.startswith("error") for line in result.stderr.splitlines()) == 1


def test_missing_root(tmp_path, capsys):
    _expect_error(run_main(capsys, "propagate", "--davis", tmp_path / "nowhere", "--out", tmp_path / "o"), "not found")


def test_unknown_features(tiny, tmp_path, capsys):
    _expect_error(run_main(capsys, "propagate", "--davis", tiny, "--out", tmp_path / "o", "--features", "sift"),
                  "unknown features 'sift'")


def test_sequence_without_annotations(tiny, tmp_path, capsys):
    for path in (tiny / "Annotations/480p/seq").glob("*.png"):
        path.unlink()
    _expect_error(run_main(capsys, "propagate", "--davis", tiny, "--out", tmp_path / "o"), "no annotation")


def test_corrupt_jpeg_and_png(tiny, tmp_path, capsys):
    (tiny / "JPEGImages/480p/seq/00002.jpg").write_bytes(b"garbage")
    _expect_error(run_main(capsys, "propagate", "--davis", tiny, "--out", tmp_path / "o"),
                  "00002.jpg: cannot read image")
    (tiny / "Annotations/480p/seq/00000.png").write_bytes(b"\x89PNG broken")
    _expect_error(run_main(capsys, "propagate", "--davis", tiny, "--out", tmp_path / "o"),
                  "00000.png: cannot read image")


def test_mask_size_differs_from_frame(tiny, tmp_path, capsys):
    save_palette_png(tiny / "Annotations/480p/seq/00000.png", np.zeros((10, 10), np.uint8))
    _expect_error(run_main(capsys, "propagate", "--davis", tiny, "--out", tmp_path / "o"), "differs from its frame")


def test_results_with_missing_frames(tiny, tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["propagate", "--davis", str(tiny), "--out", str(out)]) == 0
    (out / "seq" / "00003.png").unlink()
    _expect_error(run_main(capsys, "evaluate", "--davis", tiny, "--results", out), "1 of 5 result frames missing")


def test_results_with_unexpected_ids(tiny, tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["propagate", "--davis", str(tiny), "--out", str(out)]) == 0
    save_palette_png(out / "seq" / "00002.png", np.full((48, 64), 7, np.uint8))
    _expect_error(run_main(capsys, "evaluate", "--davis", tiny, "--results", out), "7")


class RunsCode:
    """An object whose unpickling runs a shell command (writes a marker file)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class Custom:
    """Any class of ours: harmless, but loading it needs the unpickler to import and build it."""


@pytest.mark.parametrize("payload", ["runs code", "custom object"])
def test_checkpoint_with_python_objects_is_refused_unrun(tiny, tmp_path, capsys, payload):
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "vos_lab-checkpoint-1", "config": {"method": "mast"},
                "x": RunsCode(marker) if payload == "runs code" else Custom()}, evil)
    _expect_error(run_main(capsys, "propagate", "--davis", tiny, "--out", tmp_path / "o", "--features", evil),
                  "refused, it holds Python objects other than tensors and plain values")
    assert not marker.exists(), "loading a checkpoint ran its code"
    assert not (tmp_path / "o").exists()


def test_output_paths_are_checked_before_the_work(tiny, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("")
    results = tmp_path / "results"
    _expect_error(run_main(capsys, "propagate", "--davis", tiny, "--out", afile / "res"),
                  f"{afile}: is a file, so {afile / 'res'} cannot be written")
    _expect_error(run_main(capsys, "propagate", "--davis", tiny, "--out", afile),
                  f"{afile}: is a file; expected a folder")
    assert main(["propagate", "--davis", str(tiny), "--out", str(results)]) == 0
    _expect_error(run_main(capsys, "evaluate", "--davis", tiny, "--results", results, "--json", afile / "s.json"),
                  "is a file")
    _expect_error(run_main(capsys, "evaluate", "--davis", tiny, "--results", results, "--json", results),
                  f"{results}: is a folder; expected a file")
    assert not (results / "global_results-val.csv").exists(), "refused before scoring"
    assert run_main(capsys, "evaluate", "--davis", tiny, "--results", results, "--json", tmp_path / "new/s.json"
                    ).returncode == 0
    assert "J&F-Mean" in json.loads((tmp_path / "new/s.json").read_text())["global"]  # its folder is created
    for out, text in ((afile / "model.pt", "is a file, so"), (results, "is a folder; expected a file")):
        _expect_error(run_main(capsys, "train", "mast", "--profile", "smoke", "--steps", "1", "--out", out), text)
    assert not list(tmp_path.glob("**/*.pt"))


def test_write_failure_is_one_error_line(tiny, tmp_path, capsys, monkeypatch):
    def disk_full(path, mask):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr("vos_lab.evaluation.save_palette_png", disk_full)
    _expect_error(run_main(capsys, "propagate", "--davis", tiny, "--out", tmp_path / "o"), "disk full")


def test_subprocess_error_has_no_traceback(tmp_path):
    _expect_error(run_cli("evaluate", "--davis", tmp_path / "nowhere", "--results", tmp_path), "not found")


# Each command's distinctive arguments, as its --help must show them.
HELP = {
    "synthetic": ("--sequences", "--frames", "--objects", "--seed"),
    "propagate": ("--davis", "--out", "--features", "--memory", "--roi", "--topk", "--radius", "--device",
                  "--online-adapt", "--adapt-iters", "--block"),
    "evaluate": ("--davis", "--results", "--json", "--split"),
    "train": ("colourisation, corrflow, mast", "colorization", "--variant", "--steps", "--minutes", "--option", "--val",
              "--eval-every", "--replace"),
    "lectures": ("--profile", "--chapters", "--param", "--no-progress", "--notebooks"),
    "demo": ("--out", "--sequences", "--frames"),
    "benchmark": ("--profile", "--methods", "--davis", "--split", "--sequences", "--frames", "--checkpoints",
                  "--device", "--out", "benchmark.csv", "per_sequence.csv", "benchmark.json"),
    "zoo": ("build", "list", "manifest"),
    "bench": ("{propagation,sampler,attention,adapt,ino-step}", "--heights", "--references", "--features", "--davis",
              "--adapt-iters", "--batch", "--steps"),
}


def test_every_command_has_help_with_its_options(capsys):
    assert set(COMMANDS) == set(HELP), "a new command needs its line in HELP"
    listing = run_cli("--help")
    assert listing.returncode == 0 and all(f"    {command}" in listing.stdout for command in HELP), listing.stdout
    for command, arguments in HELP.items():
        with pytest.raises(SystemExit) as exit_status:
            main([command, "--help"])
        assert exit_status.value.code == 0
        text = capsys.readouterr().out
        assert text.startswith(f"usage: python -m vos_lab {command} ")
        assert not [a for a in arguments if a not in text], (command, text)
