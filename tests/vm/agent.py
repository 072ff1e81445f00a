"""The command agent inside the test guest (guest python3, standard library only).

Owns the guest end of the command channel: a TCP server (reached through a qemu hostfwd bound
to the host's 127.0.0.1) that runs commands, starts and signals background processes, and
answers one JSON object per request line. Every request carries the token given on the
kernel command line (``sbps.token=``). Must not: import anything outside the standard library
(it runs before and independently of the project's dependencies).
"""

from __future__ import annotations

import argparse
import json
import signal
import socketserver
import subprocess
import threading
from typing import Any

BASE_ENV = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "PYTHONPATH": "/src:/opt/sbps-deps",
    # The dependencies were compiled at build time; the source share is read-only.
    "PYTHONDONTWRITEBYTECODE": "1",
}


def _token() -> str:
    with open("/proc/cmdline") as f:
        for word in f.read().split():
            if word.startswith("sbps.token="):
                return word.split("=", 1)[1]
    return ""


class Agent:
    def __init__(self, token: str) -> None:
        self.token = token
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.lock = threading.Lock()

    @staticmethod
    def _env(extra: dict[str, str] | None) -> dict[str, str]:
        return {**BASE_ENV, **(extra or {})}

    def op_ping(self, req: dict[str, Any]) -> Any:
        return "pong"

    def op_run(self, req: dict[str, Any]) -> Any:
        try:
            done = subprocess.run(req["argv"], env=self._env(req.get("env")),
                                  cwd=req.get("cwd") or "/", capture_output=True,
                                  timeout=req.get("timeout", 600),
                                  input=(req.get("input") or "").encode())
        except subprocess.TimeoutExpired as exc:
            return {"rc": None, "stdout": (exc.stdout or b"").decode(errors="replace"),
                    "stderr": (exc.stderr or b"").decode(errors="replace"), "timeout": True}
        return {"rc": done.returncode, "stdout": done.stdout.decode(errors="replace"),
                "stderr": done.stderr.decode(errors="replace")}

    def op_spawn(self, req: dict[str, Any]) -> Any:
        log = open(req["log"], "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(req["argv"], env=self._env(req.get("env")),
                                    cwd=req.get("cwd") or "/", stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            log.close()
        with self.lock:
            self.procs[proc.pid] = proc
        return proc.pid

    def _proc(self, req: dict[str, Any]) -> subprocess.Popen[bytes]:
        with self.lock:
            return self.procs[int(req["pid"])]

    def op_poll(self, req: dict[str, Any]) -> Any:
        return self._proc(req).poll()

    def op_signal(self, req: dict[str, Any]) -> Any:
        proc = self._proc(req)
        if proc.poll() is None:
            proc.send_signal(int(req.get("signal", signal.SIGTERM)))
        return None

    def op_wait(self, req: dict[str, Any]) -> Any:
        try:
            return self._proc(req).wait(req.get("seconds", 60))
        except subprocess.TimeoutExpired:
            return None

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        if req.get("token") != self.token:
            return {"ok": False, "error": "bad token"}
        method = getattr(self, f"op_{req.get('op')}", None)
        if method is None:
            return {"ok": False, "error": f"unknown op {req.get('op')!r}"}
        try:
            return {"ok": True, "result": method(req)}
        except Exception as exc:  # reported to the host, which raises
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def serve(port: int) -> None:
    agent = Agent(_token())

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            for line in self.rfile:
                try:
                    reply = agent.handle(json.loads(line))
                except ValueError as exc:
                    reply = {"ok": False, "error": f"bad request: {exc}"}
                self.wfile.write(json.dumps(reply).encode() + b"\n")
                self.wfile.flush()

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.daemon_threads = True
    with socketserver.ThreadingTCPServer(("0.0.0.0", port), Handler) as server:
        print(f"sbps-vm: agent listening on port {port}", flush=True)
        server.serve_forever()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=7000)
    args = parser.parse_args()
    serve(args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
