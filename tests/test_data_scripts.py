"""The data scripts end to end (local archives served from 127.0.0.1), DAVIS layout checks, data paths."""

from __future__ import annotations

import functools
import hashlib
import runpy
import subprocess
import sys
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from vos_lab import paths
from vos_lab.data import catalogue
from vos_lab.data.catalogue import RemoteArchive, verify_davis_layout
from vos_lab.errors import VosLabError

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "data_scripts"
SHARED = next((p / "shared" / "data" for p in (ROOT.parent, ROOT) if (p / "shared" / "data").is_dir()), None)
get_davis = runpy.run_path(str(SCRIPTS / "get_davis.py"))["main"]
videos_to_frames = runpy.run_path(str(SCRIPTS / "videos_to_frames.py"))["main"]


def make_davis(root: Path, year: int = 2017, sequences: dict | None = None, masks_only_first: bool = False,
               drop: str | None = None) -> Path:
    """A tiny DAVIS folder: sequences {name: (split, frames)}; `drop` = a mask file to leave out."""
    sequences = sequences or {"seqa": ("train", 3), "seqb": ("val", 2)}
    lists: dict[str, list[str]] = {}
    for name, (split, count) in sequences.items():
        for index in range(count):
            frame = root / "JPEGImages" / "480p" / name / f"{index:05d}.jpg"
            mask = root / "Annotations" / "480p" / name / f"{index:05d}.png"
            frame.parent.mkdir(parents=True, exist_ok=True)
            mask.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 6), (index * 40, 0, 0)).save(frame)
            if (index == 0 or not masks_only_first) and f"{name}/{mask.name}" != drop:
                Image.new("L", (8, 6), 255 if year == 2016 else 1).save(mask)
            if year == 2016:
                lists.setdefault(split, []).append(f"/JPEGImages/480p/{name}/{frame.name} "
                                                   f"/Annotations/480p/{name}/{mask.name}")
        if year == 2017:
            lists.setdefault(split, []).append(name)
    list_dir = root / "ImageSets" / ("2017" if year == 2017 else "480p")
    list_dir.mkdir(parents=True, exist_ok=True)
    for split, lines in lists.items():
        (list_dir / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def zip_folder(folder: Path, archive: Path, top: str = "DAVIS", extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(archive, "w") as handle:
        for path in sorted(folder.rglob("*")):
            handle.write(path, f"{top}/{path.relative_to(folder).as_posix()}")
        for name, data in (extra or {}).items():
            handle.writestr(zipfile.ZipInfo(name), data)
    return archive


@pytest.fixture
def served(tmp_path, monkeypatch):
    """Serve tmp_path/www on 127.0.0.1; `publish(archive, **catalogue fields)` registers it as 2017-trainval."""
    www = tmp_path / "www"
    www.mkdir()
    requests: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server API)
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(www)))
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def publish(archive: Path, **fields) -> None:
        data = archive.read_bytes()
        (www / archive.name).write_bytes(data)
        spec = dict(key="2017-trainval", url=f"http://127.0.0.1:{httpd.server_address[1]}/{archive.name}",
                    target="davis2017", approx_size="1 kB", description="test DAVIS", size=len(data),
                    sha256=hashlib.sha256(data).hexdigest())
        monkeypatch.setitem(catalogue.CATALOGUE, "2017-trainval", RemoteArchive(**{**spec, **fields}))

    publish.requests = requests
    yield publish
    httpd.shutdown()
    httpd.server_close()


