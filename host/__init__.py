"""The secmod host: loads security modules and applies WHMCS's two-factor policies."""

from .context import RequestContext
from .core import EnrolmentStatus, Host, UserLocked
from .errors import (
    ConfigError,
    ModuleConflictError,
    ModuleLoadError,
    ModuleUnavailable,
    NotEnrolled,
    SecmodError,
    SetupExpired,
    StoreUnavailable,
    UnknownModule,
)
from .outcomes import ChallengeStarted, Enrolled, LoginState, LoginStep, Outcome, SetupStarted, VerifyResult
from .settings_file import ModuleSettingsFile

__all__ = [
    "ChallengeStarted",
    "ConfigError",
    "Enrolled",
    "EnrolmentStatus",
    "Host",
    "LoginState",
    "LoginStep",
    "ModuleConflictError",
    "ModuleLoadError",
    "ModuleSettingsFile",
    "ModuleUnavailable",
    "NotEnrolled",
    "Outcome",
    "SecmodError",
    "SetupExpired",
    "RequestContext",
    "SetupStarted",
    "StoreUnavailable",
    "UnknownModule",
    "UserLocked",
    "VerifyResult",
]
