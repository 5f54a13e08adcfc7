"""Nothing stale is reused, nothing is lost, nothing is left behind: checkpoints are keyed by what they were
trained from, result caches by what they were computed from (`vos_lab.cache`), an interrupted run keeps its
steps, and the tests write in a temporary course folder, never into the repository."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vos_lab.data.clips import ClipSampler, synthetic_videos
from vos_lab.methods.colourisation import ColourisationMethod
from vos_lab.paths import HOME_VAR, SOURCE_TREE
from vos_lab.training import loop
from vos_lab.training.checkpoints import load_checkpoint, save_checkpoint
from vos_lab.training.loop import TrainConfig, load_or_train, train

SMALL = {"variant": "bottleneck", "width": 8, "multipliers": (1, 2, 2, 2), "embed_dim": 16}


@pytest.fixture(scope="module")
def videos():
    return synthetic_videos(2, 10, 96, 128, seed=0)


def _method() -> ColourisationMethod:
    torch.manual_seed(123)
    return ColourisationMethod(**SMALL)


def _sampler(videos) -> ClipSampler:
    return ClipSampler(videos, 2, (1, 2), crop=64, seed=0)


def _interrupt_batch(monkeypatch, at: int, error: type[BaseException]) -> None:
    """Make the clip loader raise `error` when it is asked for the batch of step `at` (counted from 0 in this run)."""
    batches = loop.clip_batches

    def interrupted(*args, **kwargs):
        for index, batch in enumerate(batches(*args, **kwargs)):
            if index == at:
                raise error("interrupted")
            yield batch

    monkeypatch.setattr(loop, "clip_batches", interrupted)


# ------------------------------------------------------------------------------ checkpoints: keyed
@pytest.mark.parametrize("change", [{"data": "other clips"}, {"seed": 1}, {"batch_size": 1}])
def test_a_checkpoint_trained_otherwise_is_retrained_and_says_why(videos, tmp_path, capsys, change):
    out, first = tmp_path / "c.pt", {"steps": 2, "batch_size": 2, "data": "clips"}
    load_or_train(_method(), lambda: _sampler(videos), out, TrainConfig(**first), progress=False)
    capsys.readouterr()
    asked = TrainConfig(**(first | change))
    trained = []
    result = load_or_train(_method(), lambda: trained.append(1) or _sampler(videos), out, asked, progress=False)
    (name, value), = change.items()
    assert trained, f"a checkpoint of another {name} was loaded"
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and "trained otherwise" in lines[0] and f"{name}: {first.get(name, 0)!r} != {value!r}" \
        in lines[0], lines
    assert load_checkpoint(out)[name] == value and result.step == 2


def test_steps_resume_when_fewer_and_retrain_when_more(videos, tmp_path, capsys):
    out = tmp_path / "c.pt"
    two = load_or_train(_method(), lambda: _sampler(videos), out, TrainConfig(2, 2), progress=False)
    four = load_or_train(_method(), lambda: _sampler(videos), out, TrainConfig(4, 2), progress=False)
    assert [h["step"] for h in four.history] == [1, 2, 3, 4], "resumed from step 2"
    assert [h["loss"] for h in four.history[:2]] == [h["loss"] for h in two.history]
    assert capsys.readouterr().out == ""
    again = load_or_train(_method(), lambda: _sampler(videos), out, TrainConfig(2, 2), progress=False)
    assert "steps: 4 done, 2 asked" in capsys.readouterr().out
    assert again.step == 2 and load_checkpoint(out)["step"] == 2
    assert [h["loss"] for h in again.history] == pytest.approx([h["loss"] for h in two.history])


def test_the_old_checkpoint_stays_until_the_new_one_is_saved(videos, tmp_path, monkeypatch):
    out = tmp_path / "c.pt"
    load_or_train(_method(), lambda: _sampler(videos), out, TrainConfig(2, 2, data="clips"), progress=False)
    _interrupt_batch(monkeypatch, at=0, error=KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        load_or_train(_method(), lambda: _sampler(videos), out, TrainConfig(2, 2, data="other"), progress=False)
    assert (load_checkpoint(out)["data"], load_checkpoint(out)["step"]) == ("clips", 2)


# ------------------------------------------------------------------------------ interruptions: nothing lost
def _wrap_loss(monkeypatch, at: int, error: type[BaseException]) -> None:
    """Make the loss raise `error` at step `at`, after its forward pass (batch-norm statistics updated)."""
    loss = ColourisationMethod.loss

    def interrupted(method, batch, step):
        result = loss(method, batch, step)
        if step == at:
            raise error("interrupted")
        return result

    monkeypatch.setattr(ColourisationMethod, "loss", interrupted)


@pytest.mark.parametrize("where", ["batch", "loss"])
@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_an_interrupted_run_keeps_its_steps_and_resumes_exactly(videos, tmp_path, monkeypatch, where, error):
    config = TrainConfig(steps=6, batch_size=2)  # the default interval: no periodic save in so short a run
    assert config.checkpoint_seconds == 60.0
    straight = train(_method(), _sampler(videos), tmp_path / "straight.pt", config, progress=False)
    out = tmp_path / "resumed.pt"
    with monkeypatch.context() as patch:
        (_interrupt_batch if where == "batch" else _wrap_loss)(patch, 3, error)
        with pytest.raises(error):
            train(_method(), _sampler(videos), out, config, progress=False)
    assert load_checkpoint(out)["step"] == 3
    resumed = train(_method(), _sampler(videos), out, config, progress=False)
    assert [h["step"] for h in resumed.history] == list(range(1, 7))
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in straight.history], abs=1e-6)
    for (name, a), b in zip(straight.method.state_dict().items(), resumed.method.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name


def test_an_update_cut_in_the_middle_is_never_saved(videos, tmp_path, monkeypatch):
    out, update, calls = tmp_path / "c.pt", torch.optim.Adam.step, []

    def cut(optimizer, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the weights may be half updated: no consistent state to save
        return update(optimizer, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", cut)
    with pytest.raises(KeyboardInterrupt):
        train(_method(), _sampler(videos), out, TrainConfig(6, 2), progress=False)
    assert not out.exists()


def test_checkpoint_file_and_folder_are_flushed_to_disk_around_the_rename(tmp_path, monkeypatch):
    events, fsync, replace = [], os.fsync, os.replace

    def record_fsync(fd):
        events.append(("fsync", os.fstat(fd).st_ino))
        return fsync(fd)

    def record_replace(source, target):
        events.append(("replace", Path(target)))
        return replace(source, target)

    monkeypatch.setattr(os, "fsync", record_fsync)
    monkeypatch.setattr(os, "replace", record_replace)
    out = tmp_path / "ckpt" / "c.pt"
    save_checkpoint(out, {"step": 1})
    file, folder = out.stat().st_ino, out.parent.stat().st_ino
    assert events == [("fsync", file), ("replace", out), ("fsync", folder)], events


# ------------------------------------------------------------------------------ result caches: keyed
def test_a_cache_is_reused_only_when_its_manifest_holds_the_key(tmp_path):
    from vos_lab.cache import MANIFEST, reuse_or_compute

    folder, runs, said = tmp_path / "results", [], []

    def compute(tag="a"):
        runs.append(tag)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{tag}.txt").write_text(tag)

    key = {"checkpoint": "0123", "protocol": {"radius": 12, "long_term": (0,)}, "frames": ["00000", "00001"]}
    assert reuse_or_compute(folder, key, compute, said.append) is False
    assert reuse_or_compute(folder, key, compute, said.append) is True, "a tuple reads back as a list"
    assert runs == ["a"] and said == [] and (folder / MANIFEST).is_file()
    other = key | {"checkpoint": "4567"}
    assert reuse_or_compute(folder, other, lambda: compute("b"), said.append) is False
    assert runs == ["a", "b"] and sorted(p.name for p in folder.iterdir()) == ["b.txt", MANIFEST]
    assert len(said) == 1 and 'checkpoint: "0123" != "4567"' in said[0], said
    reuse_or_compute(folder, other | {"protocol": {"radius": 4, "long_term": (0,)}}, compute, said.append)
    assert said[1].endswith("(protocol.radius: 12 != 4)"), said


def test_an_interrupted_computation_is_not_taken_for_a_complete_one(tmp_path):
    from vos_lab.cache import reuse_or_compute

    folder, said = tmp_path / "results", []

    def fails():
        folder.mkdir()
        (folder / "half.png").write_bytes(b"")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        reuse_or_compute(folder, {"k": 1}, fails, said.append)
    assert reuse_or_compute(folder, {"k": 1}, lambda: folder.mkdir(), said.append) is False
    assert "no manifest" in said[0] and not (folder / "half.png").exists()


def test_cached_predictions_follow_the_checkpoint_protocol_and_frames(synthetic_root, tmp_path, monkeypatch):
    from vos_lab.course import notebook
    from vos_lab.data.davis import DavisDataset
    from vos_lab.features import build_encoder
    from vos_lab.propagation import PropagationConfig

    root, out, propagated = tmp_path / "davis", tmp_path / "runs", []
    shutil.copytree(synthetic_root, root)
    propagate = notebook.propagate_dataset
    monkeypatch.setattr(notebook, "propagate_dataset", lambda *args: propagated.extend(args[4]) or propagate(*args))

    def predict(key, config=None, names=None):
        propagated.clear()
        dataset = DavisDataset(root)
        notebook.cached_predictions(build_encoder("lab"), dataset, out, config or PropagationConfig(),
                                    names or dataset.names, key, False)
        return sorted(propagated)

    first, second = DavisDataset(root).names
    model = {"sha256": "a", "step": 2}
    assert predict(model) == [first, second]
    assert predict(model) == []
    assert predict(model, names=[second]) == [], "each sequence is cached on its own"
    assert predict({"sha256": "b", "step": 2}, names=[second]) == [second], "a retrained model is scored anew"
    assert predict(model, PropagationConfig(topk=3)) == [first, second], "so is another protocol"
    assert predict(model, PropagationConfig(topk=3)) == []
    for folder in ("JPEGImages", "Annotations"):
        sorted((root / folder / "480p" / first).iterdir())[-1].unlink()
    assert predict(model, PropagationConfig(topk=3)) == [first], "and other frames"
    frames = len(DavisDataset(root).sequence(first))
    assert len(list((out / first).glob("*.png"))) == frames, "the stale masks are gone"


def test_checkpoint_key_changes_with_the_checkpoint(videos, tmp_path):
    from vos_lab.course.notebook import checkpoint_key

    out = tmp_path / "c.pt"
    train(_method(), _sampler(videos), out, TrainConfig(1, 2), progress=False)
    first = checkpoint_key(out)
    assert checkpoint_key(out) == first and first["step"] == 1
    train(_method(), _sampler(videos), out, TrainConfig(2, 2), progress=False)
    assert checkpoint_key(out)["sha256"] != first["sha256"] and checkpoint_key(out)["step"] == 2


# ------------------------------------------------------------------------------ leftovers: none in the repo
def _repository_outputs() -> set[Path]:
    return {p for name in ("checkpoints", "runs") for p in (SOURCE_TREE / name).rglob("*")}


def test_the_suite_and_its_kernels_write_in_a_temporary_course_folder():
    home = Path(os.environ.get(HOME_VAR, SOURCE_TREE))
    assert not home.resolve().is_relative_to(SOURCE_TREE), "the tests' course folder is the repository"
    before = _repository_outputs()
    script = ("from vos_lab.course.notebook import HOME; from vos_lab.profiles import get_profile; "
              "from vos_lab.training.run import train_from_profile; "
              "train_from_profile('colourisation', get_profile('smoke'), HOME / 'checkpoints' / 'writer.pt', "
              "steps=1, device='cpu', progress=False, variant='bottleneck'); print(HOME)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          cwd=SOURCE_TREE, env=os.environ | {"PYTHONPATH": str(SOURCE_TREE)})
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()) == home.resolve(), "a kernel inherits the course folder"
    assert (home / "checkpoints" / "writer.pt").is_file()
    assert _repository_outputs() == before


def test_shared_data_and_relative_training_data_are_found_next_to_the_source_tree(tmp_path, monkeypatch):
    from vos_lab.course import notebook

    assert notebook.SHARED_DAVIS == SOURCE_TREE.parent / "shared" / "data" / "davis2016-dev"
    if (notebook.SHARED_DAVIS / "ImageSets").is_dir():
        assert notebook.find_davis() == notebook.SHARED_DAVIS
    home, source = tmp_path / "home", tmp_path / "source"
    for folder in (home / "mine", source / "shared", home / "both", source / "both"):
        folder.mkdir(parents=True)
    monkeypatch.setattr(notebook, "HOME", home)
    monkeypatch.setattr(notebook, "SOURCE_TREE", source)
    assert notebook.training_sources("mine, shared, both, nowhere, embedded") == [
        str(home / "mine"), str(source / "shared"), str(home / "both"), str(home / "nowhere"), "embedded"]
