"""Safe extraction of zip and tar archives (the zip-slip / tar-slip defences, CVE-2007-4559 style).

Every member is checked before anything is written: absolute paths, `..` components, links whose target
leaves the destination, device files and FIFOs are refused, and so is an archive whose total
uncompressed size exceeds a limit. Zip archives may not contain symlinks at all (datasets ship none, and
chained links such as `q -> r/..`, `r -> .` make later members land outside the target); tar symlinks
are checked while writing (the `data` extraction filter of PEP 706) and once more in the finished tree,
where each must still resolve inside it. Extraction goes to a temporary folder beside the destination,
which is renamed into place only when everything (and an optional layout check) succeeded; a failed run
removes its temporary folder and never touches what was there before.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vos_lab.errors import VosLabError
from vos_lab.paths import fs_error, writable_dir

DEFAULT_MAX_BYTES = 16 * 2**30
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Member:
    """One archive entry after validation: normalised relative name, size, kind, link target."""

    name: str
    size: int
    kind: str  # "file", "dir", "symlink" or "hardlink"
    target: str | None = None


def _clean_name(archive: Path, raw: str) -> str | None:
    """The member's relative POSIX path, None for the archive root itself; refuses unsafe names."""
    name = raw.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise VosLabError(f"{archive}: refusing member '{raw}': absolute path")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise VosLabError(f"{archive}: refusing member '{raw}': '..' in its path")
    return "/".join(parts) or None


def _check_link(archive: Path, name: str, target: str, hard: bool) -> None:
    """Refuse a link whose target is absolute or resolves (lexically) outside the destination."""
    target = target.replace("\\", "/")
    base = "" if hard else posixpath.dirname(name)  # tar hard links are relative to the archive root
    resolved = posixpath.normpath(posixpath.join(base, target))
    if target.startswith("/") or re.match(r"^[A-Za-z]:", target) or resolved.split("/")[0] == "..":
        raise VosLabError(f"{archive}: refusing link '{name}' -> '{target}': it points outside the target")


def _zip_members(archive: Path, handle: zipfile.ZipFile) -> list[tuple[zipfile.ZipInfo, Member]]:
    pairs = []
    for info in handle.infolist():
        name = _clean_name(archive, info.filename)
        if name is None:
            continue
        mode = info.external_attr >> 16
        if info.is_dir():
            member = Member(name, 0, "dir")
        elif stat.S_ISLNK(mode):
            raise VosLabError(f"{archive}: refusing member '{name}': a symlink (symlinks in zip archives are "
                              "not supported, datasets do not need them; unpack it by hand if you trust it)")
        elif stat.S_IFMT(mode) not in (0, stat.S_IFREG):
            raise VosLabError(f"{archive}: refusing member '{name}': special file (device, FIFO or socket)")
        else:
            member = Member(name, info.file_size, "file")
        pairs.append((info, member))
    return pairs


def _tar_members(archive: Path, handle: tarfile.TarFile) -> list[tuple[tarfile.TarInfo, Member]]:
    pairs = []
    for info in handle.getmembers():
        name = _clean_name(archive, info.name)
        if name is None:
            continue
        if info.isdir():
            member = Member(name, 0, "dir")
        elif info.issym() or info.islnk():
            _check_link(archive, name, info.linkname, hard=info.islnk())
            member = Member(name, 0, "symlink" if info.issym() else "hardlink", info.linkname)
        elif info.isfile():
            member = Member(name, info.size, "file")
        else:
            raise VosLabError(f"{archive}: refusing member '{name}': special file (device, FIFO or socket)")
        pairs.append((info, member))
    return pairs


def _open(archive: Path) -> zipfile.ZipFile | tarfile.TarFile:
    if not archive.is_file():
        raise VosLabError(f"{archive}: archive not found")
    try:
        if zipfile.is_zipfile(archive):
            return zipfile.ZipFile(archive)
        if tarfile.is_tarfile(archive):
            return tarfile.open(archive, "r:*")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise VosLabError(f"{archive}: corrupt archive ({error})") from None
    raise VosLabError(f"{archive}: not a zip or tar archive")


def _members(archive: Path, handle: zipfile.ZipFile | tarfile.TarFile) -> list[tuple[object, Member]]:
    try:
        if isinstance(handle, zipfile.ZipFile):
            return _zip_members(archive, handle)
        return _tar_members(archive, handle)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as error:
        raise VosLabError(f"{archive}: corrupt archive ({error})") from None


