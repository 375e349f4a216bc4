"""The exceptions a module raises: a failure the person should read, or a provider outage."""

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


class ProviderUnavailable(ModuleError):
    """The module's provider (Duo, YubiCloud) cannot be reached or answered nonsense.

    Added in contract 1.1. Raise it from ``challenge``, ``verify`` or ``recover`` when
    the person is not to blame and nobody could judge the answer. It never counts
    against the person. The host lets them in only when the operator set the module's
    ``fail_mode = "open"`` (audited as ``fail_open``); otherwise it refuses and the
    backup code still works. Any other exception is a crash and always refuses.
    """

    def __init__(self, message: str = "", *, reason: str = "unavailable", detail: str = "") -> None:
        super().__init__(message, reason=reason, detail=detail)

    def __repr__(self) -> str:
        return f"ProviderUnavailable(reason={self.reason!r})"
