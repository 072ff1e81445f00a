"""Shared helpers of the benchmarks in perf/: the result document, statistics, the machine,
and profiles of a process with py-spy.

Every benchmark builds a ``Result`` (one or more ``Measurement``s, each with its baseline
measured in the same run, the ratio, the goal and whether it was met) and hands it to
``emit()``, which prints it and, with ``--json OUT``, writes it as JSON for ``perf/run``.
Must not measure anything itself, start servers or decide goals.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = 1


@dataclass
class Measurement:
    """One figure of record. ``value`` is the median of ``samples`` when there are some;
    ``ratio`` compares it with ``baseline_value`` (``ratio_note`` says which way is better);
    ``met`` is None when the figure has no goal."""

    name: str
    what: str
    value: float
    unit: str
    samples: list[float] = field(default_factory=list)
    spread: str = ""
    baseline_tool: str = ""
    baseline_value: float | None = None
    baseline_unit: str = ""
    baseline_measured: bool = True
    ratio: float | None = None
    ratio_note: str = ""
    goal: str = ""
    met: bool | None = None


@dataclass
class Result:
    benchmark: str
    title: str
    measurements: list[Measurement] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tables: list[dict[str, Any]] = field(default_factory=list)
    profile: str = ""
    seconds: float = 0.0
    schema: int = SCHEMA

    def add(self, m: Measurement) -> Measurement:
        self.measurements.append(m)
        return m

    def table(self, title: str, columns: list[str], rows: list[list[Any]]) -> None:
        self.tables.append({"title": title, "columns": columns, "rows": rows})

    @property
    def missed(self) -> list[Measurement]:
        return [m for m in self.measurements if m.met is False]


def add_json_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="OUT", nargs="?", const="-", default=None,
                        help="also write the result as JSON to OUT ('-' or no value: stdout)")


def emit(result: Result, out: str | None, started: float | None = None) -> None:
    """Print a human summary; write the JSON document to ``out`` ('-' is stdout)."""
    if started is not None:
        result.seconds = round(time.monotonic() - started, 1)
    doc = json.dumps(asdict(result), indent=2)
    if out == "-":
        print(doc)
        return
    print(f"== {result.title}")
    for m in result.measurements:
        base = ""
        if m.baseline_tool:
            bv = "n/a" if m.baseline_value is None else f"{m.baseline_value:g}"
            base = f" | baseline {m.baseline_tool}: {bv} {m.baseline_unit}"
        ratio = "" if m.ratio is None else f" | ratio {m.ratio:.3g} {m.ratio_note}"
        goal = f" | goal {m.goal}: {'met' if m.met else 'MISSED'}" if m.met is not None else ""
        print(f"  {m.name}: {m.value:g} {m.unit} {m.spread}{base}{ratio}{goal}")
    for note in result.notes:
        print(f"  note: {note}")
    if out:
        Path(out).write_text(doc)


def median_spread(values: list[float], digits: int = 3) -> tuple[float, str]:
    """The median, and the spread as ``min..max (IQR a..b, n=N)``."""
    if not values:
        return float("nan"), "(no samples)"
    med = statistics.median(values)
    lo, hi = min(values), max(values)
    if len(values) >= 4:
        q = statistics.quantiles(values, n=4)
        iqr = f", IQR {q[0]:.{digits}g}..{q[2]:.{digits}g}"
    else:
        iqr = ""
    return med, f"(min..max {lo:.{digits}g}..{hi:.{digits}g}{iqr}, n={len(values)})"


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-len(ordered) * p // 100)))
    return ordered[int(rank) - 1]


def machine() -> dict[str, Any]:
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {"cores": os.cpu_count(), "memory_gib": round(mem_kib / 2**20, 1),
            "cpu": model, "kernel": platform.release(), "python": platform.python_version(),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


# --- per-process figures ----------------------------------------------------------------

def cpu_ns(pid: int) -> int:
    """CPU time of every live thread of ``pid`` in nanoseconds (/proc/<pid>/task/*/schedstat:
    nanosecond resolution, unlike the 10 ms ticks of /proc/<pid>/stat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # the thread ended between the listing and the read
    return total


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields.get("VmRSS", 0), fields.get("VmHWM", 0)


# --- profiles -----------------------------------------------------------------------------

class PySpy:
    """``py-spy record`` of a running process, in raw (collapsed stacks) format."""

    def __init__(self, pid: int, out: Path, rate: int = 250) -> None:
        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self.available = os.path.exists(exe)
        self.out = out
        self.proc: subprocess.Popen[bytes] | None = None
        if self.available:
            self.proc = subprocess.Popen(
                [exe, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
                 "--output", str(out), "--nonblocking", "--threads"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(0.5)  # attach before the measured work starts

    def stop(self) -> str:
        """Stop recording (SIGINT makes py-spy write its file) and summarise the profile."""
        if self.proc is None:
            return "py-spy is not installed (pip install -r perf/requirements.txt)"
        self.proc.send_signal(2)
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        if not self.out.exists():
            return f"py-spy wrote no profile: {err.decode(errors='replace')[-500:]}"
        return summarize_collapsed(self.out.read_text(errors="replace"))


def summarize_collapsed(text: str, top: int = 15) -> str:
    """Top functions by own samples and by total (inclusive) samples of collapsed stacks
    (``frame;frame;frame count`` per line), idle threads' waits excluded."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    idle = ("select (selectors.py", "wait (threading.py", "_worker (concurrent",
            "epoll", "poll (selectors.py", "sleep")
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if f and not f.startswith(("thread (", "process "))]
        if not frames or any(frames[-1].startswith(i) for i in idle):
            continue
        n = int(count)
        samples += n
        own[frames[-1]] += n
        for f in set(frames):
            total[f] += n
    if not samples:
        return "no busy samples"
    lines = [f"{samples} busy samples (idle waits excluded)", "", "own%  function (file:line)"]
    lines += [f"{100 * n / samples:5.1f} {f}" for f, n in own.most_common(top)]
    lines += ["", "total% function (file:line)"]
    lines += [f"{100 * n / samples:5.1f} {f}" for f, n in total.most_common(top)]
    return "\n".join(lines)
