"""sbps.imagebuild.squashfs with the real mksquashfs: reproducible, attributes preserved."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from sbps.core.errors import InputError, PermanentError
from sbps.imagebuild.squashfs import SquashfsError, make_squashfs
from tests.fixtures.images import MARKER


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_tree(root: Path) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc/hostname").write_text("node\n")
    (root / "bin").mkdir()
    tool = root / "bin/tool"
    tool.write_bytes(b"\x7fELF fake tool")
    os.chown(tool, 1234, 5678)  # before chmod: chown clears the setuid bit
    tool.chmod(0o4750)
    os.setxattr(root / "etc/hostname", "user.sbps", b"kept")
    return root


def extract(image: Path, dest: Path) -> Path:
    subprocess.run(["unsquashfs", "-q", "-n", "-d", str(dest), str(image)], check=True,
                   capture_output=True)
    return dest


def test_reproducible_across_mtime_changes(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "root")
    first = make_squashfs(tree, tmp_path / "a.squashfs")
    for path in tree.rglob("*"):
        os.utime(path, (1_000_000, 2_000_000))
    second = make_squashfs(tree, tmp_path / "b.squashfs")
    assert first.read_bytes()[:4] == b"hsqs"
    assert sha256(first) == sha256(second)
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_ownership_modes_and_xattrs_are_preserved(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "root")
    image = make_squashfs(tree, tmp_path / "img.squashfs", compression="zstd")
    out = extract(image, tmp_path / "out")
    st = (out / "bin/tool").stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1234, 5678, 0o4750)
    assert os.getxattr(out / "etc/hostname", "user.sbps") == b"kept"
    assert (out / "etc/hostname").read_text() == "node\n"


def test_file_capabilities_are_preserved(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "root")
    subprocess.run(["setcap", "cap_net_raw+ep", str(tree / "bin/tool")], check=True)
    image = make_squashfs(tree, tmp_path / "img.squashfs")
    out = extract(image, tmp_path / "out")
    got = subprocess.run(["getcap", str(out / "bin/tool")], check=True, capture_output=True,
                         text=True).stdout
    assert "cap_net_raw" in got


def test_replaces_existing_output(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "root")
    out = tmp_path / "img.squashfs"
    out.write_bytes(b"old content")
    make_squashfs(tree, out)
    assert out.read_bytes()[:4] == b"hsqs"


@pytest.mark.parametrize("compression", ["bzip2", "", "gzip -Xbad"])
def test_rejects_unknown_compression(tmp_path: Path, compression: str) -> None:
    with pytest.raises(InputError, match="compression"):
        make_squashfs(make_tree(tmp_path / "root"), tmp_path / "x", compression=compression)


def test_bad_source_and_output_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a directory"):
        make_squashfs(tmp_path / "missing", tmp_path / "x.squashfs")
    with pytest.raises(InputError, match="does not exist"):
        make_squashfs(make_tree(tmp_path / "root"), tmp_path / "nodir" / "x.squashfs")


def test_mksquashfs_failure_is_permanent_and_names_source(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "root")
    out = tmp_path / "img.squashfs"
    # An output path that exists as a directory makes mksquashfs itself fail.
    tmp_dir_target = tmp_path / f".{out.name}.partial-{os.getpid()}"
    tmp_dir_target.mkdir()
    (tmp_dir_target / "busy").write_text("x")
    with pytest.raises(SquashfsError) as info:
        make_squashfs(tree, out)
    assert isinstance(info.value, PermanentError) and str(tree) in str(info.value)
    assert not out.exists()


def test_missing_mksquashfs_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(SquashfsError, match="not found"):
        make_squashfs(make_tree(tmp_path / "root"), tmp_path / "x.squashfs")


def test_squashfs_image_fixture_holds_the_marker(squashfs_image: Any, tmp_path: Path) -> None:
    built = squashfs_image("marker")
    out = extract(built.path, tmp_path / "out")
    assert (out / MARKER).read_text() == built.marker
    assert built.size == built.path.stat().st_size
