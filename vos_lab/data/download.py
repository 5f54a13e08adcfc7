"""Resumable, verified HTTP downloads (stdlib urllib + tqdm).

The bytes go to `<dest>.part`; an interrupted transfer is resumed with an HTTP Range request (here, up to
`retries` times, and on the next run); only a file whose size and checksum match is renamed to `dest`.
A resume sends `If-Range` with the ETag (or Last-Modified) of the response the part file started from,
kept in `<dest>.part.validator`, so a file that changed on the server is fetched again from the start
instead of being spliced onto old bytes. A response of unknown size (no Content-Length) counts as
complete only when it ended cleanly and the checksum matches; otherwise it is resumed like a cut one.
A mismatching download is deleted and reported. An existing `dest` that does not match is never deleted.
"""

from __future__ import annotations

import hashlib
import http.client
import re
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from vos_lab.errors import VosLabError
from vos_lab.paths import fs_error, writable_dir

CHUNK = 1 << 20
USER_AGENT = "vos_lab-data-scripts"
COMPLETE, ENDED, CUT = "complete", "ended", "cut"  # how a transfer finished (see _transfer)


@dataclass(frozen=True)
class Downloaded:
    """A verified file: where it is, its size and sha256, and whether this call fetched any bytes."""

    path: Path
    size: int
    sha256: str
    fetched: bool


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _mismatch(path: Path, size: int | None, sha256: str | None, md5: str | None) -> tuple[str | None, str]:
    """(description of the first mismatch or None, sha256 of the file)."""
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        return f"size is {actual_size} bytes, expected {size}", ""
    actual_sha = file_digest(path, "sha256")
    if sha256 is not None and actual_sha != sha256.lower():
        return f"sha256 is {actual_sha}, expected {sha256.lower()}", actual_sha
    if md5 is not None and (actual_md5 := file_digest(path, "md5")) != md5.lower():
        return f"md5 is {actual_md5}, expected {md5.lower()}", actual_sha
    return None, actual_sha


def _open(url: str, start: int, timeout: float, if_range: str | None) -> http.client.HTTPResponse:
    headers = {"User-Agent": USER_AGENT}
    if start:
        headers["Range"] = f"bytes={start}-"
        if if_range:
            headers["If-Range"] = if_range
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _validator(response: http.client.HTTPResponse) -> str | None:
    """What If-Range can compare: a strong ETag, else Last-Modified; None when the server sent neither."""
    etag = response.headers.get("ETag")
    return etag if etag and not etag.startswith("W/") else response.headers.get("Last-Modified")


def _keep_validator(stamp: Path, value: str | None) -> None:
    """Store (atomically) or forget the validator of the response a part file starts from."""
    try:
        if value is None:
            stamp.unlink(missing_ok=True)
            return
        tmp = stamp.with_name(stamp.name + ".tmp")
        tmp.write_text(value)
        tmp.replace(stamp)
    except OSError as error:
        raise fs_error(stamp, error) from None


def _total_size(response: http.client.HTTPResponse, start: int) -> int | None:
    """Full size of the remote file from Content-Range (206) or Content-Length (200)."""
    match = re.match(r"bytes (\d+)-\d+/(\d+)", response.headers.get("Content-Range", ""))
    if response.status == 206:
        if not match or int(match.group(1)) != start:
            raise VosLabError(f"{response.url}: server answered a resume request with a wrong range")
        return int(match.group(2))
    length = response.headers.get("Content-Length")
    return int(length) if length is not None else None


def _check_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise VosLabError(
            f"{folder}: not enough disk space ({needed / 1e9:.2f} GB needed, {free / 1e9:.2f} GB free)"
        )


def _transfer(url: str, part: Path, stamp: Path, *, size: int | None, checksum: bool, timeout: float,
              progress: bool) -> str:
    """Append the rest of `url` to `part`. Returns COMPLETE (every byte of a known size arrived, or the
    server has nothing left to send), ENDED (a response of unknown size ended cleanly: complete only if
    the checksum matches) or CUT (the connection broke or ended early)."""
    start = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, start, timeout, stamp.read_text() if start and stamp.is_file() else None)
    except urllib.error.HTTPError as error:
        if error.code == 416 and start:  # nothing left to send: the part file is already complete
            return COMPLETE
        raise VosLabError(f"{url}: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise VosLabError(f"{url}: cannot connect ({reason})") from None
    with response:
        if start and response.status != 206:
            start = 0  # the server ignored the Range header, or the file changed (If-Range): start over
        total = _total_size(response, start)
        total = size if total is None else total
        if total is None and not checksum:
            raise VosLabError(f"{url}: the server sends no size and no checksum is known, so a cut transfer "
                              "cannot be told from a complete one; pass a sha256 to download it")
        if total is not None:
            _check_space(part.parent, total - start)
        if not start:
            _keep_validator(stamp, _validator(response))
        received, ended = start, False
        bar = tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                   desc=part.name.removesuffix(".part"), disable=not progress, leave=False)
        try:
            with open(part, "ab" if start else "wb") as out:
                while True:
                    try:
                        chunk = response.read(CHUNK)
                    except (TimeoutError, http.client.IncompleteRead, ConnectionError):
                        break
                    if not chunk:
                        ended = True
                        break
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        except OSError as error:
            raise fs_error(part, error) from None
        finally:
            bar.close()
    if total is not None:
        return COMPLETE if received >= total else CUT
    return ENDED if ended else CUT


def download(url: str, dest: str | Path, *, size: int | None = None, sha256: str | None = None,
             md5: str | None = None, retries: int = 3, timeout: float = 60.0,
             progress: bool = True) -> Downloaded:
    """Fetch `url` to `dest`, resuming `<dest>.part`, and verify it; skip when `dest` already matches.

    `size`, `sha256` and `md5` are checked when given (None = unknown); a server that sends no size needs
    one of them. The returned sha256 lets a caller pin a checksum that was not published. Raises
    VosLabError on a mismatch (the download is deleted), on network errors after `retries` resumed
    attempts (the part file is kept for the next run), on a full disk or an unwritable folder.
    """
    dest = Path(dest).expanduser()
    part = dest.with_name(dest.name + ".part")
    if dest.exists():
        problem, digest = _mismatch(dest, size, sha256, md5)
        if problem:
            raise VosLabError(f"{dest}: already exists but its {problem}; move it away to download again")
        return Downloaded(dest, dest.stat().st_size, digest, fetched=False)
    writable_dir(dest.parent)
    stamp = part.with_name(part.name + ".validator")
    for _attempt in range(retries + 1):
        state = _transfer(url, part, stamp, size=size, checksum=sha256 is not None or md5 is not None,
                          timeout=timeout, progress=progress)
        if state == CUT:
            continue
        problem, digest = _mismatch(part, size, sha256, md5)
        if state == COMPLETE or problem is None:  # an ENDED transfer that does not match may be cut: resume
            break
    else:
        have = part.stat().st_size if part.exists() else 0
        raise VosLabError(f"{url}: transfer interrupted at {have} bytes; run again to resume from {part}")
    stamp.unlink(missing_ok=True)
    if problem:
        part.unlink()
        raise VosLabError(f"{url}: download is corrupt, its {problem}; deleted {part}")
    try:
        part.replace(dest)
    except OSError as error:
        raise fs_error(dest, error) from None
    return Downloaded(dest, dest.stat().st_size, digest, fetched=True)

