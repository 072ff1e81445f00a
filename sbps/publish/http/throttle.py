"""Throttling of failed guesses at a secret in a URL (``/v1/notify/{secret}``).

Owns token buckets per source address (a bounded table, least recently seen dropped first)
plus one global bucket against guesses spread over many addresses, the counters of what
was rejected, and a summary log line at most once per ``log_interval``. A failed guess
takes a token from both buckets; while either is empty, a request is refused (429)
before the secret is even compared. A right secret takes nothing. Must not compare
secrets: the caller does, in constant time, and reports failures here.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass
class Bucket:
    """``burst`` tokens, refilled at ``rate`` per second."""

    rate: float
    burst: float
    tokens: float
    at: float

    def refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now


class FailureThrottle:
    """``admit(peer, now)`` before checking; ``failed(peer, now)`` after a wrong secret."""

    def __init__(self, counts: Counter[str], *, name: str = "notify", rate: float = 0.1,
                 burst: float = 5, global_rate: float = 1.0, global_burst: float = 30,
                 max_peers: int = 4096, log_interval: float = 60.0) -> None:
        self.counts = counts
        self.name = name
        self.rate, self.burst, self.max_peers = rate, burst, max_peers
        self.everyone = Bucket(global_rate, global_burst, global_burst, 0.0)
        self.peers: OrderedDict[str, Bucket] = OrderedDict()
        self.log_interval = log_interval
        self._next_log: float | None = None
        self._since: Counter[str] = Counter()
        self._sources: set[str] = set()

    def _bucket(self, peer: str, now: float) -> Bucket:
        b = self.peers.get(peer)
        if b is None:
            b = self.peers[peer] = Bucket(self.rate, self.burst, self.burst, now)
            while len(self.peers) > self.max_peers:
                self.peers.popitem(last=False)
        else:
            self.peers.move_to_end(peer)
        b.refill(now)
        return b

    def admit(self, peer: str, now: float) -> bool:
        """Whether a request from ``peer`` may be checked at all; a refusal is counted."""
        self.everyone.refill(now)
        mine = self.peers.get(peer)
        if mine is not None:
            mine.refill(now)
        if self.everyone.tokens >= 1 and (mine is None or mine.tokens >= 1):
            return True
        self._record("throttled", peer, now)
        return False

    def failed(self, peer: str, now: float) -> None:
        """A wrong secret from ``peer``: one token less for it and for everyone."""
        mine = self._bucket(peer, now)
        mine.tokens = max(0.0, mine.tokens - 1)
        self.everyone.tokens = max(0.0, self.everyone.tokens - 1)
        self._record("wrong_secret", peer, now)

    def _record(self, reason: str, peer: str, now: float) -> None:
        self.counts[reason] += 1
        self._since[reason] += 1
        if len(self._sources) < 1000:
            self._sources.add(peer)
        if self._next_log is not None and now < self._next_log:
            return
        wrong, throttled = self._since["wrong_secret"], self._since["throttled"]
        log.warning("%s: %d wrong secrets and %d throttled attempts from %d addresses "
                    "(e.g. %s) since the last such line; the next in %.0f s at the earliest",
                    self.name, wrong, throttled, len(self._sources), peer, self.log_interval,
                    extra={"peer": peer, "wrong_secret": wrong, "throttled": throttled})
        self._since.clear()
        self._sources.clear()
        self._next_log = now + self.log_interval
