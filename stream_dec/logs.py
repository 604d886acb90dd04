"""Logging setup: plain text or one JSON object per line on stderr.

Structured fields ride on a record's ``fields`` attribute
(``log.info("stats", extra={"fields": {...}})``) and become keys of the JSON line.

>>> import logging
>>> record = logging.LogRecord("stream_dec", logging.INFO, __file__, 1, "stats", None, None)
>>> record.fields = {"rate": 10.0}
>>> JsonFormatter().format(record).startswith('{"ts":')
True
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime, timezone

import orjson


class JsonFormatter(logging.Formatter):
    """Formats each record as ``{"ts", "level", "logger", "msg", **fields}``."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure_logging(level: str, fmt: str = "text") -> None:
    """Send stream-dec's logs to stderr as ``text`` or ``json`` lines."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
