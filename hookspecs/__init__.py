"""secmod's contract with security modules: markers, hook specs, typed objects, errors.

A third-party module imports only this package::

    from secmod.hookspecs import hookimpl, ModuleInfo, ModuleSettings, Accepted, Rejected
"""

from . import messages
from .errors import ModuleError, ProviderUnavailable
from .markers import CONTRACT_VERSION, PROJECT, hookimpl
from .types import (
    Accepted,
    Activation,
    ActivateRequest,
    Audience,
    BrowserCeremony,
    Challenge,
    ChallengeRequest,
    Field,
    ForgetRequest,
    LogRedaction,
    ModuleInfo,
    ModuleSettings,
    Prompt,
    Provisioning,
    RecoverRequest,
    Rejected,
    SetupComplete,
    SetupPrompt,
    SetupRequest,
    User,
    Verdict,
    VerifyRequest,
    frozen_mapping,
)

__all__ = [
    "CONTRACT_VERSION",
    "PROJECT",
    "Accepted",
    "Activation",
    "ActivateRequest",
    "Audience",
    "BrowserCeremony",
    "Challenge",
    "ChallengeRequest",
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
    "Rejected",
    "SetupComplete",
    "SetupPrompt",
    "SetupRequest",
    "User",
    "Verdict",
    "VerifyRequest",
    "frozen_mapping",
    "hookimpl",
    "messages",
]
