"""Result caches that know what they were computed from.

A cached result is a folder with a manifest (`manifest.json`, written atomically once the results are
complete) holding the key they were computed from: e.g. the checkpoint's content hash, the protocol and the
sequences. `reuse_or_compute` reuses the folder only when its manifest holds the same key; otherwise it says
why in one line, empties the folder and computes it again. An interrupted computation leaves no manifest,
so it is never taken for a complete one.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from vos_lab.paths import atomic_path

MANIFEST = "manifest.json"


def _plain(key: dict) -> dict:
    """The key as it reads back from JSON (tuples become lists), so that it compares with a manifest's."""
    return json.loads(json.dumps(key, sort_keys=True))


def _leaves(key: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}: the values to compare, named by their path."""
    leaves = {}
    for name, value in key.items():
        if isinstance(value, dict) and value:
            leaves |= _leaves(value, f"{prefix}{name}.")
        else:
            leaves[f"{prefix}{name}"] = value
    return leaves


def _short(value: object) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 24 else text[:21] + "..."


def stale_reason(folder: str | Path, key: dict) -> str | None:
    """Why `folder` cannot be reused for `key` (None: its manifest matches, the results are complete)."""
    manifest = Path(folder) / MANIFEST
    if not manifest.is_file():
        return "no manifest: not computed, or interrupted"
    try:
        found = json.loads(manifest.read_text()).get("key")
    except (OSError, ValueError, AttributeError):
        return "unreadable manifest"
    if not isinstance(found, dict):
        return "manifest without a key"
    found, wanted = _leaves(found), _leaves(_plain(key))
    differences = [f"{name}: {_short(found.get(name))} != {_short(wanted.get(name))}"
                   for name in sorted(set(found) | set(wanted)) if found.get(name) != wanted.get(name)]
    return "; ".join(differences) or None


def reuse_or_compute(folder: str | Path, key: dict, compute: Callable[[], object],
                     say: Callable[[str], object] = print) -> bool:
    """Reuse `folder` if its manifest holds `key` (True); else empty it, run `compute()` (which writes the
    results into it) and write the manifest (False). Recomputing results that were there is said in one line."""
    folder = Path(folder)
    reason = stale_reason(folder, key)
    if reason is None:
        return True
    if folder.is_dir() and any(folder.iterdir()):
        say(f"{folder}: recomputing cached results ({reason})")
        shutil.rmtree(folder)
    compute()
    with atomic_path(folder / MANIFEST) as tmp:
        tmp.write_text(json.dumps({"key": _plain(key)}, indent=1, sort_keys=True) + "\n")
    return False
