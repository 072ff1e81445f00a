"""The figures of a reliability run and the REPORT.md they are written to.

Each scenario adds one ``Figures`` row as it ends (before it asserts, so a failing run still
reports what it saw); each negative control adds a ``Control`` row showing that a loss
detector fires on a planted loss. Where it is written (``report_path``): the committed
``tests/reliability/REPORT.md`` only for a full-size run; a CI-size run writes outside the
tree (``$SBPS_RELIABILITY_REPORT``, else the temporary directory). The report opens with
the command that produced it. Must not decide pass or fail: the tests do.
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.reliability.scale import Scale

REPORT_PATH = Path(__file__).with_name("REPORT.md")


def report_path(scale: Scale, env: dict[str, str] | None = None) -> Path:
    """``$SBPS_RELIABILITY_REPORT`` if set; else REPORT.md in the tree for a full run and
    a file in the temporary directory for a reduced one (CI never writes the tree)."""
    given = (os.environ if env is None else env).get("SBPS_RELIABILITY_REPORT", "").strip()
    if given:
        return Path(given)
    if scale.name == "full":
        return REPORT_PATH
    return Path(tempfile.gettempdir()) / f"sbps-reliability-{scale.name}-REPORT.md"


def command_line(scale: Scale) -> str:
    """The command of this run, with the variables that set its size and seed."""
    argv = list(sys.argv)
    prog = "python -m pytest" if argv and argv[0].endswith("__main__.py") \
        else os.path.basename(argv[0]) if argv else "pytest"
    line = f"SBPS_RELIABILITY_SCALE={scale.name} SBPS_RELIABILITY_SEED={scale.seed} " \
        f"{prog} {shlex.join(argv[1:])}".rstrip()
    tox = os.environ.get("TOX_ENV_NAME")
    return line + (f"  (run by `tox -e {tox}`)" if tox else "")

#: Access control (issue 11) is proven by the access work's own tests, not repeated here.
ACCESS_TESTS = (
    ("tests/integration/test_lio_access.py::test_acls_map_only_each_tenants_images_with_chap",
     "ACL mode maps only each tenant's LUNs; CHAP required"),
    ("tests/integration/test_lio_access.py::test_revocation_tenant_change_and_secret_rotation",
     "revoked initiators and rotated secrets take effect"),
    ("tests/integration/test_lio_access.py::test_open_mode_removes_sbps_acls_but_not_an_admins",
     "only our own ACLs are touched"),
    ("tests/integration/test_tgt_access.py::test_allowed_reads_stranger_refused_write_refused",
     "real initiator: allowed one reads, a stranger is refused, writes are refused"),
    ("tests/integration/test_tgt_access.py::test_chap_one_way_and_mutual",
     "real initiator: one-way and mutual CHAP, wrong secrets refused"),
)


@dataclass
class Figures:
    """One scenario. Loss figures (corrupt, renumbered, lost, claims, partial) must be 0."""

    scenario: str
    faults: int = 0
    runs: int = 0
    inputs: int = 0
    crashes: int = 0
    corrupt: int = 0
    renumbered: int = 0
    lost: int = 0
    claims: int = 0
    partial: int = 0
    leaked: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def losses(self) -> int:
        return self.crashes + self.corrupt + self.renumbered + self.lost + self.claims \
            + self.partial + self.leaked


@dataclass(frozen=True)
class Control:
    """A negative control: a planted loss and what its detector counted (must be > 0)."""

    detector: str
    planted: str
    detected: int


@dataclass
class Report:
    scale: Scale
    started: float = field(default_factory=time.monotonic)
    rows: list[Figures] = field(default_factory=list)
    controls: list[Control] = field(default_factory=list)

    def add(self, figures: Figures) -> Figures:
        self.rows.append(figures)
        return figures

    def control(self, detector: str, planted: str, detected: int) -> None:
        self.controls.append(Control(detector, planted, detected))

    def markdown(self) -> str:
        s = self.scale
        elapsed = time.monotonic() - self.started
        lines = [
            "# Reliability and security report",
            "",
            f"Command: `{command_line(s)}`",
            "",
            f"Written by `tox -e reliability` (pytest `tests/reliability`). Scale `{s.name}` "
            f"(`SBPS_RELIABILITY_SCALE`), seed `{s.seed}` (`SBPS_RELIABILITY_SEED`): "
            f"{s.kills} kills per kill scenario, {s.fuzz_cases} fuzz cases per input kind. "
            f"Run time {elapsed:.0f} s on {platform.machine()} Python "
            f"{platform.python_version()}.",
            "",
            "Loss columns (crashes, corrupt exports, LUNs renumbered, data lost, claim "
            "problems, partial files left, secrets leaked) must all be 0; every detector behind "
            "them has a "
            "negative control below that shows it fires.",
            "",
            "| scenario | faults injected | runs survived | inputs tried | crashes | corrupt "
            "exports | LUNs renumbered | data lost | claim problems | partial files left | "
            "secrets leaked | seconds |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in self.rows:
            lines.append(f"| {r.scenario} | {r.faults} | {r.runs} | {r.inputs} | {r.crashes} "
                         f"| {r.corrupt} | {r.renumbered} | {r.lost} | {r.claims} | "
                         f"{r.partial} | {r.leaked} | {r.seconds:.0f} |")
        total = sum(r.losses for r in self.rows)
        lines += ["", f"Total of the loss figures: **{total}**.", "",
                  "## Negative controls", "",
                  "| detector | planted loss | detected |", "|---|---|---:|"]
        lines += [f"| {c.detector} | {c.planted} | {c.detected} |" for c in self.controls]
        lines += ["", "## Access control", "",
                  "Covered by the access-control tests (lanes integration; run by `tox`):", ""]
        lines += [f"- `{test}`: {what}" for test, what in ACCESS_TESTS]
        notes = [(r.scenario, n) for r in self.rows for n in r.notes]
        if notes:
            lines += ["", "## Notes", ""]
            lines += [f"- {scenario}: {note}" for scenario, note in notes]
        return "\n".join(lines) + "\n"

    def write(self, path: Path = REPORT_PATH) -> None:
        path.write_text(self.markdown())
