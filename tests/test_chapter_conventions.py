"""Conventions every training chapter keeps (notebooks/TEMPLATE.md), checked on the notebook sources: one
default for the training data, and budgets from the profile, so that chapters sharing a checkpoint (chapter 4
loads chapter 3's MAST) ask for the same one instead of retraining it in turn."""

import re
from pathlib import Path

import pytest

SOURCES = sorted((Path(__file__).resolve().parents[1] / "notebooks" / "src").glob("[0-9][0-9]_*.py"))
TRAINING = [p for p in SOURCES if "TRAIN_DATA" in p.read_text()]


def test_the_training_chapters_are_found():
    assert {p.name[:2] for p in TRAINING} >= {"02", "03", "04", "05", "06"}


@pytest.mark.parametrize("source", TRAINING, ids=lambda p: p.name[:2])
def test_training_data_defaults_to_none_and_resolves_by_profile(source):
    text = source.read_text()
    assert re.search(r"^TRAIN_DATA = None  #", text, re.M), "TRAIN_DATA must default to None (default_training_data)"
    assert "TRAIN_DATA=(str, None)" in text
    assert "training_sources(TRAIN_DATA, P)" in text


@pytest.mark.parametrize("source", TRAINING, ids=lambda p: p.name[:2])
def test_no_training_minutes_are_typed_in_a_chapter(source):
    typed = re.findall(r"""(?:["']minutes["']\s*:|minutes=)\s*\d""", source.read_text())
    assert not typed, f"training minutes typed in {source.name}: {typed} (use the profile's train_minutes)"
