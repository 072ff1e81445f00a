"""Runs Debian's unmodified /usr/bin/targetcli on a fresh emulation, then an optional command.

Run through ``run()``: ``unshare --mount --pid --fork --mount-proc --propagation private``
starts this file, which puts a tmpfs over /sys/kernel and /etc/rtslib-fb-target (the host's
saved config is never touched), mounts a fresh emulation at /sys/kernel/config, starts a
private D-Bus for targetcli, runs each step as one ``targetcli`` process (as the field agent
does), then runs ``post`` (``{mount}``/``{control}`` replaced by the emulation's mount point
and control socket) while the emulation is still mounted, and prints
``{"steps": [{cmd, rc, out, err, seconds}], "post": {rc, out, err}}``. The emulation cannot
be shared with the caller: it accepts absolute symlinks only under its own mount point.
Must not: run outside a private mount namespace (it mounts over system paths).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from configfs import mounted

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(workdir: str, steps_json: str, post_json: str) -> int:
    for path in ("/sys/kernel", "/etc/rtslib-fb-target"):
        os.makedirs(path, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", path], check=True)
    os.makedirs("/sys/kernel/config")
    bus = os.path.join(workdir, "bus")
    dbus = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--print-address",
                             f"--address=unix:path={bus}"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    assert dbus.stdout is not None
    dbus.stdout.readline()
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": workdir, "LANG": "C.UTF-8",
           "TERM": "dumb", "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={bus}"}
    report: dict[str, object] = {}
    try:
        with mounted("/sys/kernel/config") as handle:
            steps = []
            for step in json.loads(steps_json):
                started = time.monotonic()
                proc = subprocess.run(["/usr/bin/targetcli", *step], env=env,
                                      capture_output=True, text=True, timeout=300,
                                      check=False)
                steps.append({"cmd": step, "rc": proc.returncode, "out": proc.stdout,
                              "err": proc.stderr, "seconds": time.monotonic() - started})
            report["steps"] = steps
            post = [a.replace("{mount}", handle.root).replace("{control}",
                                                               handle.control_path)
                    for a in json.loads(post_json)]
            if post:
                proc = subprocess.run(post, capture_output=True, text=True, timeout=600,
                                      check=False, env={**os.environ, "PYTHONPATH": ROOT})
                report["post"] = {"rc": proc.returncode, "out": proc.stdout,
                                  "err": proc.stderr}
    finally:
        dbus.terminate()
        dbus.wait()
    print(json.dumps(report))
    return 0


def run(workdir: str, steps: list[list[str]], post: list[str] | None = None,
        timeout: float = 3600) -> dict[str, Any]:
    """Run ``steps`` (then ``post``) in a fresh private namespace; returns the report."""
    here = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.run(
        ["unshare", "--mount", "--pid", "--fork", "--mount-proc", "--propagation", "private",
         sys.executable, os.path.join(here, "lio_targetcli.py"), workdir, json.dumps(steps),
         json.dumps(post or [])],
        capture_output=True, text=True, timeout=timeout, check=False, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT})
    if proc.returncode != 0:
        raise RuntimeError(f"targetcli driver failed: {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    return result


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:4]))
