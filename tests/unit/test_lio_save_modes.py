"""``saveconfig.json`` holds CHAP secrets: it, its ``.bak`` and its temp file are 0600
whatever was on disk before (a stale temp file of another mode, an old file or .bak of
another mode, a symlink planted as the temp name) and whatever the umask."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sbps.target.lio.save import save_atomically
from tests.fixtures.secrets import loose_files


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0)  # the most permissive umask: modes come from the code alone
    try:
        yield
    finally:
        os.umask(old)


def test_stale_loose_files_do_not_leak_their_mode(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "saveconfig.json"
    for name in ("saveconfig.json", "saveconfig.json.bak", "saveconfig.json.sbps-tmp"):
        (tmp_path / name).write_text("{}\n")
        (tmp_path / name).chmod(0o644)
    save_atomically({"targets": [], "secret": "chap-secret-1"}, str(path))
    assert json.loads(path.read_text())["secret"] == "chap-secret-1"
    assert not (tmp_path / "saveconfig.json.sbps-tmp").exists()
    assert loose_files([tmp_path]) == {}
    # And on the next save, the .bak (the file just written) stays 0600 too.
    save_atomically({"targets": [], "secret": "chap-secret-2"}, str(path))
    assert json.loads((tmp_path / "saveconfig.json.bak").read_text())["secret"] == \
        "chap-secret-1"
    assert loose_files([tmp_path]) == {}


def test_a_planted_symlink_as_temp_name_is_not_followed(tmp_path: Path,
                                                        open_umask: None) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    victim.chmod(0o644)
    (tmp_path / "saveconfig.json.sbps-tmp").symlink_to(victim)
    save_atomically({"targets": []}, str(tmp_path / "saveconfig.json"))
    assert victim.read_text() == "keep\n" and oct(victim.stat().st_mode & 0o777) == "0o644"
    assert loose_files([tmp_path / "saveconfig.json"]) == {}


def test_loose_files_detector_fires(tmp_path: Path) -> None:
    """Negative control of the detector the tests above rely on."""
    (tmp_path / "a").write_text("x")
    (tmp_path / "a").chmod(0o640)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b").write_text("x")
    (tmp_path / "d" / "b").chmod(0o604)
    assert loose_files([tmp_path]) == {str(tmp_path / "a"): "0o640",
                                       str(tmp_path / "d" / "b"): "0o604"}
