"""`python -m vos_lab benchmark`: every method under one protocol, cached per (method, sequence)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from helpers import write_davis2017

from vos_lab import benchmark
from vos_lab.cli import main
from vos_lab.data.download import file_digest
from vos_lab.data.synthetic import write_synthetic_davis
from vos_lab.errors import VosLabError
from vos_lab.profiles import get_profile
from vos_lab.training.run import train_from_profile


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("davis")
    write_synthetic_davis(root, sequences=2, frames=5, height=64, width=96, seed=0, objects=2)
    return root


def _train(method: str, out: Path, seed: int = 0, **options) -> Path:
    train_from_profile(method, get_profile("smoke"), out, ["embedded"], steps=2, seed=seed, progress=False, **options)
    return out


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Path:
    """Smoke-size checkpoints trained for 2 steps, named as chapters 2 and 3 name them."""
    folder = tmp_path_factory.mktemp("zoo")
    _train("colourisation", folder / "ch02-bottleneck-smoke.pt", variant="bottleneck")
    _train("mast", folder / "ch03-mast-smoke.pt")
    return folder


def _run(data: Path, zoo: Path, out: Path, methods: str = "lab,bottleneck,mast") -> int:
    return main(["benchmark", "--profile", "smoke", "--methods", methods, "--davis", str(data),
                 "--checkpoints", str(zoo), "--out", str(out)])


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_files_agree_with_evaluate(data, zoo, tmp_path, capsys):
    out = tmp_path / "bench"
    assert _run(data, zoo, out) == 0
    written = json.loads((out / "benchmark.json").read_text())
    rows = {row["method"]: row for row in written["methods"]}
    assert list(rows) == ["lab", "bottleneck", "mast"]
    table = {row["method"]: row for row in _csv(out / "benchmark.csv")}
    per_sequence = _csv(out / "per_sequence.csv")
    assert len(per_sequence) == 3 * 2
    for method, row in rows.items():
        assert (out / method / "synth-000" / "00000.png").is_file()  # the submission layout
        for column in ("J&F-Mean", "J-Mean", "J-Recall", "F-Mean", "seconds_per_frame", "peak_cpu_mib"):
            assert float(table[method][column]) == pytest.approx(row[column], abs=1e-6)
        assert row["seconds_per_frame"] > 0 and row["frames"] == 10
        assert main(["evaluate", "--davis", str(data), "--results", str(out / method),
                     "--json", str(tmp_path / f"{method}.json")]) == 0
        official = json.loads((tmp_path / f"{method}.json").read_text())
        for column, value in official["global"].items():
            assert row[column] == pytest.approx(value, abs=1e-12), (method, column)
        for sequence in ("synth-000", "synth-001"):
            objects = [o for o in official["objects"] if o["Sequence"].startswith(sequence + "_")]
            expected = sum(o["J-Mean"] + o["F-Mean"] for o in objects) / (2 * len(objects))
            found = next(r for r in written["per_sequence"] if r["method"] == method and r["sequence"] == sequence)
            assert found["J&F-Mean"] == pytest.approx(expected, abs=1e-12)
            assert next(float(r["J&F-Mean"]) for r in per_sequence
                        if r["method"] == method and r["sequence"] == sequence) == pytest.approx(expected, abs=1e-6)
    assert rows["mast"]["sha256"] and rows["lab"]["kind"] == "baseline"
    read = benchmark.read_benchmark(out)
    assert read.column("J&F-Mean") == {m: r["J&F-Mean"] for m, r in rows.items()}
    assert set(read.sequence_jf()["mast"]) == {"synth-000", "synth-001"}
    moved = shutil.move(out, tmp_path / "moved")
    assert benchmark.read_benchmark(moved).setup["out"] == str(moved)  # its masks are read from where it is now
    assert benchmark.read_benchmark(tmp_path / "nothing") is None


def test_a_rerun_computes_nothing(data, zoo, tmp_path, monkeypatch, capsys):
    out = tmp_path / "bench"
    assert _run(data, zoo, out) == 0
    first = json.loads((out / "benchmark.json").read_text())

    def refuse(*args, **kwargs):
        raise AssertionError("propagated again")

    monkeypatch.setattr(benchmark, "predict_sequence", refuse)
    capsys.readouterr()
    assert _run(data, zoo, out) == 0
    assert "0 of 6 (method, sequence) results to compute" in capsys.readouterr().out
    assert json.loads((out / "benchmark.json").read_text()) == first  # seconds and memory read back, not re-measured


def test_a_changed_checkpoint_recomputes_that_method_only(data, zoo, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "zoo"
    shutil.copytree(zoo, folder)
    out = tmp_path / "bench"
    assert _run(data, folder, out) == 0
    before = {path: path.stat().st_mtime_ns for path in out.glob("*/*/measures.json")}
    _train("mast", folder / "ch03-mast-smoke.pt", seed=1)  # a different model under the same name
    calls = []
    original = benchmark.predict_sequence
    monkeypatch.setattr(benchmark, "predict_sequence", lambda encoder, sequence, config: calls.append(
        sequence.name) or original(encoder, sequence, config))
    capsys.readouterr()
    assert _run(data, folder, out) == 0
    assert sorted(calls) == ["synth-000", "synth-001"]
    changed = sorted(p.parent.parent.name for p, t in before.items() if p.stat().st_mtime_ns != t)
    assert changed == ["mast", "mast"]
    assert "recomputing cached results (features.sha256" in capsys.readouterr().out
    assert benchmark.read_benchmark(out).changed_checkpoints() == []
    _train("mast", folder / "ch03-mast-smoke.pt", seed=2)  # retrained after the benchmark
    assert benchmark.read_benchmark(out).changed_checkpoints() == ["mast"]


@pytest.mark.parametrize("methods, message", [("lab,nope", "unknown method(s) nope"),
                                              ("lab,corrflow", "no checkpoint for corrflow"),
                                              ("lab,momentum", "not a readable checkpoint"),
                                              ("lab,contrastcorr", "holds mast, not contrastcorr")])
def test_bad_methods_are_refused_before_any_work(data, zoo, tmp_path, capsys, methods, message):
    folder = tmp_path / "zoo"
    shutil.copytree(zoo, folder)
    (folder / "ch04-momentum-smoke.pt").write_bytes(b"not a checkpoint")  # tampered
    shutil.copy(folder / "ch03-mast-smoke.pt", folder / "ch05-contrastcorr-smoke.pt")  # another method's
    out = tmp_path / "bench"
    assert _run(data, folder, out, methods) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not out.exists()


def test_default_methods_are_the_baselines_and_the_checkpoints_present(zoo):
    lines = []
    chosen = benchmark.select_methods(None, "smoke", zoo, lines.append)
    assert list(chosen) == ["rgb", "lab", "random-resnet18", "bottleneck", "mast"]
    assert chosen["mast"] == zoo / "ch03-mast-smoke.pt" and chosen["lab"] is None
    assert len(lines) == 1 and "vondrick" in lines[0] and "zoo build --profile smoke" in lines[0]


def test_checkpoints_come_from_the_folder_given_else_the_zoo_else_the_chapters_folder(zoo, tmp_path, monkeypatch):
    from vos_lab import zoo as model_zoo

    monkeypatch.setenv("VOS_LAB_HOME", str(tmp_path))
    monkeypatch.delenv(model_zoo.ZOO_VAR, raising=False)
    assert benchmark.checkpoint_path("mast", "smoke") == tmp_path / "checkpoints" / "ch03-mast-smoke.pt"
    assert benchmark.checkpoint_path("mast", "smoke", zoo) == zoo / "ch03-mast-smoke.pt"
    shelf = tmp_path / "zoo" / "smoke"
    shelf.mkdir(parents=True)
    shutil.copy(zoo / "ch03-mast-smoke.pt", shelf)
    entry = {"file": "ch03-mast-smoke.pt", "sha256": file_digest(shelf / "ch03-mast-smoke.pt")}
    model_zoo.write_manifest(shelf, {"format": model_zoo.FORMAT, "profile": "smoke", "models": {"ch03-mast": entry}})
    assert benchmark.checkpoint_path("mast", "smoke") == shelf / "ch03-mast-smoke.pt"
    assert benchmark.checkpoint_path("bottleneck", "smoke") == tmp_path / "checkpoints" / "ch02-bottleneck-smoke.pt"
    (shelf / "ch03-mast-smoke.pt").write_bytes(b"replaced")
    with pytest.raises(VosLabError, match="ch03-mast"):
        benchmark.checkpoint_path("mast", "smoke")


def test_the_split_is_val_else_train(tmp_path):

    root = write_davis2017(tmp_path / "davis", frames=4)
    assert benchmark.open_dataset(root).split == "val"
    (root / "ImageSets" / "2017" / "val.txt").rename(root / "ImageSets" / "2017" / "train.txt")  # as the dev copy
    dataset = benchmark.open_dataset(root, frames=3)
    assert dataset.split == "train" and len(dataset.sequence("seq")) == 3
    with pytest.raises(VosLabError, match="split 'val' not found"):
        benchmark.open_dataset(root, "val")
    with pytest.raises(VosLabError, match="--frames must be at least 3"):
        benchmark.open_dataset(root, frames=2)
