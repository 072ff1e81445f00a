"""Fidelity of the configfs emulation: the same rtslib operations (Debian's rtslib-fb 2.1.75 on
both sides) on the emulation (host) and on the real kernel (guest) must leave the same tree
of names and values, and rtslib must dump the same configuration from both.

Every difference is reported in ``fidelity-report.txt`` (pytest's tmp dir) and printed.
Differences in what cannot matter are listed with the reason (``IGNORED``); any other
difference fails the test.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from configfs import mounted
from tests.vm.qemu import Guest

# Software emulation: the guest build and boot land in the first test's setup.
pytestmark = pytest.mark.timeout(1800)

OPS = Path(__file__).resolve().parent / "guest" / "fidelity_ops.py"
DEBIAN_PY = "/usr/bin/python3"

#: (pattern on the tree path, what it covers, why it cannot matter).
IGNORED: tuple[tuple[str, str], ...] = (
    (r"^version$", "names the running kernel release"),
    (r"^dbroot$", "the test points the emulation's dbroot at a scratch folder"),
    (r"^iscsi/cpus_allowed_list$", "lists the machine's CPUs (1 in the guest)"),
    (r"^core/fileio_\d+/hba_info$", "the kernel's HBA index counts every HBA since boot"),
    (r"/fabric_statistics(/|$)", "iSCSI MIB statistics: neither rtslib nor sbps reads them"),
    (r"/statistics/.+/(inst|indx|dev|port|port_auth_indx|role|creation_time|dev_name|"
     r"att_count|port_ident)$", "statistics indexes, instance numbers, times and "
     "per-session values; the counters sbps reads (read_mbytes, in_cmds) have the same "
     "names on both and their values are checked on the real kernel by the daemon test"),
)


def normalize_tree(tree: dict[str, Any]) -> dict[str, Any]:
    """rtslib gives LUN and mapped-LUN links random names: key them by their folder."""
    out = {}
    for path, entry in tree.items():
        parent = os.path.dirname(path)
        if entry.get("kind") == "link" and re.search(r"/lun_\d+$", parent):
            path = f"{parent}/<link>"
        out[path] = entry
    return out


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """rtslib's dump as ``path -> leaf``; lists of objects keyed by their name, since their
    order is the order configfs lists folders in, which carries no meaning."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}/{key}"))
        return out
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        out = {}
        for item in value:
            ident = next((str(item[k]) for k in ("name", "wwn", "node_wwn", "tag", "index",
                                                  "ip_address") if k in item), "?")
            if "port" in item and "ip_address" in item:
                ident = f"{item['ip_address']}:{item['port']}"
            out.update(flatten(item, f"{prefix}[{ident}]"))
        return out
    return {prefix: value}


def classify(path: str) -> str | None:
    return next((why for pattern, why in IGNORED if re.search(pattern, path)), None)


def compare(kernel: dict[str, Any], emu: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(differences that matter, ignored differences with reasons)."""
    matters: list[str] = []
    ignored: list[str] = []
    kt, et = normalize_tree(kernel["tree"]), normalize_tree(emu["tree"])
    for path in sorted(kt.keys() | et.keys()):
        k, e = kt.get(path), et.get(path)
        if k == e:
            continue
        what = ("only on the kernel" if e is None else "only on the emulation" if k is None
                else f"kernel {json.dumps(k)[:160]} / emulation {json.dumps(e)[:160]}")
        why = classify(path)
        (ignored if why else matters).append(f"tree {path}: {what}" + (f"  [{why}]"
                                                                       if why else ""))
    kd, ed = flatten(kernel["dump"]), flatten(emu["dump"])
    for path in sorted(kd.keys() | ed.keys()):
        if kd.get(path) != ed.get(path):
            line = (f"rtslib dump {path}: kernel {kd.get(path)!r} / emulation "
                    f"{ed.get(path)!r}")
            if re.search(r"/(luns|mapped_luns)\[\d+\]/alias$", path):
                ignored.append(f"{line}  [the random link name rtslib gives a LUN]")
            else:
                matters.append(line)
    if kernel["steps"] != emu["steps"]:
        matters.append(f"steps: kernel {kernel['steps']} / emulation {emu['steps']}")
    return matters, ignored


def run_on_emulation(tmp_path: Path) -> dict[str, Any]:
    if not Path(DEBIAN_PY).exists() or not Path(
            "/usr/lib/python3/dist-packages/rtslib_fb").is_dir():
        pytest.skip("Debian python3-rtslib-fb is not installed (scripts/install-deps)")
    dbroot = tmp_path / "dbroot"
    dbroot.mkdir()
    with mounted() as m:
        Path(m.target, "dbroot").write_text(str(dbroot))
        proc = subprocess.run([DEBIAN_PY, str(OPS), m.target, str(tmp_path / "work")],
                              capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    return result


def test_emulation_matches_the_kernel(guest: Guest, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    emu = run_on_emulation(tmp_path)
    done = guest.run(["python3", f"/src/{OPS.relative_to(OPS.parents[3])}",
                      "/sys/kernel/config/target", "/tmp/fidelity"])
    kernel = json.loads(done.stdout.splitlines()[-1])
    assert kernel["rtslib"] == emu["rtslib"] == "/usr/lib/python3/dist-packages/rtslib_fb"
    assert len(kernel["tree"]) > 300, "the kernel tree is suspiciously small"
    matters, ignored = compare(kernel, emu)
    report = tmp_path / "fidelity-report.txt"
    lines = [f"configfs fidelity: emulation vs kernel "
             f"{kernel['tree']['version']['value'].split(' on ')[-1].strip()}",
             f"{len(kernel['tree'])} kernel entries, {len(emu['tree'])} emulation entries",
             f"{len(matters)} differences that matter:", *matters,
             f"{len(ignored)} differences ignored (with the reason):", *ignored]
    report.write_text("\n".join(lines) + "\n")
    with capsys.disabled():
        print(f"\n{report}:\n" + "\n".join(lines[:3 + len(matters)]) +
              f"\n{len(ignored)} ignored differences listed in the report")
    assert not matters, "\n".join(matters)
