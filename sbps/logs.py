"""Logging set-up for the daemon and the CLI: text or JSON lines, level changes at run time.

Owns handler and formatter configuration only. Modules log through
``logging.getLogger(__name__)`` and pass context (image id, IQN, action) as ``extra``
fields, which both formats print. Must not log secrets: nothing here sees them.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

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


def setup(level: str = "info", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Replace the root handlers with one that writes ``fmt`` lines to ``stream``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
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
