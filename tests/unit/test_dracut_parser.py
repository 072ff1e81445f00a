"""The initramfs module's shell parser (contrib/dracut/90sbps/sbps-lib.sh) against the one
file of root=sbps-s3 test vectors, under the system sh and under busybox sh (the shell of
the minimal initramfs); the Python parser passes the same file (test_bootparams_vectors)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
LIB = REPO / "contrib" / "dracut" / "90sbps" / "sbps-lib.sh"
VECTORS = json.loads((REPO / "tests" / "vectors" / "bootparams.json").read_text())
SHELLS = [pytest.param(["sh"], id="sh"),
          pytest.param(["busybox", "sh"], id="busybox", marks=pytest.mark.skipif(
              shutil.which("busybox") is None, reason="busybox is not installed"))]


def run(shell: list[str], text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*shell, str(LIB), "parse", text], capture_output=True, text=True,
                          timeout=30, check=False)


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("case", VECTORS["valid"], ids=[c["name"] for c in VECTORS["valid"]])
def test_valid_vector(shell: list[str], case: dict[str, Any]) -> None:
    done = run(shell, case["input"])
    assert done.returncode == 0, done.stderr
    got = dict(line.split("=", 1) for line in done.stdout.splitlines())
    want = case["expect"]
    assert got == {"path": want["path"], "etag": want["etag"],
                   "iqn_prefix": want["iqn_prefix"], "srv_name": want["srv_name"],
                   "timeout": str(want["timeout"]), "ramroot": "1" if want["ramroot"] else "0",
                   "warning": got["warning"] if want["warning"] else "",
                   "serial": want["serial"], "wwid": want["wwid"]}
    assert bool(got["warning"]) is want["warning"]


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("case", VECTORS["invalid"],
                         ids=[c["name"] for c in VECTORS["invalid"]])
def test_invalid_vector_names_the_field(shell: list[str], case: dict[str, Any]) -> None:
    done = run(shell, case["input"])
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith(f"root=: {case['field']}: "), done.stderr
