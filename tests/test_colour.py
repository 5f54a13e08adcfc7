"""Network inputs: the device-side Lab conversion (kornia) agrees with skimage's, the reference."""

import numpy as np
import pytest
import torch

from vos_lab.colour import lab_to_rgb, normalise, rgb_to_lab, rgb_to_lab_tensor, to_input, to_unit_rgb
from vos_lab.errors import VosLabError


def test_tensor_lab_matches_skimage():
    frames = np.random.default_rng(0).integers(0, 256, (2, 3, 17, 23, 3), dtype=np.uint8)
    reference = rgb_to_lab(frames).transpose(0, 1, 4, 2, 3)
    assert np.abs(rgb_to_lab_tensor(to_unit_rgb(frames)).numpy() - reference).max() < 1e-3


def test_inputs_per_space():
    frame = np.random.default_rng(1).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    lab = rgb_to_lab(frame)
    assert to_input(frame, "rgb").shape == (1, 3, 9, 11)
    gray = to_input(frame, "gray")
    assert gray.shape == (1, 1, 9, 11)
    assert np.allclose(gray[0, 0].numpy(), lab[..., 0] / 50 - 1, atol=1e-4)
    assert np.allclose(to_input(frame, "lab")[0, 1:].numpy(), lab[..., 1:].transpose(2, 0, 1) / 110, atol=1e-4)
    with pytest.raises(VosLabError, match="unknown colour space 'hsv'"):
        normalise(torch.zeros(3, 2, 2), "hsv")


def test_lab_round_trip():
    frame = np.random.default_rng(2).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    assert np.abs(lab_to_rgb(rgb_to_lab(frame)).astype(int) - frame).max() <= 1
