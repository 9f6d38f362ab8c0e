"""Version directories as TF Serving reads them (file_system_storage_path_source.cc, absl::SimpleAtoi)."""

from __future__ import annotations

from pathlib import Path

import pytest
from modelserver.repository import available_versions, parse_version


@pytest.mark.parametrize(
    ("name", "version"),
    [("1", 1), ("00000123", 123), ("+7", 7), (" 42 ", 42), ("0", 0), (str(2**63 - 1), 2**63 - 1)],
)
def test_names_tf_serving_reads_as_versions(name, version):
    assert parse_version(name) == version


@pytest.mark.parametrize("name", ["", "v1", "1a", "1.0", "0x10", "1_000", "١٢", "-1", str(2**63), "assets"])
def test_names_that_are_not_versions(name):
    assert parse_version(name) is None


def make_version(model_dir: Path, name: str, file: str = "saved_model.pb") -> Path:
    directory = model_dir / name
    directory.mkdir(parents=True)
    (directory / file).write_bytes(b"")
    return directory


def test_the_directory_on_disk_is_the_one_served(tmp_path):
    padded = make_version(tmp_path / "m", "00000123")
    make_version(tmp_path / "m", "00000009")
    make_version(tmp_path / "m", "124-not-a-version")
    (tmp_path / "m" / "00000200").mkdir()  # no saved_model.pb: not a version
    assert available_versions(tmp_path / "m") == {9: tmp_path / "m" / "00000009", 123: padded}


def test_a_text_saved_model_is_a_version_and_of_two_names_for_one_version_the_last_wins(tmp_path):
    make_version(tmp_path / "n", "0007", "saved_model.pbtxt")
    assert available_versions(tmp_path / "n") == {7: tmp_path / "n" / "0007"}
    make_version(tmp_path / "m", "0123", "saved_model.pbtxt")
    make_version(tmp_path / "m", "123")
    assert available_versions(tmp_path / "m") == {123: tmp_path / "m" / "123"}
