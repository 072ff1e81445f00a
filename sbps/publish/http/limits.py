"""What the HTTP API may take from the process: file descriptors, connections, long polls.

Owns the open-files budget (the soft ``RLIMIT_NOFILE`` raised to the hard limit at start,
and ``FD_RESERVE`` descriptors the HTTP server can never take, kept for the reconciler's
S3 connections, cache files, tgtadm and configfs), the effective caps derived from
``http.max_connections`` / ``http.max_long_polls`` / ``http.header_timeout``, the long-poll
slots, and the counters of what was refused, with their Prometheus families. Must not
accept or close connections itself: ``guard.py`` does, under these caps.
"""

from __future__ import annotations

import logging
import os
import resource
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sbps.config import HttpConfig
from sbps.core.errors import ConfigError
from sbps.publish.http.errors import ApiError

log = logging.getLogger(__name__)

#: Descriptors kept for everything but HTTP: a pass holds S3 connections (stage.concurrency
#: x part_concurrency), open cache files, tgtadm pipes, configfs files and the log.
FD_RESERVE = 256
#: Where the soft limit goes when the hard limit is unlimited.
UNLIMITED_TARGET = 65536


def raise_nofile() -> int:
    """Raise the soft open-files limit to the hard one; returns the soft limit now in force.
    Under the shipped unit both are LimitNOFILE already (and setrlimit is filtered out)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = UNLIMITED_TARGET if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError) as exc:
            log.warning("cannot raise the open-files limit from %d to %d: %s", soft, target,
                        exc)
    return soft


def open_fds() -> int:
    """Descriptors open now (the listening socket, the log, the backend's files...)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 64


class Limits:
    """The caps in force and the counters of what they refused. One per HTTP server, built
    by the composition root; the app reads it through ``HttpDeps.limits``."""

    def __init__(self, max_connections: int = 512, max_long_polls: int = 128,
                 header_timeout: float = 10.0) -> None:
        self.max_connections = max_connections
        self.max_long_polls = max_long_polls
        self.header_timeout = header_timeout
        self.connections = 0
        self.long_polls = 0
        self.refused: Counter[str] = Counter()
        self.notify_rejected: Counter[str] = Counter()

    @classmethod
    def from_config(cls, cfg: HttpConfig, nofile: int | None = None,
                    in_use: int | None = None) -> Limits:
        """The configured caps, lowered (with a warning) so that open connections can never
        eat into ``FD_RESERVE``; a limit that leaves no room at all is a ConfigError."""
        if nofile is None:
            nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if nofile == resource.RLIM_INFINITY:
            nofile = UNLIMITED_TARGET
        room = nofile - FD_RESERVE - (open_fds() if in_use is None else in_use)
        conns = cfg.max_connections
        if room < 8:
            raise ConfigError("http.max_connections", str(conns),
                              f"the open-files limit ({nofile}) leaves no descriptors for HTTP "
                              f"beside the {FD_RESERVE} kept for the reconciler; raise "
                              "LimitNOFILE")
        if conns > room:
            log.warning("http.max_connections lowered from %d to %d: the open-files limit is "
                        "%d and %d descriptors are kept for the reconciler (raise "
                        "LimitNOFILE to allow more)", conns, room, nofile, FD_RESERVE)
            conns = room
        polls = min(cfg.max_long_polls, conns // 2)
        return cls(conns, polls, cfg.header_timeout)

    @contextmanager
    def long_poll(self) -> Iterator[None]:
        """A long-poll slot for the body of the ``with``; 503 when all are taken."""
        if self.long_polls >= self.max_long_polls:
            self.refused["long_polls"] += 1
            raise ApiError(503, "too_many_long_polls", f"{self.max_long_polls} long polls are "
                           "waiting already; retry, or poll without ?wait",
                           field="wait", headers={"Retry-After": "5"})
        self.long_polls += 1
        try:
            yield
        finally:
            self.long_polls -= 1


class LimitsCollector(Collector):
    """The HTTP limits' metrics (documented in docs/metrics.md), read at scrape time."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits

    def collect(self) -> Iterator[Metric]:
        lim = self.limits
        yield GaugeMetricFamily("sbps_http_connections", "HTTP connections open now.",
                                value=lim.connections)
        yield GaugeMetricFamily("sbps_http_connections_max", "The connection cap in force "
                                "(http.max_connections, lowered to the open-files budget).",
                                value=lim.max_connections)
        yield GaugeMetricFamily("sbps_http_long_polls", "Long polls waiting now.",
                                value=lim.long_polls)
        refused = CounterMetricFamily(
            "sbps_http_connections_refused", "HTTP connections or requests refused or closed "
            "by a limit.", labels=["reason"])
        for reason in ("limit", "evicted", "header_timeout", "long_polls", "bad_request"):
            refused.add_metric([reason], lim.refused[reason])
        yield refused
        notify = CounterMetricFamily(
            "sbps_notify_rejected", "Requests to /v1/notify/{secret} refused.",
            labels=["reason"])
        for reason in ("wrong_secret", "throttled"):
            notify.add_metric([reason], lim.notify_rejected[reason])
        yield notify
