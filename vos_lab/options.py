"""Checked options: a value's type, range and choices, declared once and checked before any work starts.

Methods declare their `--option`s this way (`vos_lab.methods.base`), and profile overrides are checked the same
way (`vos_lab.profiles`), so a wrong value is one clear error naming it and what it accepts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vos_lab.errors import VosLabError

Value = bool | int | float | str | tuple


@dataclass(frozen=True)
class Option:
    """An option (of a method, or a profile field), with what it does (`help`, shown in errors). Its type is
    its default's: bool (True/False, or "true"/"false"), int, float (ints accepted), str, or a tuple of ints.
    Numbers (each one of a tuple) must lie in the given bounds, strings among `choices` when given, tuples
    have one of `lengths` when given."""

    default: Value
    help: str
    choices: tuple[str, ...] = ()
    at_least: float | None = None
    above: float | None = None
    at_most: float | None = None
    lengths: tuple[int, ...] = ()

    def accepts(self) -> str:
        """What the option accepts, in words (for error messages)."""
        kind = type(self.default)
        if kind is bool:
            return "True or False"
        if kind is str:
            return f"one of {', '.join(self.choices)}" if self.choices else "a string"
        bounds = [f"{sign} {limit:g}" for sign, limit in ((">=", self.at_least), (">", self.above),
                                                          ("<=", self.at_most)) if limit is not None]
        if kind is tuple:
            count = f"{min(self.lengths)} to {max(self.lengths)} " if self.lengths else ""
            return f"a tuple of {count}integers {' and '.join(bounds)}".rstrip()
        return f"{'an integer' if kind is int else 'a number'} {' and '.join(bounds)}".rstrip()

    def check(self, name: str, value: object) -> Value:
        """`value` as the option's type (a float for an int given to a float option, a tuple for a list);
        VosLabError naming `name`, what the option accepts and what it does when it does not accept the value."""
        converted = self._convert(value)
        if converted is None:
            raise VosLabError(f"{name}={value!r}: expected {self.accepts()} ({self.help})")
        return converted

    def _convert(self, value: object) -> Value | None:
        kind = type(self.default)
        if kind is bool:
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            return value if isinstance(value, bool) else None
        if kind is str:
            return value if isinstance(value, str) and (not self.choices or value in self.choices) else None
        if kind is tuple:
            if not isinstance(value, tuple | list) or not value or (self.lengths and len(value) not in self.lengths):
                return None
            return tuple(value) if all(self._number(v, int) for v in value) else None
        return kind(value) if self._number(value, kind) else None

    def _number(self, value: object, kind: type) -> bool:
        allowed = int if kind is int else int | float
        return (isinstance(value, allowed) and not isinstance(value, bool) and math.isfinite(value)
                and (self.at_least is None or value >= self.at_least) and (self.above is None or value > self.above)
                and (self.at_most is None or value <= self.at_most))
