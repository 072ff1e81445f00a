"""A thread-safe token bucket shared by every download (and, separately, by re-hashing).

Owns rate limiting only. Callers in worker threads take tokens before moving bytes; the
bucket goes into debt instead of making a caller wait for a whole chunk's worth of tokens
to accumulate, so the long-run rate holds and large reads are never starved.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """``rate`` bytes per second (0: unlimited), bursts up to ``burst`` bytes."""

    def __init__(self, rate: int, *, burst: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst or max(rate, 1 << 20)
        self._clock = clock
        self._tokens = float(self.burst)
        self._stamp = clock()
        self._lock = threading.Lock()

    def delay(self, n: int) -> float:
        """Take ``n`` tokens; return how long the caller must sleep before using them."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= n
            return max(0.0, -self._tokens / self.rate)

    def take(self, n: int, stop: threading.Event | None = None) -> None:
        """Take ``n`` tokens, sleeping as needed; returns early once ``stop`` is set."""
        wait = self.delay(n)
        if wait > 0:
            if stop is not None:
                stop.wait(wait)
            else:
                time.sleep(wait)
