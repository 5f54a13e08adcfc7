"""Resumable verified downloads against a local HTTP server on 127.0.0.1 that can cut transfers short."""

from __future__ import annotations

import errno
import hashlib
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from vos_lab.data import download as download_module
from vos_lab.data.download import download, file_digest
from vos_lab.errors import VosLabError
from vos_lab.paths import writable_dir

PAYLOAD = bytes(range(256)) * 40  # 10240 bytes
SHA = hashlib.sha256(PAYLOAD).hexdigest()
MD5 = hashlib.md5(PAYLOAD).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        server = self.server
        cut = server.cuts.pop(0) if server.cuts else None  # taken first: a test may set the next cut
        server.requests.append(self.headers.get("Range"))   # as soon as the client has its answer
        server.if_ranges.append(self.headers.get("If-Range"))
        if self.path != "/file.bin":
            self.send_error(404)
            return
        start, match = 0, re.match(r"bytes=(\d+)-", self.headers.get("Range") or "")
        unchanged = self.headers.get("If-Range") in (None, *server.validators.values())
        if match and server.ranges and unchanged:
            start = int(match.group(1))
            if start >= len(server.payload):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(server.payload)}")
                self.end_headers()
                return
            self.send_response(206)
            total = len(server.payload)
            self.send_header("Content-Range", f"bytes {start}-{total - 1}/{total}")
        else:
            self.send_response(200)
        body = server.payload[start:]
        for header, value in server.validators.items():
            self.send_header(header, value)
        if server.lengths:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body if cut is None else body[:cut])
        self.close_connection = cut is not None or not server.lengths  # no size: the end is the close

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    """A server with `.url`, `.payload`, `.cuts` (bytes to send before hanging up, per request),
    `.ranges` (honour Range headers), `.lengths` (send Content-Length), `.validators` (headers such as
    ETag sent with the file; an If-Range that matches none of them gets the whole file) and `.requests`,
    `.if_ranges` (the Range and If-Range header of each request)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.payload, httpd.cuts, httpd.ranges, httpd.requests = PAYLOAD, [], True, []
    httpd.lengths, httpd.validators, httpd.if_ranges = True, {}, []
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/file.bin"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_download_verifies_and_renames(server, tmp_path):
    result = download(server.url, tmp_path / "f.bin", size=len(PAYLOAD), sha256=SHA, md5=MD5, progress=False)
    assert result.fetched and result.sha256 == SHA and result.size == len(PAYLOAD)
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD
    assert not (tmp_path / "f.bin.part").exists()


def test_interrupted_download_resumes_on_next_run(server, tmp_path):
    server.cuts = [1000]
    with pytest.raises(VosLabError, match="interrupted at 1000 bytes"):
        download(server.url, tmp_path / "f.bin", sha256=SHA, retries=0, progress=False)
    assert (tmp_path / "f.bin.part").stat().st_size == 1000 and not (tmp_path / "f.bin").exists()
    download(server.url, tmp_path / "f.bin", sha256=SHA, retries=0, progress=False)
    assert server.requests == [None, "bytes=1000-"]
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD


def test_cut_transfers_are_resumed_within_one_call(server, tmp_path):
    server.cuts = [500, 700]
    download(server.url, tmp_path / "f.bin", sha256=SHA, retries=3, progress=False)
    assert server.requests == [None, "bytes=500-", "bytes=1200-"]
    assert file_digest(tmp_path / "f.bin") == SHA


@pytest.mark.parametrize("header, value", [("ETag", '"v1"'), ("Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT")])
@pytest.mark.parametrize("changed", [False, True])
def test_resume_sends_if_range_and_restarts_when_the_file_changed(server, tmp_path, header, value, changed):
    server.validators, server.cuts = {header: value}, [1000]
    with pytest.raises(VosLabError, match="interrupted at 1000 bytes"):
        download(server.url, tmp_path / "f.bin", retries=0, progress=False)
    assert (tmp_path / "f.bin.part.validator").read_text() == value
    new = PAYLOAD[::-1] if changed else PAYLOAD  # a new release on the server, same size
    if changed:
        server.payload, server.validators = new, {header: value.replace("1", "2")}
    download(server.url, tmp_path / "f.bin", sha256=hashlib.sha256(new).hexdigest(), retries=0, progress=False)
    assert server.requests == [None, "bytes=1000-"] and server.if_ranges == [None, value]
    assert (tmp_path / "f.bin").read_bytes() == new  # whole again, never old bytes spliced onto new ones
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_a_response_without_size_that_is_cut_is_resumed_not_accepted(server, tmp_path):
    server.lengths, server.cuts = False, [1000]  # the server closes after 1000 bytes: looks like a clean end
    download(server.url, tmp_path / "f.bin", sha256=SHA, retries=1, progress=False)
    assert server.requests == [None, "bytes=1000-"] and (tmp_path / "f.bin").read_bytes() == PAYLOAD


def test_a_response_without_size_needs_a_checksum(server, tmp_path):
    server.lengths = False
    with pytest.raises(VosLabError, match="sends no size and no checksum is known"):
        download(server.url, tmp_path / "f.bin", progress=False)
    assert list(tmp_path.iterdir()) == []
    server.cuts = [1000]
    with pytest.raises(VosLabError, match="transfer interrupted at 1000 bytes"):
        download(server.url, tmp_path / "f.bin", sha256=SHA, retries=0, progress=False)
    server.payload = b"x" * 1000  # the server now really holds 1000 bytes of something else
    with pytest.raises(VosLabError, match="download is corrupt, its sha256 is"):
        download(server.url, tmp_path / "f.bin", sha256=SHA, progress=False)  # resume: 416, nothing more
    assert list(tmp_path.iterdir()) == []
    download(server.url, tmp_path / "f.bin", size=1000, progress=False)  # a known size is enough
    assert (tmp_path / "f.bin").read_bytes() == b"x" * 1000


def test_server_without_range_support_restarts_from_zero(server, tmp_path):
    server.ranges = False
    (tmp_path / "f.bin.part").write_bytes(b"x" * 300)  # stale bytes that must not be kept
    download(server.url, tmp_path / "f.bin", sha256=SHA, progress=False)
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD


def test_checksum_mismatch_deletes_the_download(server, tmp_path):
    with pytest.raises(VosLabError, match=r"corrupt, its sha256 is [0-9a-f]{64}, expected 0+; deleted"):
        download(server.url, tmp_path / "f.bin", sha256="0" * 64, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_md5_and_size_mismatch_are_reported(server, tmp_path):
    with pytest.raises(VosLabError, match="md5 is"):
        download(server.url, tmp_path / "f.bin", md5="0" * 32, progress=False)
    with pytest.raises(VosLabError, match=f"size is {len(PAYLOAD)} bytes, expected 5"):
        download(server.url, tmp_path / "f.bin", size=5, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_complete_file_is_skipped_without_a_request(server, tmp_path):
    download(server.url, tmp_path / "f.bin", sha256=SHA, progress=False)
    again = download(server.url, tmp_path / "f.bin", sha256=SHA, progress=False)
    assert not again.fetched and len(server.requests) == 1


def test_existing_mismatching_file_is_never_deleted(server, tmp_path):
    (tmp_path / "f.bin").write_bytes(b"prepared by hand")
    with pytest.raises(VosLabError, match="already exists but its sha256"):
        download(server.url, tmp_path / "f.bin", sha256=SHA, progress=False)
    assert (tmp_path / "f.bin").read_bytes() == b"prepared by hand" and server.requests == []


def test_http_and_connection_errors_are_one_line(server, tmp_path):
    with pytest.raises(VosLabError, match="HTTP 404"):
        download(server.url.replace("file.bin", "missing.bin"), tmp_path / "f.bin", progress=False)
    port = server.server_address[1]
    server.shutdown()
    server.server_close()
    with pytest.raises(VosLabError, match="cannot connect"):
        download(f"http://127.0.0.1:{port}/file.bin", tmp_path / "f.bin", timeout=2, progress=False)


def test_not_enough_disk_space_is_refused_before_writing(server, tmp_path, monkeypatch):
    monkeypatch.setattr(download_module.shutil, "disk_usage", lambda _: type("U", (), {"free": 10})())
    with pytest.raises(VosLabError, match="not enough disk space"):
        download(server.url, tmp_path / "f.bin", progress=False)
    assert not (tmp_path / "f.bin").exists()


def test_disk_full_while_writing_is_a_clear_error(server, tmp_path, monkeypatch):
    class _Full:
        def __init__(self, *args):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *args):
            return False

        def write(self, _data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(download_module, "open", _Full, raising=False)
    with pytest.raises(VosLabError, match="disk full"):
        download(server.url, tmp_path / "f.bin", progress=False)
    assert not (tmp_path / "f.bin").exists()


def test_unwritable_targets_are_clear_errors(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(VosLabError, match="is a file, not a folder|not a folder"):
        writable_dir(tmp_path / "a-file" / "sub")

    def read_only(self, data):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(Path, "write_bytes", read_only)
    with pytest.raises(VosLabError, match="cannot write here"):
        writable_dir(tmp_path / "target")
