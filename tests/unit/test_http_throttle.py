"""Throttling of wrong notification secrets, and the open-files budget of the HTTP server."""

from __future__ import annotations

import logging
from collections import Counter

import pytest

from sbps.config import HttpConfig
from sbps.core.errors import ConfigError
from sbps.publish.http.limits import FD_RESERVE, Limits
from sbps.publish.http.throttle import FailureThrottle


def test_wrong_guesses_are_throttled_per_address_and_overall(
        caplog: pytest.LogCaptureFixture) -> None:
    counts: Counter[str] = Counter()
    t = FailureThrottle(counts, rate=0.1, burst=5, global_rate=1.0, global_burst=30,
                        log_interval=60)
    caplog.set_level(logging.WARNING, logger="sbps.publish.http.throttle")
    admitted = 0
    for _ in range(3000):  # 3,000 guesses in the same instant, from one address
        if t.admit("192.0.2.1", 0.0):
            admitted += 1
            t.failed("192.0.2.1", 0.0)
    assert admitted == 5 and counts == {"wrong_secret": 5, "throttled": 2995}
    assert len(caplog.records) == 1
    # Another address still gets in, until the global bucket is empty too.
    others = sum(1 for i in range(100) if t.admit(f"192.0.2.{i + 2}", 0.0)
                 and t.failed(f"192.0.2.{i + 2}", 0.0) is None)
    assert others == 25  # 30 global tokens, 5 already taken
    assert not t.admit("192.0.2.1", 5.0)  # refilled 0.5 tokens for it: not enough
    assert t.admit("192.0.2.1", 10.0)  # one token after 10 s
    assert len(caplog.records) == 1  # one line per interval
    t.failed("192.0.2.1", 61.0)
    assert len(caplog.records) == 2 and "throttled" in caplog.records[1].getMessage()


def test_the_address_table_is_bounded() -> None:
    t = FailureThrottle(Counter(), max_peers=100, global_burst=1e9)
    for i in range(1000):
        t.failed(f"2001:db8::{i:x}", 0.0)
    assert len(t.peers) == 100


def test_connections_are_lowered_to_keep_the_reconcilers_reserve(
        caplog: pytest.LogCaptureFixture) -> None:
    cfg = HttpConfig(max_connections=2000, max_long_polls=1000)
    lim = Limits.from_config(cfg, nofile=1024, in_use=20)
    assert lim.max_connections == 1024 - FD_RESERVE - 20
    assert lim.max_long_polls == lim.max_connections // 2
    assert "lowered" in caplog.text
    roomy = Limits.from_config(cfg, nofile=65536, in_use=20)
    assert (roomy.max_connections, roomy.max_long_polls) == (2000, 1000)
    with pytest.raises(ConfigError) as err:
        Limits.from_config(cfg, nofile=FD_RESERVE + 20, in_use=20)
    assert err.value.key == "http.max_connections"
