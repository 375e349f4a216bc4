"""Masking secrets in third-party libraries' log records, for every module at once.

Libraries log what they send: urllib3 logs each request URL (query string included) at
DEBUG, yubico_client logs its whole request URL. Modules declare what must never show
(:class:`secmod.hookspecs.LogRedaction`); the host installs one filter per named logger
that applies every module's patterns to the formatted message. One filter, not one per
module: a filter that rewrites a record first would otherwise hide it from the next.

Loggers are process-wide, so the filters are too: patterns only accumulate (several
hosts in one process, as in tests, share them) and nothing is ever removed.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable

from secmod.hookspecs import LogRedaction

__all__ = ["REDACTED", "redact_library_logs"]

REDACTED = "[redacted]"

_lock = threading.Lock()
_filters: dict[str, _Redactor] = {}


class _Redactor(logging.Filter):
    """Replaces every match of its patterns in a record's message; never drops a record."""

    def __init__(self) -> None:
        super().__init__()
        self.patterns: tuple[re.Pattern[str], ...] = ()

    def add(self, pattern: re.Pattern[str]) -> None:
        if pattern not in self.patterns:
            # Replaced, not appended in place: a record being filtered in another
            # thread keeps iterating over the tuple it started with.
            self.patterns = (*self.patterns, pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a broken format string is the library's; keep its text only
            text = str(record.msg)
            record.args = None
        masked = text
        for pattern in self.patterns:
            masked = pattern.sub(REDACTED, masked)
        if masked != text:
            record.msg, record.args = masked, None
        return True


def redact_library_logs(redactions: Iterable[LogRedaction]) -> None:
    """Make sure each redaction's loggers carry the shared filter with its pattern."""
    with _lock:
        for redaction in redactions:
            pattern = re.compile(redaction.pattern)
            for name in redaction.loggers:
                redactor = _filters.get(name)
                if redactor is None:
                    redactor = _filters[name] = _Redactor()
                    logging.getLogger(name).addFilter(redactor)
                redactor.add(pattern)
