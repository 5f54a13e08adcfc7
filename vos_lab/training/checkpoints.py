"""Checkpoints: written atomically and durably, stamped with what they were trained from (method config,
data, seed, batch size, steps), so that one trained otherwise is recognised.

A checkpoint is one `torch.save` file holding the method config, the weights, the optimiser and sampler
states, the step, the training seconds so far, the loss history and the training data, seed and batch size,
so an interrupted run resumes exactly where it stopped. All of it is tensors and plain values (numbers,
strings, tuples, lists, dicts), so checkpoints load with `torch.load(weights_only=True)`: a file that holds
any other Python object is refused, since unpickling it could run code (`propagate --features` loads files
from anywhere).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from vos_lab.errors import VosLabError
from vos_lab.methods.registry import build_method
from vos_lab.paths import atomic_path

FORMAT = "vos_lab-checkpoint-1"


def save_checkpoint(path: Path, state: dict) -> None:
    """Write through a temporary file in the same folder, flushed to disk, then rename: a crash or power cut
    never leaves half a file, and never loses the previous checkpoint."""
    with atomic_path(path, durable=True) as tmp:
        torch.save({"format": FORMAT, **state}, tmp)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint with `weights_only=True`; a missing, corrupt or foreign file, or one holding objects
    other than tensors and plain values, raises VosLabError without running any of its code."""
    path = Path(path)
    if not path.is_file():
        raise VosLabError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:  # what weights_only raises, for a foreign object or a damaged file
        if "global" in str(error).lower() or "unsupported class" in str(error).lower():
            raise VosLabError(f"{path}: refused, it holds Python objects other than tensors and plain values "
                              "(loading them could run code)") from None
        raise VosLabError(f"{path}: not a readable checkpoint (UnpicklingError)") from None
    except Exception as error:  # torch raises many types for a damaged file
        raise VosLabError(f"{path}: not a readable checkpoint ({type(error).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise VosLabError(f"{path}: not a vos_lab checkpoint")
    return state


def checkpoint_mismatch(state: dict, config: dict, training: dict, steps: int) -> str | None:
    """Why the checkpoint `state` may neither be loaded nor resumed for training `config` (the method's) with
    `training` (data, seed, batch size) for `steps` steps: what differs, or None when it may (fewer steps
    than asked are resumed)."""
    found = state.get("config", {})
    differences = [f"{key}: {found.get(key)!r} != {config.get(key)!r}"
                   for key in sorted(set(found) | set(config)) if found.get(key) != config.get(key)]
    differences += [f"{key}: {repr(state[key]) if key in state else 'unrecorded'} != {value!r}"
                    for key, value in training.items() if state.get(key) != value]
    if state.get("step", 0) > steps:
        differences.append(f"steps: {state['step']} done, {steps} asked")
    return "; ".join(differences) or None


def load_method(path: Path, map_location: str | torch.device = "cpu"):
    """The trained method of a checkpoint, in eval mode."""
    state = load_checkpoint(path, map_location)
    method = build_method(state["config"])
    method.load_state_dict(state["model"])
    return method.eval()


def load_encoder(path: Path, block: int | None = None):
    """The test-time FrameEncoder of a checkpoint (used by `propagate --features CKPT`); `block` chooses the
    transformer block of a ViT (methods with a `block` option, INO), an error for the others."""
    method = load_method(path)
    if block is None:
        return method.frame_encoder()
    if "block" not in method.config:
        raise VosLabError(f"--block {block}: {path} holds a {method.name} model, a CNN; --block chooses a "
                          "transformer block of a ViT checkpoint (ino)")
    return method.frame_encoder(block=block)
