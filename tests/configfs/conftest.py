"""Fixtures for the configfs emulation tests: a mounted emulation, rtslib pointed at it, files.

Owns: mount lifecycle per test (the context manager unmounts even when a test fails) and the
skip conditions (root, /dev/fuse). Must not: leave mounts or processes behind.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from configfs import Mounted, mounted, rtslib_root


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "integration: needs real components (here: FUSE, root)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        skip = pytest.mark.skip(reason="needs root and /dev/fuse")
        for item in items:
            if "tests/configfs" in str(item.fspath):
                item.add_marker(skip)


@pytest.fixture
def emulation() -> Iterator[Mounted]:
    with mounted() as handle:
        yield handle


@pytest.fixture
def rts(emulation: Mounted, tmp_path: Path) -> Iterator[Any]:
    dbroot = tmp_path / "dbroot"
    dbroot.mkdir()
    with rtslib_root(emulation.root, str(dbroot)) as root:
        yield root


@pytest.fixture
def backing(tmp_path: Path) -> Path:
    path = tmp_path / "image.sqfs"
    with path.open("wb") as f:
        f.truncate(4 << 20)
    return path
