"""Errors the host raises to its application. None of them carries a secret."""

from __future__ import annotations

from datetime import datetime

from secmod.hookspecs import messages
from secmod.settings import ConfigError

__all__ = [
    "ConfigError",
    "ModuleConflictError",
    "ModuleLoadError",
    "ModuleUnavailable",
    "NotEnrolled",
    "SecmodError",
    "SetupExpired",
    "StoreUnavailable",
    "UnknownModule",
    "UserLocked",
]


class SecmodError(Exception):
    """Base of the host's errors; ``str()`` is one clear line for a person or a log."""


class ModuleLoadError(SecmodError):
    """A module package failed to import, register or describe itself."""


class ModuleConflictError(ModuleLoadError):
    """Two installed distributions provide a module with one name."""


class UnknownModule(SecmodError):
    """A module name that is not installed, not loaded, or not enabled for this audience."""


class ModuleUnavailable(SecmodError):
    """The module cannot serve right now; the message is user-facing."""


class NotEnrolled(SecmodError):
    """The person has no second factor to challenge or recover."""


class SetupExpired(SecmodError):
    """The enrolment step is unknown, used, expired or belongs to someone else."""


class StoreUnavailable(SecmodError):
    """The database cannot be reached, or did not answer in time.

    Nobody is let in while it lasts; the host application shows a "temporarily
    unavailable" page (the web host answers 503) and may simply retry later.
    """


class UserLocked(ModuleUnavailable):
    """Too many wrong codes: no code is checked until ``until`` (UTC). Backup codes
    have their own budget and still work."""

    def __init__(self, until: datetime) -> None:
        super().__init__(messages.LOCKED.format(until=until.strftime("%Y-%m-%d %H:%M:%S UTC")))
        self.until = until
