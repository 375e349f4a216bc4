"""secmod's contract with security modules: markers, hook specs, typed objects, errors.

A third-party module imports only this package::

    from secmod.hookspecs import hookimpl, ModuleInfo, ModuleSettings, Accepted, Rejected
"""

from . import messages
from .errors import ModuleError, ProviderUnavailable
from .markers import CONTRACT_VERSION, PROJECT, hookimpl
from .observe import add_provider_observer, provider_call
from .types import (
    BACKUP_CODE_METHOD,
    Accepted,
    Activation,
    ActivateRequest,
    Audience,
    BrowserCeremony,
    Challenge,
    CONFIG_DIR,
    ChallengeRequest,
    ConfigPath,
    DescribeRequest,
    Field,
    ForgetRequest,
    LogRedaction,
    ModuleInfo,
    ModuleSettings,
    Prompt,
    Provisioning,
    RecoverRequest,
    RecoveryMethod,
    Rejected,
    SettingsT,
    SetupComplete,
    SetupPrompt,
    SetupRequest,
    URLLIB3_LOGGERS,
    User,
    Verdict,
    VerifyRequest,
    frozen_mapping,
)

__all__ = [
    "CONFIG_DIR",
    "BACKUP_CODE_METHOD",
    "CONTRACT_VERSION",
    "PROJECT",
    "Accepted",
    "Activation",
    "ActivateRequest",
    "Audience",
    "BrowserCeremony",
    "Challenge",
    "ChallengeRequest",
    "ConfigPath",
    "DescribeRequest",
    "Field",
    "ForgetRequest",
    "LogRedaction",
    "ModuleError",
    "ModuleInfo",
    "ModuleSettings",
    "Prompt",
    "ProviderUnavailable",
    "Provisioning",
    "RecoverRequest",
    "RecoveryMethod",
    "Rejected",
    "SettingsT",
    "SetupComplete",
    "SetupPrompt",
    "SetupRequest",
    "URLLIB3_LOGGERS",
    "User",
    "Verdict",
    "VerifyRequest",
    "add_provider_observer",
    "frozen_mapping",
    "provider_call",
    "hookimpl",
    "messages",
]
