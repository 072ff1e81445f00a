"""Logging set-up for the daemon and the CLI: text or JSON lines, level changes at run time.

Owns handler and formatter configuration, and the rate limit of repeated identical lines
(``RepeatFilter``, on the process's one handler: a flood of one line, such as asyncio's
``accept()`` error, costs one line per interval, not gigabytes). Modules log through
``logging.getLogger(__name__)`` and pass context (image id, IQN, action) as ``extra``
fields, which both formats print. Must not log secrets: nothing here sees them.
"""

from __future__ import annotations

import enum
import json
import logging
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TextIO


class LogLevel(enum.StrEnum):
    """``log.level``: the level at start (``set_level`` changes it at run time)."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class LogFormat(enum.StrEnum):
    """``log.format``: text lines, or one JSON object per line."""

    TEXT = "text"
    JSON = "json"


#: Attributes of every LogRecord; anything else on a record came in through ``extra``.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message",
                                                                              "asctime"}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = f"{stamp}Z {record.levelname:<7} {record.name}: {record.getMessage()}"
        extras = _extras(record)
        if extras:
            line += " " + " ".join(f"{k}={v}" for k, v in sorted(extras.items()))
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3), "level": record.levelname.lower(),
            "logger": record.name, "msg": record.getMessage()}
        out.update({k: v if isinstance(v, (int, float, bool, type(None))) else str(v)
                    for k, v in _extras(record).items()})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, sort_keys=False)


class RepeatFilter(logging.Filter):
    """Identical lines (same logger, level, message, exception type and fields) within
    ``interval`` seconds of the first pass once; the first of them after the interval
    passes with ``[repeated N times in the last S s]`` (and ``repeated=N``) appended. The
    count of a flood that stops is told by its next occurrence. At most ``max_keys``
    distinct lines are remembered (least recent forgotten first)."""

    def __init__(self, interval: float = 30.0, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 1024) -> None:
        super().__init__()
        self.interval = interval
        self.clock = clock
        self.max_keys = max_keys
        self._seen: OrderedDict[tuple[Any, ...], list[float]] = OrderedDict()

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else ""
        # The structured fields count too: two lines about different objects are not
        # repeats even where their text is the same.
        fields = tuple(sorted((k, repr(v)) for k, v in _extras(record).items()))
        key = (record.name, record.levelno, record.getMessage(), exc, fields)
        now = self.clock()
        seen = self._seen.get(key)
        if seen is not None and now < seen[0] + self.interval:
            seen[1] += 1
            return False
        if seen is not None and seen[1]:
            repeated = int(seen[1])
            record.msg = (f"{record.getMessage()} [repeated {repeated} times in the last "
                          f"{now - seen[0]:.0f} s]")
            record.args = None
            record.repeated = repeated
        self._seen[key] = [now, 0]
        self._seen.move_to_end(key)
        while len(self._seen) > self.max_keys:
            self._seen.popitem(last=False)
        return True


def setup(level: str = LogLevel.INFO, fmt: str = LogFormat.TEXT,
          stream: TextIO | None = None) -> None:
    """Replace the root handlers with one that writes ``fmt`` lines to ``stream``, with
    repeated identical lines rate-limited. ``level`` and ``fmt`` take the members or their
    text."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if LogFormat(fmt) is LogFormat.JSON
                         else TextFormatter())
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    set_level(level)
    # Library chatter (boto's per-request lines) would drown the daemon's own at debug.
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, root.level))


def set_level(level: str) -> None:
    value = logging.getLevelName(level.upper())
    if not isinstance(value, int):
        raise ValueError(f"unknown log level {level!r}")
    logging.getLogger().setLevel(value)
