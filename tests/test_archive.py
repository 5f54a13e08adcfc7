"""Safe extraction: good zip/tar archives extract; slips, escaping links, devices and bombs are refused."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from vos_lab.data.archive import list_members, safe_extract
from vos_lab.errors import VosLabError


def make_zip(path: Path, entries: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    """A zip of symlinks (name -> target) first, then files (name -> bytes; names kept as given, even '../x';
    a name ending in '/' is a folder)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
        for name, data in entries.items():
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=zipfile.ZIP_DEFLATED)
    return path


def make_tar(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    """A tar.gz of files ((name, bytes)) and raw TarInfo entries (links, devices, ...)."""
    with tarfile.open(path, "w:gz") as archive:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                archive.addfile(member)
            else:
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                archive.addfile(info, io.BytesIO(member[1]))
    return path


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def folder(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_good_zip_extracts_with_top_folder_stripped(tmp_path):
    archive = make_zip(tmp_path / "a.zip", {"DAVIS/a.txt": b"A", "DAVIS/sub/b.txt": b"B"})
    dest = safe_extract(archive, tmp_path / "out", strip_top=True)
    assert (dest / "a.txt").read_bytes() == b"A" and (dest / "sub" / "b.txt").read_bytes() == b"B"
    assert leftovers(tmp_path) == ["a.zip", "out"]  # no temporary folder left behind


def test_strip_top_ignores_macos_metadata(tmp_path):
    archive = make_zip(tmp_path / "a.zip", {"DAVIS/a.txt": b"A", "__MACOSX/DAVIS/._a.txt": b"meta"})
    dest = safe_extract(archive, tmp_path / "out", strip_top=True)
    assert sorted(p.name for p in dest.iterdir()) == ["a.txt"]


def test_good_tar_with_internal_links_extracts(tmp_path):
    archive = make_tar(tmp_path / "a.tar.gz", [("d/a.txt", b"A"), link("d/l", "a.txt"),
                                                link("d/h", "d/a.txt", tarfile.LNKTYPE)])
    dest = safe_extract(archive, tmp_path / "out")
    assert (dest / "d" / "l").is_symlink() and (dest / "d" / "l").read_bytes() == b"A"
    assert (dest / "d" / "h").read_bytes() == b"A"
    assert [m.kind for m in list_members(archive)] == ["file", "symlink", "hardlink"]


@pytest.mark.parametrize("name, reason", [("../evil.txt", r"'\.\.'"), ("ok/../../evil.txt", r"'\.\.'"),
                                          ("/tmp/evil.txt", "absolute"), ("C:\\evil.txt", "absolute")])
def test_zip_slip_is_refused(tmp_path, name, reason):
    archive = make_zip(tmp_path / "a.zip", {"fine.txt": b"ok", name: b"evil"})
    assert name in zipfile.ZipFile(archive).namelist()  # the archive really holds the hostile name
    with pytest.raises(VosLabError, match=reason):
        safe_extract(archive, tmp_path / "out")
    assert leftovers(tmp_path) == ["a.zip"]


@pytest.mark.parametrize("links", [{"d/l": "a.txt"}, {"l": "../../etc/passwd"},
                                   {"x/y/l": "../..", "x/y/l/m": "../.."}])
def test_zip_symlinks_are_refused(tmp_path, links):
    archive = make_zip(tmp_path / "a.zip", {"d/a.txt": b"A"}, links=links)
    with pytest.raises(VosLabError, match="a symlink \\(symlinks in zip archives are not supported"):
        safe_extract(archive, tmp_path / "out")
    assert leftovers(tmp_path) == ["a.zip"]


def test_zip_chained_symlinks_cannot_place_a_folder_beside_the_target(tmp_path):
    # q -> r/.. and r -> . each stay inside lexically, but together q is the target's parent: q/X/ is X beside it
    archive = make_zip(tmp_path / "a.zip", {"q/X/": b""}, links={"q": "r/..", "r": "."})
    assert zipfile.ZipFile(archive).getinfo("q/X/").is_dir()
    with pytest.raises(VosLabError, match="refusing member 'q': a symlink"):
        safe_extract(archive, tmp_path / "out")
    assert leftovers(tmp_path) == ["a.zip"]


def test_tar_chained_symlinks_cannot_place_a_folder_beside_the_target(tmp_path):
    archive = make_tar(tmp_path / "a.tar", [link("q", "r/.."), link("r", "."), folder("q/X")])
    with pytest.raises(VosLabError, match="outside"):
        safe_extract(archive, tmp_path / "out")
    assert leftovers(tmp_path) == ["a.tar"]


@pytest.mark.parametrize("members, strip_top", [
    ([link("a", "b/.."), link("b", ".")], False),  # a was safe when written; b makes it the target's parent
    ([("D/f", b""), link("D/up", "../__MACOSX"), ("__MACOSX/x", b"")], True),  # outside once D/ is stripped
])
def test_tar_links_leading_outside_the_finished_tree_are_refused(tmp_path, members, strip_top):
    archive = make_tar(tmp_path / "a.tar", members)
    with pytest.raises(VosLabError, match="in the extracted tree it points outside the target"):
        safe_extract(archive, tmp_path / "out", strip_top=strip_top)
    assert leftovers(tmp_path) == ["a.tar"]


@pytest.mark.parametrize("member, reason", [
    (link("evil", "/etc"), "points outside"),
    (link("d/up", "../.."), "points outside"),
    (link("h", "../x", tarfile.LNKTYPE), "points outside"),
    (("a/../../b", b"x"), r"'\.\.'"),
    (("/abs", b"x"), "absolute"),
])
def test_tar_slip_and_escaping_links_are_refused(tmp_path, member, reason):
    archive = make_tar(tmp_path / "a.tar.gz", [("ok.txt", b"ok"), member])
    with pytest.raises(VosLabError, match=reason):
        safe_extract(archive, tmp_path / "out")
    assert leftovers(tmp_path) == ["a.tar.gz"]


def test_tar_symlink_chain_escaping_for_real_is_refused(tmp_path):
    archive = make_tar(tmp_path / "a.tar", [("x/y/f", b""), link("x/y/l", "../.."), link("x/y/l/m", "../..")])
    with pytest.raises(VosLabError, match="outside|refusing"):
        safe_extract(archive, tmp_path / "out")
    assert leftovers(tmp_path) == ["a.tar"]


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_tar_devices_and_fifos_are_refused(tmp_path, kind):
    device = tarfile.TarInfo("dev")
    device.type = kind
    archive = make_tar(tmp_path / "a.tar.gz", [device])
    with pytest.raises(VosLabError, match="special file"):
        safe_extract(archive, tmp_path / "out")


def test_archive_above_the_size_limit_is_refused_before_writing(tmp_path):
    archive = make_zip(tmp_path / "bomb.zip", {"zeros.bin": bytes(1_000_000)})
    assert archive.stat().st_size < 10_000  # compresses ~1000x: the declared size is what counts
    with pytest.raises(VosLabError, match="above the limit"):
        safe_extract(archive, tmp_path / "out", max_bytes=100_000)
    tar = make_tar(tmp_path / "bomb.tar.gz", [("zeros.bin", bytes(1_000_000))])
    with pytest.raises(VosLabError, match="above the limit"):
        safe_extract(tar, tmp_path / "out", max_bytes=100_000)
    assert leftovers(tmp_path) == ["bomb.tar.gz", "bomb.zip"]


def test_existing_destination_is_never_overwritten(tmp_path):
    archive = make_zip(tmp_path / "a.zip", {"a.txt": b"new"})
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.txt").write_bytes(b"prepared")
    with pytest.raises(VosLabError, match="already exists"):
        safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "a.txt").read_bytes() == b"prepared"


def test_failed_check_removes_only_its_own_temporary_folder(tmp_path):
    archive = make_zip(tmp_path / "a.zip", {"a.txt": b"A"})
    (tmp_path / "other").mkdir()

    def reject(folder: Path) -> None:
        assert (folder / "a.txt").is_file()
        raise VosLabError("layout rejected")

    with pytest.raises(VosLabError, match="layout rejected"):
        safe_extract(archive, tmp_path / "out", check=reject)
    assert leftovers(tmp_path) == ["a.zip", "other"]


def test_corrupt_and_unknown_archives_are_clear_errors(tmp_path):
    good = make_zip(tmp_path / "a.zip", {"a.txt": b"A" * 5000})
    (tmp_path / "cut.zip").write_bytes(good.read_bytes()[:-40])
    (tmp_path / "text.zip").write_text("not an archive")
    for name in ("cut.zip", "text.zip"):
        with pytest.raises(VosLabError, match="corrupt|not a zip or tar"):
            safe_extract(tmp_path / name, tmp_path / "out")
    with pytest.raises(VosLabError, match="archive not found"):
        safe_extract(tmp_path / "missing.zip", tmp_path / "out")
    assert not (tmp_path / "out").exists()
