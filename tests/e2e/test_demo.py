"""``sbpsctl demo --check``: the README's main job, end to end, on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def _reaped(cmd: list[str], tmp_path: Path, timeout: float) -> tuple[Any, list[dict[str, Any]]]:
    """Run ``cmd`` under tests.fixtures.reaper: its result and the processes it left."""
    out = tmp_path / "left.json"
    r = subprocess.run([sys.executable, "-m", "tests.fixtures.reaper", str(out), "--", *cmd],
                       capture_output=True, text=True, timeout=timeout,
                       cwd=Path(__file__).resolve().parents[2])
    return r, json.loads(out.read_text())


def test_demo_check_passes_and_cleans_up(tmp_path: Path) -> None:
    r, left = _reaped([sys.executable, "-c", "from sbps.cli import run; run()", "demo",
                       "--check"], tmp_path, 600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    for step in ("building a real squashfs image", "waiting for the image to be exported",
                 "waiting for the DNS records to answer", "reading the whole LUN",
                 "equal to S3", "All checks passed"):
        assert step in r.stdout, r.stdout
    # Every process the demo started, however detached (moto, IMS, tgtd, knotd, the marshal),
    # is a descendant of the reaper; only the demo's own ones are counted.
    assert left == [], f"the demo left processes behind: {left}"


def test_reaper_sees_a_detached_leftover(tmp_path: Path) -> None:
    """Negative control: a process that detaches into its own session is still caught."""
    r, left = _reaped(["sh", "-c", "setsid sleep 300 </dev/null >/dev/null 2>&1 &"],
                      tmp_path, 60)
    assert r.returncode == 0
    assert [x["cmdline"] for x in left] == ["sleep 300"]


def test_demo_banner_gives_a_working_sbpsctl(tmp_path: Path) -> None:
    """Served (not --check), the demo prints an sbpsctl command line and a shell file that
    both reach it; Ctrl-C then stops everything."""
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-c", "from sbps.cli import run; run()", "demo"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
            if "press Ctrl-C" in line:
                break
        text = "".join(lines)
        command = next(x.split(":", 1)[1].strip() for x in lines if x.startswith("sbpsctl:"))
        assert command.endswith(" status") and "--config" in command, text
        r = subprocess.run(command.split(), capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        shell = next(x.split(". ", 1)[1].strip() for x in lines if x.startswith("Shell:"))
        r = subprocess.run(["sh", "-c", f". {shell} >/dev/null && sbpsctl images"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "sbps-demo" in r.stdout, r.stdout + r.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "removing" in out
