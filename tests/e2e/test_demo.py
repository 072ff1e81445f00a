"""``sbpsctl demo --check``: the README's main job, end to end, on loopback."""

from __future__ import annotations

import subprocess
import sys


def test_demo_check_passes_and_cleans_up() -> None:
    r = subprocess.run([sys.executable, "-c", "from sbps.cli import run; run()", "demo",
                        "--check"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    for step in ("building a real squashfs image", "waiting for the image to be exported",
                 "waiting for the DNS records to answer", "reading the whole LUN",
                 "equal to S3", "All checks passed"):
        assert step in r.stdout, r.stdout
    # Every process the demo started has its temporary directory on its command line.
    left = subprocess.run(["pgrep", "-f", "sbps-demo-"], capture_output=True, text=True)
    assert not left.stdout.split(), "the demo left processes behind"
