"""Download a model repository (.tar.gz) and unpack it safely: the chart's init container.

    python -m modelserver.fetch --url https://example.com/models.tar.gz --dest /models

The archive holds TF Serving's layout at its top level (<name>/<version>/saved_model.pb).
It is streamed, never stored whole, and unpacked member by member; refused (nothing left
behind in DEST) when a member is absolute, climbs out with "..", is a link or a device,
or when the download or the unpacked size exceeds its bound. Standard library only, so
it runs before anything else is importable.
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import BinaryIO

DEFAULT_MAX_DOWNLOAD_BYTES = 2 * 1024**3
DEFAULT_MAX_UNPACKED_BYTES = 8 * 1024**3
DEFAULT_TIMEOUT_SECONDS = 60.0
DEFAULT_ATTEMPTS = 3
ALLOWED_SCHEMES = ("http", "https", "file")


class FetchError(Exception):
    """Why the repository could not be fetched; printed as is."""


class BoundedReader(io.RawIOBase):
    """A response body that raises once more than `limit` bytes have been read."""

    def __init__(self, source: BinaryIO, limit: int) -> None:
        self.source = source
        self.limit = limit
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.source.read(len(buffer))
        self.count += len(data)
        if self.count > self.limit:
            raise FetchError(f"download exceeds --max-download-bytes ({self.limit} bytes)")
        buffer[: len(data)] = data
        return len(data)


def safe_member_path(dest: Path, member: tarfile.TarInfo) -> Path:
    """Where `member` may be written inside dest, or FetchError when it must not be written at all."""
    name = PurePosixPath(member.name)
    if name.is_absolute() or member.name.startswith(("/", "\\")):
        raise FetchError(f"archive member {member.name!r} has an absolute path")
    if ".." in name.parts:
        raise FetchError(f"archive member {member.name!r} climbs out of the destination ('..')")
    if member.issym() or member.islnk():
        raise FetchError(f"archive member {member.name!r} is a link; model repositories need none")
    if not (member.isfile() or member.isdir()):
        raise FetchError(f"archive member {member.name!r} is not a regular file or directory")
    target = (dest / Path(*name.parts)).resolve() if name.parts else dest.resolve()
    if target != dest.resolve() and dest.resolve() not in target.parents:
        raise FetchError(f"archive member {member.name!r} resolves outside the destination")
    return target


def unpack(stream: BinaryIO, dest: Path, max_unpacked: int) -> int:
    """Unpack a gzip'd tar stream into dest; returns the number of files written."""
    unpacked = 0
    files = 0
    with tarfile.open(fileobj=stream, mode="r|gz") as archive:
        for member in archive:
            target = safe_member_path(dest, member)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            unpacked += member.size
            if unpacked > max_unpacked:
                raise FetchError(f"unpacked size exceeds --max-unpacked-bytes ({max_unpacked} bytes)")
            source = archive.extractfile(member)
            if source is None:
                raise FetchError(f"archive member {member.name!r} cannot be read")
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("wb") as out:
                shutil.copyfileobj(source, out)
            target.chmod(0o644)
            files += 1
    return files


def model_versions(dest: Path) -> list[str]:
    return sorted(
        str(p.parent.relative_to(dest)) for p in dest.glob("*/*/saved_model.pb") if p.parent.name.isdigit()
    )


def clear(dest: Path) -> None:
    for entry in dest.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def fetch_once(url: str, dest: Path, timeout: float, max_download: int, max_unpacked: int) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            reader = io.BufferedReader(BoundedReader(response, max_download))
            return unpack(reader, dest, max_unpacked)
    except urllib.error.HTTPError as error:
        raise FetchError(f"GET {url}: HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise FetchError(f"GET {url}: {error.reason}") from None
    except (tarfile.TarError, EOFError, OSError) as error:
        raise FetchError(f"{url} is not a readable .tar.gz: {error}") from None


def fetch(
    url: str,
    dest: Path,
    *,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    attempts: int = DEFAULT_ATTEMPTS,
    max_download: int = DEFAULT_MAX_DOWNLOAD_BYTES,
    max_unpacked: int = DEFAULT_MAX_UNPACKED_BYTES,
) -> list[str]:
    """Fetch and unpack; returns the model versions found ("name/version")."""
    scheme = url.split(":", 1)[0].lower()
    if scheme not in ALLOWED_SCHEMES:
        raise FetchError(f"unsupported URL scheme {scheme!r} (use {', '.join(ALLOWED_SCHEMES)})")
    dest.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, attempts + 1):
        clear(dest)
        try:
            fetch_once(url, dest, timeout, max_download, max_unpacked)
            break
        except FetchError as error:
            clear(dest)
            transient = str(error).startswith("GET ") and "HTTP 4" not in str(error)
            if not transient or attempt == attempts:
                raise
            print(f"fetch: attempt {attempt} failed ({error}); retrying", file=sys.stderr, flush=True)
            time.sleep(min(2**attempt, 10))
    versions = model_versions(dest)
    if not versions:
        clear(dest)
        raise FetchError(f"{url} holds no model versions (<name>/<version>/saved_model.pb at its top level)")
    return versions


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m modelserver.fetch", description=__doc__)
    parser.add_argument(
        "--url", required=True, help="http(s):// or file:// URL of a .tar.gz model repository"
    )
    parser.add_argument("--dest", required=True, type=Path, help="directory to unpack into (emptied first)")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS, help="seconds per network read"
    )
    parser.add_argument("--attempts", type=int, default=DEFAULT_ATTEMPTS, help="tries on network errors")
    parser.add_argument("--max-download-bytes", type=int, default=DEFAULT_MAX_DOWNLOAD_BYTES)
    parser.add_argument("--max-unpacked-bytes", type=int, default=DEFAULT_MAX_UNPACKED_BYTES)
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        versions = fetch(
            args.url,
            args.dest,
            timeout=args.timeout,
            attempts=max(1, args.attempts),
            max_download=args.max_download_bytes,
            max_unpacked=args.max_unpacked_bytes,
        )
    except FetchError as error:
        print(f"fetch: error: {error}", file=sys.stderr, flush=True)
        sys.exit(1)
    print(
        f"fetch: unpacked {', '.join(versions)} into {args.dest} in {time.monotonic() - started:.1f}s",
        flush=True,
    )


if __name__ == "__main__":
    main()
