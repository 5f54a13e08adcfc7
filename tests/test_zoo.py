"""The model zoo (`vos_lab.zoo`, `python -m vos_lab zoo`): build, reuse, load-or-train, refusals."""

import contextlib
import json
import shutil

import pytest

from vos_lab import zoo
from vos_lab.cli import main
from vos_lab.data.download import file_digest
from vos_lab.errors import VosLabError
from vos_lab.profiles import get_profile
from vos_lab.propagation import PropagationConfig
from vos_lab.training import loop

SMOKE = get_profile("smoke")
KEY = "ch03-mast"  # the fastest model of the smoke profile (validated during training, as in chapter 3)


@pytest.fixture(scope="module")
def built(tmp_path_factory, synthetic_root):
    """A smoke zoo holding one model, built by the command line; (folder, its output)."""
    folder = tmp_path_factory.mktemp("zoo") / "smoke"
    capture = tmp_path_factory.mktemp("out") / "stdout.txt"
    with open(capture, "w") as handle, contextlib.redirect_stdout(handle):
        assert main(["zoo", "build", "--profile", "smoke", "--models", KEY, "--out", str(folder),
                     "--davis", str(synthetic_root)]) == 0
    return folder, capture.read_text()


@pytest.fixture
def copy(built, tmp_path):
    """A copy of the built zoo that a test may change."""
    return shutil.copytree(built[0], tmp_path / "zoo")


def no_training(*args, **kwargs):
    raise AssertionError("trained, where the zoo's checkpoint should have been used")


def test_build_writes_a_manifest_with_sha256_and_jf(built):
    folder, out = built
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["format"] == zoo.FORMAT and manifest["profile"] == "smoke"
    entry = manifest["models"][KEY]
    assert entry["file"] == f"{KEY}-smoke.pt" and entry["method"] == "mast"
    assert entry["sha256"] == file_digest(folder / entry["file"])
    assert entry["data"] == "embedded" and entry["seed"] == 0 and entry["batch_size"] == SMOKE.batch_size
    assert entry["steps"] == SMOKE.train_steps and entry["training_seconds"] >= 0 and entry["validated"]
    assert 0 <= entry["dev"]["J&F"] <= 1 and entry["dev"]["frames"] == SMOKE.eval_max_frames
    assert len(entry["dev"]["sequences"]) == SMOKE.eval_sequences
    assert f"{KEY}  trained" in out and "J&F" in out  # the summary table


def test_manifest_jf_is_the_chapters_number(built, synthetic_root):
    """The J&F of the manifest is what a chapter computes on its evaluation subset: masks written, read back
    and scored (`cached_predictions` + `score_results`)."""
    from vos_lab.course.notebook import cached_predictions, eval_data
    from vos_lab.evaluation import score_results
    from vos_lab.training.checkpoints import load_encoder

    folder, _ = built
    dataset, names = eval_data(synthetic_root, SMOKE)
    runs = folder.parent / "runs"
    cached_predictions(load_encoder(folder / f"{KEY}-smoke.pt"), dataset, runs, PropagationConfig(), names,
                       {"features": KEY}, progress=False)
    jf = score_results(dataset, runs, names, progress=False).global_row["J&F-Mean"]
    entry = json.loads((folder / "manifest.json").read_text())["models"][KEY]
    assert entry["dev"]["J&F"] == pytest.approx(jf, abs=1e-4)


def test_second_build_trains_nothing(copy, synthetic_root, monkeypatch, capsys):
    monkeypatch.setattr(loop, "_train", no_training)
    assert main(["zoo", "build", "--profile", "smoke", "--models", KEY, "--out", str(copy),
                 "--davis", str(synthetic_root)]) == 0
    out = capsys.readouterr().out
    assert f"{KEY}: reused" in out and f"{KEY}  reused" in out


def test_build_copies_the_same_run_a_chapter_trained(built, tmp_path, synthetic_root, monkeypatch, capsys):
    """A zoo built after the chapters copies their finished checkpoints (the same runs) instead of training them."""
    home = tmp_path / "home"
    (home / "checkpoints").mkdir(parents=True)
    shutil.copyfile(built[0] / f"{KEY}-smoke.pt", home / "checkpoints" / f"{KEY}-smoke.pt")
    monkeypatch.setenv("VOS_LAB_HOME", str(home))
    monkeypatch.setattr(loop, "_train", no_training)
    folder = tmp_path / "zoo"
    assert main(["zoo", "build", "--profile", "smoke", "--models", KEY, "--out", str(folder),
                 "--davis", str(synthetic_root)]) == 0
    out = capsys.readouterr().out
    assert f"{KEY}: the same run as" in out and f"{KEY}  copied" in out
    entry = json.loads((folder / "manifest.json").read_text())["models"][KEY]
    chapters = home / "checkpoints" / f"{KEY}-smoke.pt"
    assert entry["sha256"] == file_digest(chapters) == file_digest(folder / entry["file"])


