"""Notebook parameters: unknown names, wrong types and unknown profiles are clear errors naming them."""

from pathlib import Path

import pytest
from helpers import write_davis2017

from vos_lab.course.notebook import check_parameters, parameter_names, setup
from vos_lab.errors import VosLabError

DEFAULTS = {"PROFILE": None, "SEED": 0, "DATA_ROOT": None, "DEVICE": "cpu", "INTERACTIVE": False, "PROFILE_SET": {}}
PARAMETERS_CELL = ('PROFILE = None  # a comment\nSEED = 0\nDATA_ROOT = None\nDEVICE = "cpu"\nINTERACTIVE = False\n'
                   "PROFILE_SET = {}")


def test_valid_parameters_pass():
    assert check_parameters(dict(DEFAULTS, PROFILE="smoke"))["PROFILE"] == "smoke"


@pytest.mark.parametrize(("change", "message"), [
    ({"SEEED": 1}, "unknown parameter SEEED"),
    ({"SEED": "1"}, "parameter SEED must be int, got str"),
    ({"SEED": True}, "parameter SEED must be int, got bool"),
    ({"INTERACTIVE": "false"}, "parameter INTERACTIVE must be bool.*YAML"),
    ({"PROFILE": "laptop"}, "parameter PROFILE: unknown profile 'laptop'"),
    ({"DATA_ROOT": 3}, "parameter DATA_ROOT must be str or None"),
    ({"PROFILE_SET": "train_steps=4"}, "parameter PROFILE_SET must be dict"),
])
def test_wrong_parameters_name_the_parameter(change, message):
    with pytest.raises(VosLabError, match=message):
        check_parameters(dict(DEFAULTS, **change))


def test_names_come_from_literal_cells_of_the_history():
    history = ["", PARAMETERS_CELL, "# Parameters\nPROFILE = \"smoke\"\nEXTRA = 3\n",
               "from vos_lab.features import BASELINES\nX = 1"]
    names = parameter_names({"In": history, "BASELINES": ("rgb",), "X": 1})
    assert names == set(DEFAULTS) | {"EXTRA"}  # imports and mixed cells are not parameters


def test_extra_parameters_are_declared_with_their_type():
    assert check_parameters(dict(DEFAULTS, EPOCHS=3), EPOCHS=int)["EPOCHS"] == 3
    with pytest.raises(VosLabError, match="parameter EPOCHS must be int"):
        check_parameters(dict(DEFAULTS, EPOCHS=0.5), EPOCHS=int)


def test_setup_resolves_profile_and_finds_davis(tmp_path: Path):
    write_davis2017(tmp_path / "davis2017")
    for root in (tmp_path, tmp_path / "davis2017"):  # a data root, or the DAVIS folder itself
        session = setup(dict(DEFAULTS, PROFILE="smoke", DATA_ROOT=str(root)))
        assert session.profile.name == "smoke" and session.device.type == "cpu"
        assert session.davis == tmp_path / "davis2017"


def test_setup_data_root_without_davis_is_an_error(tmp_path: Path):
    with pytest.raises(VosLabError, match="parameter DATA_ROOT"):
        setup(dict(DEFAULTS, DATA_ROOT=str(tmp_path / "empty")))


def test_setup_applies_profile_overrides_checked():
    session = setup(dict(DEFAULTS, PROFILE="smoke", PROFILE_SET={"train_steps": 7, "batch_size": 3}))
    assert (session.profile.name, session.profile.train_steps, session.profile.batch_size) == ("smoke", 7, 3)
    with pytest.raises(VosLabError, match="unknown profile field"):
        setup(dict(DEFAULTS, PROFILE="smoke", PROFILE_SET={"steps": 7}))
    with pytest.raises(VosLabError, match="train_steps"):
        setup(dict(DEFAULTS, PROFILE="smoke", PROFILE_SET={"train_steps": -1}))


def test_every_chapter_scores_on_one_subset(tmp_path: Path):
    """`eval_subset` decides the real data of every chapter: the profile's sequences, each cut to its frames,
    for the sequences, their propagation and their scores alike."""
    from vos_lab.course.notebook import davis_sequences, eval_subset

    for name in ("a", "b"):
        write_davis2017(tmp_path, name=name, frames=8)
    (tmp_path / "ImageSets" / "2017" / "val.txt").write_text("a\nb\n")
    session = setup(dict(DEFAULTS, PROFILE="smoke", DATA_ROOT=str(tmp_path)))  # smoke: 1 sequence x 6 frames
    dataset, names = eval_subset(session)
    assert names == ["a"] and [len(s) for s in dataset.sequences(names)] == [6]
    assert [(s.name, len(s)) for s in davis_sequences(session)] == [("a", 6)]
    assert len(dataset.sequence("b").masks()[0]) == 6


def test_training_data_defaults_to_the_measured_videos(tmp_path: Path, monkeypatch):
    """TRAIN_DATA None: $VOS_LAB_DATA/videos, else ../shared/data/videos, else the embedded clips; smoke: embedded."""
    from vos_lab.course import notebook
    from vos_lab.profiles import get_profile

    cpu, smoke = get_profile("cpu"), get_profile("smoke")
    monkeypatch.delenv("VOS_LAB_DATA", raising=False)
    monkeypatch.setattr(notebook, "SHARED_VIDEOS", tmp_path / "shared" / "videos")
    assert notebook.training_sources(None, cpu) == ["embedded"]
    (tmp_path / "shared" / "videos").mkdir(parents=True)
    assert notebook.default_training_data(cpu) == "embedded", "an empty folder is no data"
    (tmp_path / "shared" / "videos" / "a.mp4").write_bytes(b"")
    assert notebook.training_sources(None, cpu) == [str(tmp_path / "shared" / "videos")]
    (tmp_path / "data" / "videos").mkdir(parents=True)
    (tmp_path / "data" / "videos" / "b.mp4").write_bytes(b"")
    monkeypatch.setenv("VOS_LAB_DATA", str(tmp_path / "data"))
    assert notebook.default_training_data(cpu) == str(tmp_path / "data" / "videos")
    assert notebook.training_sources(None, smoke) == ["embedded"]
    assert notebook.training_sources("embedded", cpu) == ["embedded"]


def test_score_table_is_computed_from_the_scores():
    from vos_lab.course.notebook import score_table

    table = score_table({"lab pixels": 0.6, "mast": 0.7, "corrflow": 0.55}, baseline="lab pixels")
    assert "mast * 0.700   +10.0 points" in table and "corrflow   0.550    -5.0 points" in table
    assert table.endswith("best in this run: mast")


def test_changes_table_is_markdown(capsys):
    from vos_lab.course.notebook import changes_table, show_markdown

    table = changes_table([("temperature", "0.5 at test", "0.1 | cosine", "unit features")])
    assert table.splitlines()[2] == "| temperature | 0.5 at test | 0.1 / cosine | unit features |"
    show_markdown(table)
    assert "| temperature |" in capsys.readouterr().out
