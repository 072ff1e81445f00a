"""Documents from outside that were rejected, reported once each and counted.

Owns the ``Rejections`` sink the components that decode outside documents outside the
catalog (claim objects, Kubernetes and PowerDNS answers, the tenant map, token-command
output) report to: a rejected document is logged once when it appears and once when it is
readable again, and counted once per appearance by source and reason; the daemon's metrics
read the counts (``sbps_documents_rejected_total``, beside the catalog's own). One sink is
built in the composition root and passed to each component; thread-safe (claims are read
in executor threads). Must not decode anything or decide what a component does with a
rejected document.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Mapping

from sbps.core.errors import InputError

log = logging.getLogger(__name__)

#: Distinct documents remembered as rejected; beyond it the oldest is forgotten (and would
#: be logged again if it were still bad), so a flood of bad names cannot grow memory.
CAPACITY = 4096


class Rejections:
    def __init__(self, logger: logging.Logger = log, capacity: int = CAPACITY) -> None:
        self._log = logger
        self._capacity = capacity
        self._lock = threading.Lock()
        self._current: dict[tuple[str, str], str] = {}  # (source, obj) -> code
        self._counts: Counter[tuple[str, str]] = Counter()

    def reject(self, source: str, err: InputError) -> None:
        """``err`` (a DecodeError or another InputError naming the object) was rejected."""
        key = (source, err.obj)
        code = err.code
        with self._lock:
            if self._current.get(key) == code:
                return
            self._current[key] = code
            self._counts[(source, code)] += 1
            while len(self._current) > self._capacity:
                self._current.pop(next(iter(self._current)))
        self._log.warning("rejected %s document %s: %s: %s (%s)", source, err.obj, err.field,
                          err.reason, code, extra={"source": source, "obj": err.obj,
                                                   "code": code})

    def accepted(self, source: str, obj: str) -> None:
        """The document ``obj`` of ``source`` was read fine (again)."""
        with self._lock:
            code = self._current.pop((source, obj), None)
        if code is not None:
            self._log.info("%s document %s is readable again", source, obj,
                           extra={"source": source, "obj": obj})

    def accepted_all(self, source: str) -> None:
        """Every document of ``source`` was read fine (a whole exchange succeeded)."""
        with self._lock:
            gone = [obj for (src, obj) in self._current if src == source]
        for obj in gone:
            self.accepted(source, obj)

    def counts(self) -> Mapping[tuple[str, str], int]:
        """(source, reason) -> documents rejected since start."""
        with self._lock:
            return dict(self._counts)
