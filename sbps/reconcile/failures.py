"""Passes that fail with a bug: logged once, counted, backed off; never the process's end.

Owns the bookkeeping of a pass that raised something other than an SbpsError (a bug, or an
input nobody foresaw): its traceback is logged once per distinct failure (type, message
and place), the reconciler reports it in the status (``Status.bug``, metric
``sbps_reconcile_runs_total{result="bug"}``), and the next pass waits an exponential
backoff so a failure that repeats does not spin. Must not decide anything about images,
the target or DNS (safety invariant 10: a failed pass changes nothing by itself).
"""

from __future__ import annotations

import logging
import traceback

log = logging.getLogger(__name__)


class PassFailures:
    def __init__(self, backoff_initial: float, backoff_max: float) -> None:
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.consecutive = 0
        self._logged: set[str] = set()

    def record(self, exc: BaseException) -> str:
        """Account for one failed pass; returns the one-line reason for the status."""
        self.consecutive += 1
        frames = traceback.extract_tb(exc.__traceback__)
        where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
        reason = f"{type(exc).__name__}: {str(exc)[:200]}"
        key = f"{reason} at {where}"
        if key not in self._logged:
            if len(self._logged) >= 100:  # bounded: a message that varies every time
                self._logged.clear()
            self._logged.add(key)
            log.error("pass failed with a bug (the daemon keeps running; next pass in %.0f s):"
                      " %s", self.delay(), reason, exc_info=exc, extra={"code": "bug"})
        else:
            log.warning("pass failed again: %s (%d in a row; traceback logged before)",
                        reason, self.consecutive, extra={"code": "bug"})
        return f"pass failed: {reason}"

    def succeeded(self) -> None:
        self.consecutive = 0

    def delay(self) -> float:
        """How long to wait before the next pass (0 after a pass that did not fail)."""
        if not self.consecutive:
            return 0.0
        return min(self.backoff_max, self.backoff_initial * 2 ** (self.consecutive - 1))
