"""Resumable, verified HTTP downloads (stdlib urllib + tqdm).

The bytes go to `<dest>.part`; an interrupted transfer is resumed with an HTTP Range request (here, up to
`retries` times, and on the next run); only a file whose size and checksum match is renamed to `dest`.
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


def _open(url: str, start: int, timeout: float) -> http.client.HTTPResponse:
    headers = {"User-Agent": USER_AGENT}
    if start:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


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


def _transfer(url: str, part: Path, timeout: float, progress: bool) -> bool:
    """Append the rest of `url` to `part`; True when the whole file arrived, False when cut short."""
    start = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, start, timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and start:  # nothing left to send: the part file is already complete
            return True
        raise VosLabError(f"{url}: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise VosLabError(f"{url}: cannot connect ({reason})") from None
    with response:
        if start and response.status != 206:
            start = 0  # the server ignored the Range header: start over
        total = _total_size(response, start)
        if total is not None:
            _check_space(part.parent, total - start)
        received = start
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
                        break
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        except OSError as error:
            raise fs_error(part, error) from None
        finally:
            bar.close()
    return total is None or received >= total


def download(url: str, dest: str | Path, *, size: int | None = None, sha256: str | None = None,
             md5: str | None = None, retries: int = 3, timeout: float = 60.0,
             progress: bool = True) -> Downloaded:
    """Fetch `url` to `dest`, resuming `<dest>.part`, and verify it; skip when `dest` already matches.

    `size`, `sha256` and `md5` are checked when given (None = unknown). The returned sha256 lets a caller
    pin a checksum that was not published. Raises VosLabError on a mismatch (the download is deleted), on
    network errors after `retries` resumed attempts (the part file is kept for the next run), on a full
    disk or an unwritable folder.
    """
    dest = Path(dest).expanduser()
    part = dest.with_name(dest.name + ".part")
    if dest.exists():
        problem, digest = _mismatch(dest, size, sha256, md5)
        if problem:
            raise VosLabError(f"{dest}: already exists but its {problem}; move it away to download again")
        return Downloaded(dest, dest.stat().st_size, digest, fetched=False)
    writable_dir(dest.parent)
    for _attempt in range(retries + 1):
        if _transfer(url, part, timeout, progress):
            break
    else:
        have = part.stat().st_size if part.exists() else 0
        raise VosLabError(f"{url}: transfer interrupted at {have} bytes; run again to resume from {part}")
    problem, digest = _mismatch(part, size, sha256, md5)
    if problem:
        part.unlink()
        raise VosLabError(f"{url}: download is corrupt, its {problem}; deleted {part}")
    try:
        part.replace(dest)
    except OSError as error:
        raise fs_error(dest, error) from None
    return Downloaded(dest, dest.stat().st_size, digest, fetched=True)

