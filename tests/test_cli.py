"""The command line: end-to-end on a tiny folder, and one-line errors (exit 2, no traceback) on bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest
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


def test_subprocess_error_has_no_traceback(tmp_path):
    _expect_error(run_cli("evaluate", "--davis", tmp_path / "nowhere", "--results", tmp_path), "not found")


# Each command's distinctive arguments, as its --help must show them.
HELP = {
    "synthetic": ("--sequences", "--frames", "--objects", "--seed"),
    "propagate": ("--davis", "--out", "--features", "--memory", "--roi", "--topk", "--radius", "--device"),
    "evaluate": ("--davis", "--results", "--json", "--split"),
    "train": ("colourisation, corrflow, mast", "colorization", "--variant", "--steps", "--minutes", "--option", "--val",
              "--eval-every"),
    "lectures": ("--profile", "--chapters", "--param", "--no-progress", "--notebooks"),
    "demo": ("--out", "--sequences", "--frames"),
    "bench": ("{propagation,sampler,attention}", "--heights", "--references", "--features", "--davis"),
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
