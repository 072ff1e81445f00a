"""Benchmark (not a test): the LIO backend's per-pass configfs work at 255 LUNs, on the
configfs emulation and on a real kernel's configfs (Debian's kernel in the realkernel
lane's qemu guest, software emulation).

``perf/_lio_pass.py`` runs in both places with N exported images and measures, as CPU time
of the thread: a full read (every object; once per ``target.verify_interval`` and after
writes), the steady read a pass makes in between, the counters of every LUN (what a scrape
reads), and saving ``saveconfig.json`` first and after one change. Baselines from the same
tree in the same process: rtslib's own walk over every storage object and LUN, and
``RTSRoot().dump()`` (what targetcli's ``ls`` and ``saveconfig`` cost). The figure of record
is the ratio to those baselines in each place; the emulation's absolute figures are inflated
by a FUSE round trip per configfs call, the guest's by software CPU emulation.

    python perf/bench_readpath.py [--luns 255] [--json OUT]     # as root
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PERF = Path(__file__).resolve().parent
ROOT = PERF.parent
sys.path.insert(0, str(PERF))
sys.path.insert(0, str(ROOT))

from _common import Measurement, Result, add_json_arg, emit  # noqa: E402

PERF_TIMEOUT = 1800
SCRIPT = "perf/_lio_pass.py"


def on_emulation(luns: int) -> dict[str, Any]:
    from configfs import mounted

    with tempfile.TemporaryDirectory(prefix="sbps-readpath-") as work, mounted() as m:
        out = subprocess.run([sys.executable, str(ROOT / SCRIPT), m.target, work, str(luns)],
                             capture_output=True, text=True, check=True, timeout=1200,
                             cwd=ROOT)
    result: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
    return result


def on_kernel(luns: int) -> tuple[dict[str, Any], float]:
    from tests.vm.build import ensure_image
    from tests.vm.qemu import Guest

    with tempfile.TemporaryDirectory(prefix="sbps-readpath-guest-") as work:
        vm = Guest(ensure_image(), Path(work))
        vm.start()
        try:
            out = vm.run(["python3", f"/src/{SCRIPT}", "/sys/kernel/config/target",
                          "/var/tmp/sbps-readpath", str(luns)],
                         env={"PYTHONPATH": "/src:/opt/sbps-deps"}, timeout=1500)
        finally:
            vm.stop()
    result: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
    return result, vm.boot_seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--luns", type=int, default=255)
    add_json_arg(ap)
    args = ap.parse_args()
    began = time.monotonic()
    result = Result("readpath", f"LIO backend configfs work per pass at {args.luns} LUNs: "
                    "emulation and real kernel")
    emu = on_emulation(args.luns)
    kernel, boot = on_kernel(args.luns)
    rows = (("full read", "rtslib walk"), ("steady read", "rtslib walk"),
            ("counters of every LUN", "rtslib walk"), ("save after one change", "rtslib dump"),
            ("first save", "rtslib dump"))
    for place, figures in (("emulation", emu), ("real kernel", kernel)):
        for name, base in rows:
            value, baseline = figures[name], figures[base]
            result.add(Measurement(
                f"{name}, {place}", f"CPU of the backend thread at {args.luns} LUNs on the "
                f"{place}", value, "ms", [], "", f"rtslib's own objects ({base})", baseline,
                "ms", True, round(value / baseline, 4), "(sbps / rtslib; lower is better)"))
    result.notes.append("every figure is the best of 3 runs (first save: 1) of this thread's "
                        f"CPU time; sessions: emulation {emu['sessions']} ms, real kernel "
                        f"{kernel['sessions']} ms")
    result.notes.append(f"guest boot {boot:.0f} s (qemu TCG, 1 vCPU)")
    result.notes.append("real kernel / emulation, full read: "
                        f"{kernel['full read'] / emu['full read']:.2f}; steady read: "
                        f"{kernel['steady read'] / emu['steady read']:.2f}")
    emit(result, args.json, began)
    return 0


if __name__ == "__main__":
    sys.exit(main())
