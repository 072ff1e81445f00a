"""The crash detector: a daemon that exited by itself, or an exception logged in any format.

A crash is any of:

- the worker's process ended although the test did not stop it (``exited``: checked before
  every deliberate kill or stop, and at the end of a scenario);
- a JSON log line at warning level or above carrying an ``exc`` field (``log.exception``,
  ``exc_info=``, asyncio's "Task exception was never retrieved", aiohttp's "Error handling
  request"), or any line whose message holds a traceback;
- raw traceback text in the daemon's output (an exception before logging is set up, the
  text log format, a dying thread, the interpreter's last words).

Its negative controls (``test_controls.py``) plant real crashes inside the daemon under
test: an exception in a later pass (logged as JSON), one in the first pass (raw traceback)
and an ``os._exit`` (no log at all). Must not change what it inspects.
"""

from __future__ import annotations

import json
from typing import Any

from tests.fixtures.marshal import Worker

RAW = ("Traceback (most recent call last)", "Task exception was never retrieved",
       "Exception in thread", "Fatal Python error", "Exception ignored in")


def _doc(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        doc = json.loads(line)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def logged_exceptions(text: str) -> list[str]:
    """Each exception in a daemon's output, one entry per exception."""
    found = []
    for line in text.splitlines():
        doc = _doc(line)
        if doc is not None:
            msg = str(doc.get("msg", ""))
            exc = str(doc.get("exc") or "")
            if doc.get("level") in ("debug", "info") and RAW[0] not in msg:
                continue  # aiohttp logs a client's bad request at debug, with its exc_info
            if exc or RAW[0] in msg:
                last = (exc or msg).strip().splitlines()[-1:] or [""]
                found.append(" ".join(f"{doc.get('logger')}: {msg[:120]}: {last[0][:160]}"
                                      .split()))
        elif line.lstrip().startswith(RAW):
            found.append(line.strip()[:200])
    return found


def exited(w: Worker) -> list[str]:
    """The worker's process has ended, and the test has not stopped it yet."""
    if w.proc is not None and w.proc.poll() is not None:
        return [f"the daemon exited by itself (status {w.proc.returncode})"]
    return []


def crashes(w: Worker) -> list[str]:
    """Every crash of a worker so far: call it before stopping the worker."""
    return exited(w) + logged_exceptions(w.log())
