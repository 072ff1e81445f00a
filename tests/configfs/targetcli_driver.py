"""Runs Debian's unmodified /usr/bin/targetcli against the emulation, inside ``unshare``.

Owns: the private-namespace setup (tmpfs over /sys/kernel and /etc/rtslib-fb-target, the
emulation mounted at /sys/kernel/config) and the command sequence; prints a JSON report.
Must not: be run outside a private mount namespace (it mounts over system paths).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from configfs import mounted


def main(workdir: str, backing: str, iqn: str) -> int:
    for path in ("/sys/kernel", "/etc/rtslib-fb-target"):
        os.makedirs(path, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", path], check=True)
    os.makedirs("/sys/kernel/config")
    # targetcli asks the system bus for tcmu-runner handlers; give it a private, empty bus.
    bus = os.path.join(workdir, "bus")
    dbus = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--print-address",
                             f"--address=unix:path={bus}"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    assert dbus.stdout is not None
    dbus.stdout.readline()
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": workdir, "LANG": "C.UTF-8",
           "TERM": "dumb", "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={bus}"}
    try:
        return _run(workdir, backing, iqn, env)
    finally:
        dbus.terminate()
        dbus.wait()


def _run(workdir: str, backing: str, iqn: str, env: dict[str, str]) -> int:
    savefile = os.path.join(workdir, "saved.json")
    steps = [
        ["/backstores/fileio", "create", "name=img1", f"file_or_dev={backing}", "size=1M",
         "write_back=false"],
        ["/iscsi", "create", iqn],
        [f"/iscsi/{iqn}/tpg1/luns", "create", "/backstores/fileio/img1", "lun=3"],
        [f"/iscsi/{iqn}/tpg1/portals", "delete", "0.0.0.0", "3260"],
        [f"/iscsi/{iqn}/tpg1/portals", "create", "127.0.0.1", "3260"],
        ["saveconfig", f"savefile={savefile}"],
        ["ls"],
        ["clearconfig", "confirm=True"],
        ["ls"],
        ["restoreconfig", f"savefile={savefile}"],
        ["ls"],
    ]
    report: list[dict[str, object]] = []
    with mounted("/sys/kernel/config") as handle:
        for step in steps:
            proc = subprocess.run(["/usr/bin/targetcli", *step], env=env,
                                  capture_output=True, text=True, timeout=120, check=False)
            report.append({"cmd": step, "rc": proc.returncode, "out": proc.stdout,
                           "err": proc.stderr})
        counters = handle.control.counters()
    saved = Path(savefile).read_text() if os.path.exists(savefile) else ""
    print(json.dumps({"steps": report, "saved": saved, "writes": counters["total"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:4]))
