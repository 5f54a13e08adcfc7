"""Method names -> classes, so a checkpoint's config can rebuild its method."""

from __future__ import annotations

from vos_lab.errors import VosLabError
from vos_lab.methods.base import Method
from vos_lab.methods.colourisation import ColourisationMethod
from vos_lab.methods.contrastcorr import ContrastCorrMethod
from vos_lab.methods.corrflow import CorrFlowMethod
from vos_lab.methods.ino import InoMethod
from vos_lab.methods.mast import MastMethod
from vos_lab.methods.momentum import MomentumMethod

METHODS: dict[str, type[Method]] = {cls.name: cls for cls in (ColourisationMethod, CorrFlowMethod, MastMethod,
                                                              MomentumMethod, ContrastCorrMethod, InoMethod)}
ALIASES = {"colorization": "colourisation"}  # other spellings accepted on the command line


def method_name(name: str) -> str:
    """The registered name of a method, given it or an alias."""
    return ALIASES.get(name, name)


def build_method(config: dict) -> Method:
    """Rebuild a method from its config dict (the "method" key names the class)."""
    config = dict(config)
    name = config.pop("method", None)
    if name not in METHODS:
        raise VosLabError(f"unknown method '{name}' (choose {', '.join(METHODS)})")
    return METHODS[name](**config)