def test_a_chapter_loads_the_zoos_model_without_training(copy, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(loop, "_train", no_training)
    folder = tmp_path / "checkpoints"
    result = zoo.trained(KEY, SMOKE, ["embedded"], folder=folder, zoo=copy)
    assert result.path == copy / f"{KEY}-smoke.pt" and result.step == SMOKE.train_steps and result.evaluations
    assert not folder.exists()  # nothing trained into the chapter's folder
    monkeypatch.setenv("VOS_LAB_ZOO", str(copy))  # the default zoo
    assert zoo.trained(KEY, SMOKE, ["embedded"], folder=folder).path == copy / f"{KEY}-smoke.pt"
    assert zoo.checkpoint(KEY, SMOKE, folder) == copy / f"{KEY}-smoke.pt"
    assert zoo.checkpoint("ch02-rgb", SMOKE, folder) == folder / "ch02-rgb-smoke.pt"  # not in the zoo
    assert capsys.readouterr().out.count(f"zoo: {KEY}: loaded from the model zoo") == 2


def test_tampered_checkpoint_is_refused_and_left_alone(copy, tmp_path, synthetic_root, monkeypatch, capsys):
    monkeypatch.setattr(loop, "_train", no_training)
    path = copy / f"{KEY}-smoke.pt"
    path.write_bytes(path.read_bytes() + b"\0")
    before, manifest = path.read_bytes(), (copy / "manifest.json").read_text()
    with pytest.raises(VosLabError, match="SHA-256 differs"):
        zoo.trained(KEY, SMOKE, ["embedded"], folder=tmp_path / "checkpoints", zoo=copy)
    assert main(["zoo", "build", "--profile", "smoke", "--models", KEY, "--out", str(copy),
                 "--davis", str(synthetic_root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "SHA-256 differs" in err and len(err.strip().splitlines()) == 1
    assert path.read_bytes() == before and (copy / "manifest.json").read_text() == manifest
    assert main(["zoo", "list", "--profile", "smoke", "--out", str(copy)]) == 0
    assert "TAMPERED" in capsys.readouterr().out


def test_zoo_model_trained_otherwise_is_not_used(copy, tmp_path, capsys):
    folder = tmp_path / "checkpoints"
    result = zoo.trained(KEY, SMOKE, ["embedded"], folder=folder, zoo=copy, steps=2, progress=False)
    assert "not used, trained otherwise than asked (steps: 4 done, 2 asked)" in capsys.readouterr().out
    assert result.path == folder / f"{KEY}-smoke.pt" and result.step == 2


def test_unknown_model_is_an_error_line(tmp_path, capsys):
    assert main(["zoo", "build", "--profile", "smoke", "--models", "ch03-mast,ch09-magic",
                 "--out", str(tmp_path / "zoo")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown zoo model 'ch09-magic'") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "zoo").exists()


def test_list_prints_the_manifest(built, capsys):
    folder, _ = built
    assert main(["zoo", "list", "--profile", "smoke", "--out", str(folder)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[1].split()[:3] == ["model", "status", "method"]
    assert lines[2].split()[:4] == [KEY, "ok", "mast", "-"]
    assert main(["zoo", "list", "--profile", "cpu", "--out", str(folder)]) == 2  # the smoke profile's zoo
    assert "not of cpu" in capsys.readouterr().err


def test_every_chapter_model_is_defined_once():
    """Every checkpoint a chapter trains is a zoo model, with options its method accepts."""
    from vos_lab.methods.registry import METHODS

    for key, spec in zoo.MODELS.items():
        assert key.startswith(f"ch0{spec.chapter}-")
        budget = spec.budget(get_profile("cpu"))
        METHODS[spec.method].check_options({k: v for k, v in budget.items() if k != "steps"})
    assert [k for k, m in zoo.MODELS.items() if m.in_profile(SMOKE) and m.batch_size] == ["ch05-ablation-batch-1"]


def test_interrupted_build_keeps_the_finished_models(tmp_path, synthetic_root, monkeypatch, capsys):
    """The manifest is written after each finished model: an interruption during the second model keeps the
    first, which the next build reuses."""
    train, calls = loop._train, []

    def interrupt_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return train(*args, **kwargs)

    monkeypatch.setattr(loop, "_train", interrupt_the_second)
    build = ["zoo", "build", "--profile", "smoke", "--models", f"{KEY},ch04-momentum", "--out", str(tmp_path / "zoo")]
    assert main(build) == 130
    assert list(json.loads((tmp_path / "zoo" / "manifest.json").read_text())["models"]) == [KEY]
    monkeypatch.setattr(loop, "_train", no_training)
    capsys.readouterr()
    assert main([*build[:5], KEY, *build[6:]]) == 0
    assert f"{KEY}: reused" in capsys.readouterr().out


@pytest.mark.parametrize("chapter, parameter", [("05_contrastive_transformation", "ABLATION_STEPS"),
                                                ("06_in_n_out_vit", "ABLATION_STEPS")])
def test_chapter_step_parameters_default_to_the_zoos_steps(chapter, parameter):
    """A chapter whose parameters are left as they are asks for the zoo's model (else it would train its own): its
    step parameters default to None, the zoo's budget."""
    import ast

    from vos_lab.paths import chapters_dir

    tree = ast.parse((chapters_dir() / "src" / f"{chapter}.py").read_text())
    defaults = {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body
                if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id.isupper() and isinstance(node.value, ast.Constant)}
    assert defaults[parameter] is None
