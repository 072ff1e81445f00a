"""The rate limit of repeated identical log lines (``sbps.core.logs.RepeatFilter``)."""

from __future__ import annotations

import io
import logging

from sbps.core import logs


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _logger(clock: Clock) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.TextFormatter())
    handler.addFilter(logs.RepeatFilter(interval=30, clock=clock))
    log = logging.getLogger("test.repeat")
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.INFO)
    return log, out


def test_a_flood_of_one_line_costs_one_line_per_interval() -> None:
    clock = Clock()
    log, out = _logger(clock)
    for _ in range(10_000):
        try:
            raise OSError(24, "Too many open files")
        except OSError:
            log.exception("socket.accept() out of system resource")
    log.warning("something else")
    clock.now += 31
    log.exception("socket.accept() out of system resource", exc_info=OSError(24, "x"))
    lines = [x for x in out.getvalue().splitlines() if " test.repeat: " in x]
    assert len(lines) == 3, lines
    assert "repeated 9999 times in the last 31 s" in lines[2] and "repeated=9999" in lines[2]
    assert "something else" in lines[1]


def test_distinct_lines_are_never_merged() -> None:
    clock = Clock()
    log, out = _logger(clock)
    for i in range(50):
        log.info("image %s exported", i)
    assert out.getvalue().count("exported") == 50


def test_the_same_text_about_different_objects_is_not_a_repeat() -> None:
    clock = Clock()
    log, out = _logger(clock)
    for i in range(20):
        log.info("applied claim: a new image", extra={"backstore": f"b{i}"})
    log.info("applied claim: a new image", extra={"backstore": "b0"})
    assert out.getvalue().count("applied claim") == 20


def test_the_shipped_setup_installs_it() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.setup("info", "text", io.StringIO())
        assert any(isinstance(f, logs.RepeatFilter) for f in root.handlers[0].filters)
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
