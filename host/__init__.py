"""The secmod host: loads security modules and applies WHMCS's two-factor policies."""

from .context import CALLBACK_PATH, RequestContext, callback_url
from .core import Host
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
    UserLocked,
)
from .outcomes import (
    ChallengeStarted,
    Enrolled,
    EnrolmentStatus,
    LoginState,
    LoginStep,
    Outcome,
    SetupStarted,
    VerifyResult,
)
from .settings_file import ModuleSettingsFile

__all__ = [
    "CALLBACK_PATH",
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
    "RequestContext",
    "SecmodError",
    "SetupExpired",
    "SetupStarted",
    "StoreUnavailable",
    "UnknownModule",
    "UserLocked",
    "VerifyResult",
    "callback_url",
]
