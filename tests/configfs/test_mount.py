"""The foreground entry point: ``python -m configfs mount DIR`` stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from configfs.mount import READY, is_mounted, unmount

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent.parent


def test_sigterm_unmounts_and_exits(tmp_path: Path) -> None:
    mountpoint = tmp_path / "config"
    mountpoint.mkdir()
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "configfs", "mount", str(mountpoint), "--ready-fd",
         str(write_fd)], pass_fds=(write_fd,), cwd=REPO)
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as ready:
            assert ready.readline().strip() == READY
        assert is_mounted(str(mountpoint))
        assert (mountpoint / "target" / "core").is_dir()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert not is_mounted(str(mountpoint))
    finally:
        unmount(str(mountpoint))
        if proc.poll() is None:
            proc.kill()
            proc.wait()
