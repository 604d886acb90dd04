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
import time
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


class ClientLog:
    """librdkafka's own log lines (the clients' ``logger`` setting), through stream-dec's logging.

    They go to the logger ``stream_dec.kafka.client`` one level lower than librdkafka
    rates them (its connection failures are ERROR lines; stream-dec's own warnings say
    what an outage means for the stream), and at most one line per facility every
    ``interval_s`` seconds: an unreachable broker is one line a minute, not twenty a
    second. Lines left out are counted in the next one.

    >>> client_log = ClientLog(interval_s=60)
    >>> logging.getLogger("stream_dec.kafka.client").setLevel(logging.CRITICAL)  # quiet doctest
    >>> for _ in range(3):
    ...     client_log.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#consumer-1", "Connect failed")
    >>> client_log.suppressed
    {'FAIL': 2}
    >>> logging.getLogger("stream_dec.kafka.client").setLevel(logging.NOTSET)
    """

    LOWER = {logging.CRITICAL: logging.ERROR, logging.ERROR: logging.WARNING, logging.WARNING: logging.INFO}

    def __init__(self, interval_s: float = 60.0) -> None:
        self.interval_s = interval_s
        self.logger = logging.getLogger("stream_dec.kafka.client")
        self.last: dict[str, float] = {}
        self.suppressed: dict[str, int] = {}

    def log(self, level: int, fmt: str, *args) -> None:
        """The method librdkafka calls: ``fmt % args`` is ``"FACILITY [client] message"``."""
        facility = str(args[0]) if args else ""
        now = time.monotonic()
        if now - self.last.get(facility, -self.interval_s) < self.interval_s:
            self.suppressed[facility] = self.suppressed.get(facility, 0) + 1
            return
        self.last[facility] = now
        left_out = self.suppressed.pop(facility, 0)
        suffix = f" ({left_out} similar lines left out)" if left_out else ""
        self.logger.log(self.LOWER.get(level, logging.DEBUG), fmt + suffix, *args)
