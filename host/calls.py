"""The one place that calls into a module.

Every hook call goes through a :class:`ModuleCaller`: it calls pluggy, checks the result
type against the contract, and turns every way a module can fail into one of two
things, so the failure policy is decided once:

- a verdict (``verify``, ``recover``): a :class:`~secmod.hookspecs.Rejected` that does
  not count against the person (``module_error`` for a crash or a wrong return type,
  the module's own reason for a :class:`~secmod.hookspecs.ModuleError`), or, for a
  declared :class:`~secmod.hookspecs.ProviderUnavailable` where the operator set the
  module's ``fail_mode = "open"``, an ``Accepted(reason="fail_open")``;
- a :class:`ModuleFailed` for every other hook, carrying the message to show.

A crash is logged by exception type and stack frames only: a module's exception text
may quote what it was given.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from secmod.hookspecs import (
    Accepted,
    ActivateRequest,
    Activation,
    Challenge,
    ChallengeRequest,
    ForgetRequest,
    ModuleError,
    ModuleSettings,
    ProviderUnavailable,
    RecoverRequest,
    Rejected,
    SetupComplete,
    SetupPrompt,
    SetupRequest,
    Verdict,
    VerifyRequest,
    messages,
)

from .registry import LoadedModule

__all__ = ["Crashed", "ModuleCaller", "ModuleFailed"]

log = logging.getLogger("secmod.host")

T = TypeVar("T")


class ModuleFailed(Exception):
    """A hook could not do its work. ``message`` is for the person; ``reason`` for the audit.

    :param outage: the module declared its provider unreachable (never the person's fault).
    :param crashed: the module raised something other than ``ModuleError`` or returned
        the wrong type; ``error_type`` names what, for the audit row.
    """

    def __init__(self, message: str, *, reason: str, detail: str = "", outage: bool = False,
                 crashed: bool = False, error_type: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.detail = detail
        self.outage = outage
        self.crashed = crashed
        self.error_type = error_type


@dataclass(frozen=True, slots=True, kw_only=True)
class Crashed(Rejected):
    """The verdict for a crash: a rejection the person is not to blame for; the host
    audits ``error_type`` (an exception's type name, never its text)."""

    error_type: str = ""


def _frames(error: BaseException) -> str:
    return "".join(traceback.format_tb(error.__traceback__))


class ModuleCaller:
    """A module's hooks, typed, with failures turned into results the host can decide on."""

    def __init__(self, module: LoadedModule, settings: ModuleSettings) -> None:
        self.module = module
        self.name = module.name
        self.settings = settings

    def _call(self, hook: str, request: object, expected: tuple[type, ...], *, optional: bool = False) -> Any:
        try:
            result = getattr(self.module.hooks, hook)(request=request)
        except ProviderUnavailable as error:
            log.warning("module %r: %s reports its provider unavailable (%s)", self.name, hook, error.reason)
            raise ModuleFailed(error.message or messages.MODULE_LOAD_ERROR, reason=error.reason,
                               detail=error.detail, outage=True) from None
        except ModuleError as error:
            raise ModuleFailed(error.message, reason=error.reason, detail=error.detail) from None
        except Exception as error:  # noqa: BLE001 - any other failure is a crash, by contract
            log.error("module %r: hook %s raised %s", self.name, hook, type(error).__name__)
            log.debug("module %r failed at:\n%s", self.name, _frames(error))
            raise ModuleFailed(messages.MODULE_LOAD_ERROR, reason="module_error", crashed=True,
                               error_type=type(error).__name__) from None
        if result is None and optional:
            return None
        if not isinstance(result, expected):
            log.error("module %r: hook %s returned %s", self.name, hook, type(result).__name__)
            raise ModuleFailed(messages.MODULE_LOAD_ERROR, reason="module_error", crashed=True,
                               error_type=f"returned {type(result).__name__}")
        return result

    def _judge(self, hook: str, request: object, *, optional: bool = False) -> Verdict | None:
        try:
            return self._call(hook, request, (Accepted, Rejected), optional=optional)
        except ModuleFailed as failure:
            if failure.outage and self.settings.fail_mode == "open":
                log.warning("module %r: provider unavailable and fail_mode is open: letting the person in", self.name)
                return Accepted(reason="fail_open")
            if failure.crashed:
                return Crashed(reason="module_error", message=messages.MODULE_LOAD_ERROR, counts=False,
                               error_type=failure.error_type)
            return Rejected(reason=failure.reason, message=failure.message, detail=failure.detail, counts=False)

    # -- one method per hook (tests check this list against secmod.hookspecs.specs) --

    def activate(self, request: ActivateRequest) -> Activation:
        """:raises ModuleFailed: the settings do not work (message says why)."""
        result = self._call("activate", request, (Activation,), optional=True)
        return result or Activation(message="no check needed")

    def setup_user(self, request: SetupRequest) -> SetupPrompt | SetupComplete:
        """:raises ModuleFailed: a wrong answer (``ModuleError``) or a crash."""
        return self._call("setup_user", request, (SetupPrompt, SetupComplete))

    def challenge(self, request: ChallengeRequest) -> Challenge:
        """:raises ModuleFailed: the challenge cannot start (``outage`` when declared)."""
        return self._call("challenge", request, (Challenge,))

    def verify(self, request: VerifyRequest) -> Verdict:
        """Never raises: every failure is a verdict (see the module docstring)."""
        verdict = self._judge("verify", request)
        assert verdict is not None
        return verdict

    def recover(self, request: RecoverRequest) -> Verdict | None:
        """Never raises; ``None`` when the module does not handle ``request.method``."""
        return self._judge("recover", request, optional=True)

    def forget_user(self, request: ForgetRequest, on_failure: Callable[[ModuleFailed], None]) -> None:
        """Never raises: the removal stands whatever the module says; failures are reported."""
        try:
            self._call("forget_user", request, (object,), optional=True)
        except ModuleFailed as failure:
            on_failure(failure)

    def register_commands(self, cli: Any) -> None:
        """Let the module add its ``secmod NAME ...`` commands to ``cli`` (a Typer group).

        :raises ModuleFailed: the hook crashed; the CLI leaves the module's commands out.
        """
        try:
            self.module.hooks.register_commands(cli=cli)
        except Exception as error:  # noqa: BLE001 - a module's failure must not take the CLI down
            log.error("module %r: hook register_commands raised %s", self.name, type(error).__name__)
            log.debug("module %r failed at:\n%s", self.name, _frames(error))
            raise ModuleFailed(messages.MODULE_LOAD_ERROR, reason="module_error", crashed=True,
                               error_type=type(error).__name__) from None

    def configure(self) -> object:
        """The module's ``ModuleInfo`` (the registry checks it at load)."""
        return self.module.hooks.configure()

