"""Learning-rate schedules of the training loop.

- "constant": the base rate throughout (the papers' Adam set-ups).
- "cosine": the base rate decayed along half a cosine to zero at the last step (Loshchilov & Hutter,
  SGDR, ICLR 2017, without restarts). Short runs end on small steps instead of Adam's noise at a
  constant rate; the cpu profile uses it (measured in chapter 2).
"""

from __future__ import annotations

import math

from vos_lab.errors import VosLabError

SCHEDULES = ("constant", "cosine")


def check_schedule(name: str) -> None:
    if name not in SCHEDULES:
        raise VosLabError(f"unknown learning-rate schedule '{name}' (choose {', '.join(SCHEDULES)})")


def learning_rate(base: float, schedule: str, step: int, steps: int) -> float:
    """The rate for the update after `step` of `steps` updates done."""
    check_schedule(schedule)
    if schedule == "constant":
        return base
    return base * 0.5 * (1.0 + math.cos(math.pi * min(step, steps) / max(steps, 1)))
