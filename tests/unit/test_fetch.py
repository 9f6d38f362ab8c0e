"""`python -m modelserver.fetch` against a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import functools
import http.server
import io
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from unit.server_process import python_env

SAVED_MODEL = b"\x08\x01fake saved_model.pb bytes"


def make_archive(path: Path, members: list[tuple[str, bytes | None, str]]) -> None:
    """members: (name, content or None for a directory, kind: file|dir|symlink|hardlink)."""
    with tarfile.open(path, "w:gz") as archive:
        for name, content, kind in members:
            info = tarfile.TarInfo(name)
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                archive.addfile(info)
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, "anomaly/1/saved_model.pb"
                archive.addfile(info)
            else:
                data = content or b""
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))


GOOD = [
    ("anomaly", None, "dir"),
    ("anomaly/1", None, "dir"),
    ("anomaly/1/saved_model.pb", SAVED_MODEL, "file"),
    ("anomaly/1/variables/variables.index", b"index", "file"),
    ("anomaly/2/saved_model.pb", SAVED_MODEL, "file"),
]


@pytest.fixture(scope="module")
def archive_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("archives")
    make_archive(root / "good.tar.gz", GOOD)
    make_archive(root / "traversal.tar.gz", [*GOOD, ("../escaped.txt", b"x", "file")])
    make_archive(root / "absolute.tar.gz", [("/tmp/absolute.txt", b"x", "file"), *GOOD])
    make_archive(root / "symlink.tar.gz", [*GOOD, ("anomaly/1/link", None, "symlink")])
    make_archive(root / "hardlink.tar.gz", [*GOOD, ("anomaly/1/hard", None, "hardlink")])
    make_archive(root / "big.tar.gz", [*GOOD, ("anomaly/1/zeros", b"\0" * 2_000_000, "file")])
    make_archive(root / "empty.tar.gz", [("README", b"no models here", "file")])
    (root / "not-a-tarball.tar.gz").write_bytes(b"<html>login page</html>")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()


def run_fetch(url: str, dest: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "modelserver.fetch",
            "--url",
            url,
            "--dest",
            str(dest),
            "--attempts",
            "1",
            *extra,
        ],
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_fetches_and_unpacks_a_model_repository(archive_server, tmp_path):
    base, _ = archive_server
    dest = tmp_path / "models"
    dest.mkdir()
    (dest / "stale-file").write_text("from an earlier attempt")
    result = run_fetch(f"{base}/good.tar.gz", dest)
    assert result.returncode == 0, result.stderr
    assert "anomaly/1, anomaly/2" in result.stdout
    assert (dest / "anomaly/1/saved_model.pb").read_bytes() == SAVED_MODEL
    assert (dest / "anomaly/1/variables/variables.index").read_bytes() == b"index"
    assert not (dest / "stale-file").exists()


@pytest.mark.parametrize(
    ("archive", "message"),
    [
        ("traversal.tar.gz", "climbs out"),
        ("absolute.tar.gz", "absolute path"),
        ("symlink.tar.gz", "is a link"),
        ("hardlink.tar.gz", "is a link"),
        ("empty.tar.gz", "no model versions"),
        ("not-a-tarball.tar.gz", "not a readable .tar.gz"),
        ("missing.tar.gz", "HTTP 404"),
    ],
)
def test_unsafe_or_broken_archives_are_refused_and_leave_nothing(archive_server, tmp_path, archive, message):
    base, _ = archive_server
    dest = tmp_path / "models"
    result = run_fetch(f"{base}/{archive}", dest)
    assert result.returncode == 1
    assert result.stderr.startswith("fetch: error: ")
    assert message in result.stderr
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "escaped.txt").exists()


def test_size_bounds(archive_server, tmp_path):
    base, root = archive_server
    unpacked = run_fetch(f"{base}/big.tar.gz", tmp_path / "a", "--max-unpacked-bytes", "1000000")
    assert unpacked.returncode == 1 and "--max-unpacked-bytes" in unpacked.stderr
    size = (root / "good.tar.gz").stat().st_size
    download = run_fetch(f"{base}/good.tar.gz", tmp_path / "b", "--max-download-bytes", str(size // 2))
    assert download.returncode == 1 and "--max-download-bytes" in download.stderr


def test_unreachable_url_and_bad_scheme(tmp_path):
    refused = run_fetch("http://127.0.0.1:9/models.tar.gz", tmp_path / "a", "--timeout", "2")
    assert refused.returncode == 1 and "GET http://127.0.0.1:9/models.tar.gz" in refused.stderr
    scheme = run_fetch("ftp://127.0.0.1/models.tar.gz", tmp_path / "b")
    assert scheme.returncode == 1 and "unsupported URL scheme" in scheme.stderr
