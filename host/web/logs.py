"""Log formats for ``secmod serve``: uvicorn's plain text, or one JSON object per line.

JSON lines suit log shippers (Loki, Elasticsearch, journald's JSON export): each line has
``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, ``process`` and, for an
error, ``exception`` with the type only (an exception's text may quote what it was given).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = ["JsonLinesFormatter", "LogFormat", "log_config"]

LogFormat = Literal["text", "json"]


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
        return json.dumps(entry, ensure_ascii=False)


def log_config(log_format: LogFormat, *, level: str = "INFO") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for uvicorn and secmod's own loggers."""
    if log_format == "json":
        formatter: dict[str, Any] = {"()": f"{__name__}.JsonLinesFormatter"}
        access: dict[str, Any] = formatter
    else:
        formatter = {
            "()": "uvicorn.logging.DefaultFormatter",
            "fmt": "%(levelprefix)s %(name)s: %(message)s",
        }
        access = {
            "()": "uvicorn.logging.AccessFormatter",
            "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s',
        }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter, "access": access},
        "filters": {"hide_query": {"()": "secmod.host.web.HideQueryStrings"}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            },
            "access": {
                "class": "logging.StreamHandler",
                "formatter": "access",
                "stream": "ext://sys.stdout",
                "filters": ["hide_query"],
            },
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": ["access"], "level": level, "propagate": False},
            "secmod": {"handlers": ["default"], "level": level, "propagate": False},
        },
    }