def test_get_davis_downloads_verifies_and_skips_a_rerun(served, tmp_path, capsys):
    served(zip_folder(make_davis(tmp_path / "src"), tmp_path / "DAVIS-test.zip"))
    root = tmp_path / "data"
    assert get_davis(["--root", str(root), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "2 sequences (train 1, val 1), 5 frames, 5 masks: OK" in out
    assert (root / "davis2017" / "JPEGImages" / "480p" / "seqa" / "00002.jpg").is_file()
    assert not (root / "downloads" / "DAVIS-test.zip").exists()  # archive removed after success
    assert get_davis(["--root", str(root), "--no-progress"]) == 0
    assert "already prepared, skipped" in capsys.readouterr().out
    assert len(served.requests) == 1  # the re-run downloaded nothing


def test_get_davis_checksum_mismatch_deletes_the_download(served, tmp_path, capsys):
    served(zip_folder(make_davis(tmp_path / "src"), tmp_path / "DAVIS-test.zip"), sha256="0" * 64)
    assert get_davis(["--root", str(tmp_path / "data"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "sha256 is" in err and "deleted" in err and "\n" not in err
    assert list((tmp_path / "data" / "downloads").iterdir()) == []
    assert not (tmp_path / "data" / "davis2017").exists()
    assert get_davis(["--root", str(tmp_path / "data"), "--no-progress", "--no-checksum"]) == 0
    assert "not checked against a published value" in capsys.readouterr().out  # prints the sha256 to pin


def test_every_catalogue_entry_has_a_checksum_or_is_marked_unpinned():
    for key, spec in catalogue.CATALOGUE.items():
        assert spec.sha256 or spec.md5 or spec.unpinned, key


def test_get_davis_refuses_an_archive_without_a_pinned_checksum(served, tmp_path, capsys):
    archive = zip_folder(make_davis(tmp_path / "src"), tmp_path / "DAVIS-test.zip")
    served(archive, size=None, sha256=None)
    assert get_davis(["--root", str(tmp_path / "data"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "no checksum is pinned" in err and "--sha256 HEX" in err and served.requests == []
    assert get_davis(["--root", str(tmp_path / "data"), "--sha256", "abc"]) == 2
    assert "64 hex digits" in capsys.readouterr().err
    assert get_davis(["2017-trainval", "2016", "--root", str(tmp_path / "data"), "--sha256", "0" * 64]) == 2
    assert "one dataset" in capsys.readouterr().err and served.requests == []
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert get_davis(["--root", str(tmp_path / "data"), "--no-progress", "--sha256", digest]) == 0
    assert "5 frames, 5 masks: OK" in capsys.readouterr().out


def test_get_davis_bad_layout_installs_nothing_and_keeps_the_archive(served, tmp_path, capsys):
    served(zip_folder(make_davis(tmp_path / "src", drop="seqa/00001.png"), tmp_path / "DAVIS-test.zip"))
    assert get_davis(["--root", str(tmp_path / "data"), "--no-progress"]) == 2
    assert "seqa: 3 frames but 2 masks" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["downloads"]
    assert (tmp_path / "data" / "downloads" / "DAVIS-test.zip").is_file()


def test_get_davis_refuses_a_zip_slip_archive(served, tmp_path, capsys):
    archive = zip_folder(make_davis(tmp_path / "src"), tmp_path / "DAVIS-test.zip",
                         extra={"DAVIS/../../escaped.txt": b"evil"})
    served(archive)
    assert get_davis(["--root", str(tmp_path / "data"), "--no-progress"]) == 2
    assert "'..'" in capsys.readouterr().err
    assert not list(tmp_path.rglob("escaped.txt")) and not (tmp_path / "data" / "davis2017").exists()


def test_get_davis_leaves_an_incomplete_target_alone(served, tmp_path, capsys):
    served(zip_folder(make_davis(tmp_path / "src"), tmp_path / "DAVIS-test.zip"))
    target = make_davis(tmp_path / "data" / "davis2017", drop="seqb/00001.png")
    assert get_davis(["--root", str(tmp_path / "data"), "--no-progress"]) == 2
    assert "exists but is incomplete" in capsys.readouterr().err
    assert served.requests == [] and (target / "Annotations" / "480p" / "seqa" / "00000.png").is_file()


def test_layout_report_for_2016_2017_and_test_dev(tmp_path):
    report = verify_davis_layout(make_davis(tmp_path / "d16", year=2016))
    assert report.ok and report.year == 2016 and report.sequences["seqa"] == catalogue.SequenceCounts(3, 3)
    test_dev = make_davis(tmp_path / "dev", sequences={"s": ("test-dev", 4)}, masks_only_first=True)
    assert verify_davis_layout(test_dev).ok  # first-frame masks are enough for test splits
    train_like = make_davis(tmp_path / "bad", sequences={"s": ("train", 4)}, masks_only_first=True)
    assert verify_davis_layout(train_like).problems == ["s: 4 frames but 1 masks with matching names"]
    no_first = make_davis(tmp_path / "nf", drop="seqa/00000.png")
    assert "seqa: no annotation for the first frame 00000" in verify_davis_layout(no_first).problems
    (tmp_path / "d16" / "JPEGImages" / "480p" / "seqb" / "00001.jpg").unlink()
    problems = verify_davis_layout(tmp_path / "d16").problems
    assert any("val.txt: 1 listed files are missing" in p for p in problems)
    with pytest.raises(VosLabError, match="not a DAVIS folder"):
        verify_davis_layout(tmp_path)


def test_get_davis_check_mode(tmp_path, capsys):
    assert get_davis(["--check", str(make_davis(tmp_path / "d", year=2016))]) == 0
    assert "DAVIS-2016" in capsys.readouterr().out
    assert get_davis(["--check", str(make_davis(tmp_path / "b", drop="seqb/00001.png"))]) == 1


def test_shared_davis_sample_passes_the_layout_check(davis2016_root):
    report = verify_davis_layout(davis2016_root)
    assert report.ok and len(report.sequences) == 14
    assert sum(c.frames for c in report.sequences.values()) == 941


def test_scripts_have_help_and_one_line_errors(tmp_path):
    for script in ("get_davis.py", "videos_to_frames.py"):
        run = subprocess.run([sys.executable, str(SCRIPTS / script), "--help"], capture_output=True, text=True)
        assert run.returncode == 0 and "usage:" in run.stdout
    (tmp_path / "file").write_text("x")
    run = subprocess.run([sys.executable, str(SCRIPTS / "get_davis.py"), "--root", str(tmp_path / "file")],
                         capture_output=True, text=True)
    assert run.returncode == 2 and run.stderr.strip().count("\n") == 0
    assert run.stderr.startswith("error:") and "not a folder" in run.stderr


def test_unknown_dataset_name_is_an_error(capsys):
    assert get_davis(["2018", "--root", "/nonexistent"]) == 2
    assert "unknown dataset 2018" in capsys.readouterr().err


def write_clip(path: Path, frames: int) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
        for index in range(frames):
            image = np.full((24, 32, 3), 10 * index, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def test_videos_to_frames_counts_skips_and_lists_failures(tmp_path, capsys):
    src = tmp_path / "videos"
    (src / "cls").mkdir(parents=True)
    write_clip(src / "cls" / "a.mp4", 10)
    write_clip(src / "b.mp4", 20)
    (src / "broken.webm").write_bytes(b"\x1a\x45\xdf\xa3 not really")
    args = [str(src), "--out", str(tmp_path / "frames"), "--fps", "5", "--short-side", "12",
            "--workers", "1", "--no-progress"]
    assert videos_to_frames(args) == 1
    out = capsys.readouterr().out
    assert "2 videos prepared, 0 already done, 1 failed; 15 frames in total" in out and "FAILED broken" in out
    assert sorted(p.name for p in (tmp_path / "frames" / "cls" / "a").glob("*.jpg"))[-1] == "00004.jpg"
    assert videos_to_frames(args) == 1
    assert "0 videos prepared, 2 already done, 1 failed" in capsys.readouterr().out


def test_videos_to_frames_from_a_list_and_bad_options(tmp_path, capsys):
    write_clip(tmp_path / "k1.mp4", 4)
    (tmp_path / "subset.txt").write_text("# kinetics subset\nk1.mp4\n")
    out = tmp_path / "frames"
    assert videos_to_frames(["--list", str(tmp_path / "subset.txt"), "--out", str(out), "--fps", "0",
                             "--short-side", "0", "--workers", "1", "--no-progress"]) == 0
    assert len(list((out / "k1").glob("*.jpg"))) == 4
    assert "1 videos prepared" in capsys.readouterr().out
    assert videos_to_frames(["--list", str(tmp_path / "subset.txt"), "--out", str(out), "--max-frames", "0"]) == 2
    assert "max_frames must be positive" in capsys.readouterr().err
    assert videos_to_frames([str(tmp_path / "nothing-here"), "--out", str(out)]) == 2


def test_videos_to_frames_list_entries_cannot_leave_the_output_folder(tmp_path, capsys):
    lists, out = tmp_path / "lists", tmp_path / "out" / "frames"
    (lists / "sub").mkdir(parents=True)
    write_clip(tmp_path / "x.mp4", 2)
    (lists / "subset.txt").write_text("sub/../../x.mp4\n")  # below --base lexically, outside it for real
    assert videos_to_frames(["--list", str(lists / "subset.txt"), "--base", str(lists), "--out", str(out),
                             "--fps", "0", "--workers", "1", "--no-progress"]) == 0
    assert len(list((out / "x").glob("*.jpg"))) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lists", "out", "x.mp4"]  # nothing beside out/
    write_clip(tmp_path / "...mp4", 2)  # its stem is '..'
    assert videos_to_frames([str(tmp_path / "...mp4"), "--out", str(out), "--no-progress"]) == 2
    assert "output folder '..' is not a relative path of plain names" in capsys.readouterr().err
    (out / "cls").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "cls").mkdir()
    write_clip(tmp_path / "cls" / "y.mp4", 2)
    assert videos_to_frames([str(tmp_path / "cls" / "y.mp4"), "--base", str(tmp_path), "--out", str(out),
                             "--no-progress"]) == 2
    assert "output folder 'cls/y' leads outside" in capsys.readouterr().err and not (tmp_path / "y").exists()


def test_davis_2016_frame_lists_cannot_point_outside_the_folder(tmp_path):
    root = make_davis(tmp_path / "d16", year=2016)
    (tmp_path / "secret.jpg").write_bytes(b"")
    with open(root / "ImageSets" / "480p" / "val.txt", "a") as handle:
        handle.write("/JPEGImages/480p/seqb/00000.jpg /JPEGImages/480p/../../../secret.jpg\n")
    with pytest.raises(VosLabError, match=r"val.txt: listed file '[^']*/secret.jpg' is not a relative path"):
        verify_davis_layout(root)


def test_videos_to_frames_unpacks_a_frame_archive_safely(tmp_path, capsys):
    frames = tmp_path / "ytvos" / "JPEGImages" / "0a2f"
    frames.mkdir(parents=True)
    for index in range(3):
        Image.new("RGB", (8, 8)).save(frames / f"{index * 5:05d}.jpg")
    archive = zip_folder(tmp_path / "ytvos", tmp_path / "train.zip", top="train")
    assert videos_to_frames(["--unpack", str(archive), "--out", str(tmp_path / "data" / "frames")]) == 0
    assert "3 JPEG frames unpacked" in capsys.readouterr().out
    assert paths.frame_folders(tmp_path / "data") == [tmp_path / "data/frames/train/JPEGImages/0a2f"]
    evil = zip_folder(tmp_path / "ytvos", tmp_path / "evil.zip", extra={"/abs.jpg": b""})
    assert videos_to_frames(["--unpack", str(evil), "--out", str(tmp_path / "data" / "frames")]) == 2


@pytest.mark.skipif(SHARED is None, reason="shared data absent")
def test_videos_to_frames_on_the_shared_videos(tmp_path, capsys):
    assert videos_to_frames([str(SHARED / "videos"), "--out", str(tmp_path), "--max-frames", "3",
                             "--workers", "2", "--no-progress"]) == 0
    assert "8 videos prepared, 0 already done, 0 failed; 24 frames in total" in capsys.readouterr().out


def test_data_root_configuration(tmp_path, monkeypatch):
    monkeypatch.delenv(paths.ENV_VAR, raising=False)
    assert paths.data_root() is None and paths.davis_root() is None and paths.frame_folders() == []
    monkeypatch.setenv(paths.ENV_VAR, str(tmp_path / "missing"))
    with pytest.raises(VosLabError, match=r"\$VOS_LAB_DATA is set but is not an existing folder"):
        paths.data_root()
    monkeypatch.setenv(paths.ENV_VAR, str(tmp_path))
    with pytest.raises(VosLabError, match="no DAVIS folder found"):
        paths.davis_root()
    make_davis(tmp_path / "davis2016", year=2016)
    assert paths.davis_root() == tmp_path / "davis2016"
    make_davis(tmp_path / "davis2017")
    assert paths.davis_root() == tmp_path / "davis2017"  # 2017 is preferred
    assert paths.davis_root("davis2016") == tmp_path / "davis2016"
    assert paths.data_root(tmp_path / "davis2016") == tmp_path / "davis2016"  # a notebook parameter wins
    assert paths.videos_dir() is None
    (tmp_path / "videos").mkdir()
    assert paths.videos_dir() == tmp_path / "videos"
