"""The one exception a module raises for a failure the person should read."""

from __future__ import annotations


class ModuleError(Exception):
    """A user-facing failure inside a module.

    :param message: shown to the person as is, so it must hold no secret or code.
    :param reason: a short code for the audit log (``wrong_code``, ``unavailable``...).
    :param detail: an optional plain-words diagnosis (clock skew).
    """

    def __init__(self, message: str, *, reason: str = "module_error", detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.detail = detail

    def __repr__(self) -> str:
        return f"ModuleError({self.message!r}, reason={self.reason!r})"