def list_members(archive: str | Path) -> list[Member]:
    """Validated members of a zip or tar archive (VosLabError on the first unsafe one)."""
    archive = Path(archive)
    with _open(archive) as handle:
        return [member for _, member in _members(archive, handle)]


def _links_stay_inside(archive: Path, top: Path) -> None:
    """Refuse a finished tree with a symlink that resolves outside `top`, the folder that becomes the target.

    Each link was safe when it was written, but a later link can change where an earlier one leads
    (`a -> b/..`, then `b -> .`), and stripping the top folder makes `../sibling` point outside.
    """
    root = os.path.realpath(top)
    for folder, dirs, files in os.walk(top):
        for name in dirs + files:
            path = os.path.join(folder, name)
            if os.path.islink(path) and os.path.commonpath([root, os.path.realpath(path)]) != root:
                member = os.path.relpath(path, top)
                raise VosLabError(f"{archive}: refusing link '{member}' -> '{os.readlink(path)}': "
                                  "in the extracted tree it points outside the target")


def _extract_zip(archive: Path, handle: zipfile.ZipFile, pairs: list, tmp: Path) -> None:
    """Write the files and folders of a zip (no links: cleaned names cannot leave `tmp`)."""
    for info, member in pairs:
        target = tmp / member.name
        if member.kind == "dir":
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        written = 0
        with handle.open(info) as source, open(target, "xb") as out:
            while chunk := source.read(_CHUNK):
                written += len(chunk)
                if written > member.size:
                    raise VosLabError(f"{archive}: member '{member.name}' is larger than its header says")
                out.write(chunk)


def _extract_tar(archive: Path, handle: tarfile.TarFile, pairs: list, tmp: Path) -> None:
    if not hasattr(tarfile, "data_filter"):
        raise VosLabError("safe tar extraction needs Python >= 3.10.12 / 3.11.4 (tarfile filters, PEP 706)")
    try:
        handle.extractall(tmp, members=[info for info, _ in pairs], filter="data")
    except tarfile.FilterError as error:
        raise VosLabError(f"{archive}: refusing member: {error}") from None


def safe_extract(archive: str | Path, dest: str | Path, *, max_bytes: int | None = DEFAULT_MAX_BYTES,
                 strip_top: bool = False, check: Callable[[Path], None] | None = None) -> Path:
    """Extract `archive` (zip, tar, tar.gz/bz2/xz) into the new folder `dest`, all or nothing.

    `max_bytes` caps the total uncompressed size (None: no cap). With `strip_top`, an archive whose members
    all sit in one top folder (e.g. `DAVIS/`) has that folder's content placed at `dest`. `check(folder)`
    runs on the extracted tree before it is moved into place and may raise VosLabError to reject it.
    `dest` must not exist: extraction never overwrites or merges.
    """
    archive, dest = Path(archive).expanduser(), Path(dest).expanduser()
    if dest.exists() or dest.is_symlink():
        raise VosLabError(f"{dest}: already exists; extraction never overwrites (move it away first)")
    with _open(archive) as handle:
        pairs = _members(archive, handle)
        total = sum(member.size for _, member in pairs)
        if max_bytes is not None and total > max_bytes:
            raise VosLabError(f"{archive}: refusing to extract {total / 1e9:.2f} GB, "
                              f"above the limit of {max_bytes / 1e9:.2f} GB")
        parent = writable_dir(dest.parent)
        free = shutil.disk_usage(parent).free
        if total > free:
            raise VosLabError(f"{parent}: not enough disk space ({total / 1e9:.2f} GB needed, "
                              f"{free / 1e9:.2f} GB free)")
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=parent))
        try:
            if isinstance(handle, zipfile.ZipFile):
                _extract_zip(archive, handle, pairs, tmp)
            else:
                _extract_tar(archive, handle, pairs, tmp)
            # macOS zips add __MACOSX/ and ._* metadata beside the real top folder: not content
            entries = [e for e in tmp.iterdir() if e.name != "__MACOSX" and not e.name.startswith("._")]
            single = len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink()
            top = entries[0] if strip_top and single else tmp
            _links_stay_inside(archive, top)
            if check is not None:
                check(top)
            os.rename(top, dest)
        except OSError as error:
            raise fs_error(dest, error) from None
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as error:
            raise VosLabError(f"{archive}: corrupt archive ({error})") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest
