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
