"""The hooks a security module implements. These docstrings are the reference.

The host calls each hook of *one* module at a time, through a caller restricted to
that module, so an implementation never asks "is this call for me?". Every hook except
``forget_user`` returns the first non-``None`` result (pluggy ``firstresult``).
Plugins that are not modules (audit, metrics) may wrap any hook with
``@hookimpl(wrapper=True)``; they see typed objects whose sensitive fields are hidden
from ``repr``.

A hook signals a failure the person should read by raising
:class:`secmod.hookspecs.ModuleError`. Any other exception is a bug or an outage: the
host logs it without its arguments, audits it, and fails closed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

from .markers import PROJECT

if TYPE_CHECKING:
    import typer

    from .types import (
        Activation,
        ActivateRequest,
        Challenge,
        ChallengeRequest,
        ForgetRequest,
        ModuleInfo,
        RecoverRequest,
        SetupComplete,
        SetupPrompt,
        SetupRequest,
        Verdict,
        VerifyRequest,
    )

hookspec = pluggy.HookspecMarker(PROJECT)

__all__ = [
    "activate",
    "challenge",
    "configure",
    "forget_user",
    "recover",
    "register_commands",
    "setup_user",
    "verify",
]

REQUIRED_HOOKS = ("configure", "setup_user", "challenge", "verify")
"""The hooks every module implements; the host refuses to load a module missing one."""


@hookspec(firstresult=True)
def configure() -> ModuleInfo:
    """Describe the module: WHMCS's ``_config``.

    Called once when the host loads the module, before any settings are read.

    :returns: a :class:`ModuleInfo` whose ``name`` equals the entry point name and whose
        ``settings_model`` validates the ``[modules.NAME]`` table of ``secmod.toml``.

    Stops at first non-None result, see firstresult.

    Example::

        @hookimpl
        def configure():
            return ModuleInfo(name="totp", friendly_name="Time Based Tokens",
                              short_description="Get codes from an app like Google Authenticator or Duo.",
                              settings_model=TotpSettings)
    """


@hookspec(firstresult=True)
def activate(request: ActivateRequest) -> Activation:
    """Check that the settings really work before the module is switched on.

    WHMCS's admin "Activate" button. Called by ``secmod check``, by the admin page when
    its settings are saved, and by the host at start for every enabled module. Reach the
    provider if there is one (Duo: health check) and keep it short.

    :param request: the validated settings and the time.
    :returns: an :class:`Activation` saying what was checked.
    :raises ModuleError: the settings do not work; the message says why, without secrets.

    Stops at first non-None result, see firstresult.
    """


@hookspec(firstresult=True)
def setup_user(request: SetupRequest) -> SetupPrompt | SetupComplete:
    """Enrol a person: WHMCS's ``_activate`` followed by ``_activateverify``.

    Enrolment is a short conversation. The host calls this hook first with
    ``request.answer = None``; return a :class:`SetupPrompt` (secret and QR code, "touch
    your key") with ``pending`` data to keep. The host seals ``pending``, and when the
    person answers calls the hook again with ``answer`` and that ``pending``. Return
    :class:`SetupComplete` with the module state to store once the answer proves the
    device works, or a further :class:`SetupPrompt`. A module with nothing to exchange
    (Duo) returns :class:`SetupComplete` at once.

    Nothing is stored for the person until :class:`SetupComplete`, so a failed or
    abandoned enrolment never locks anybody out.

    :param request: settings, user, the answer and the pending data of the last step.
    :raises ModuleError: the answer is wrong; the host shows the message and keeps the
        pending data so the person can try again with the same secret.

    Stops at first non-None result, see firstresult.
    """


@hookspec(firstresult=True)
def challenge(request: ChallengeRequest) -> Challenge:
    """Start the second step of a login: WHMCS's ``_challenge``.

    Return the prompt to show (fields to fill) or a redirect (Duo). Anything ``verify``
    needs to find again (Duo's state and nonce) goes in ``Challenge.pending``: the host
    keeps it sealed, bound to this user and this login attempt, hands it to ``verify``
    once and forgets it after ``expires_in`` seconds.

    :param request: settings, user and the person's module state.
    :raises ModuleError: the challenge cannot start (provider down); the message is shown.

    Stops at first non-None result, see firstresult.
    """


@hookspec(firstresult=True)
def verify(request: VerifyRequest) -> Verdict:
    """Judge an answer: WHMCS's ``_verify``, which returned a bare bool.

    Return :class:`Accepted` (with the new state, e.g. the last accepted TOTP step) or
    :class:`Rejected` (with a short ``reason`` for the audit log). The host applies
    throttling before calling, and writes ``Accepted.state`` back with a
    compare-and-set, so a module only has to reject what its state says is used.

    Never raise for a wrong answer. Raise :class:`ModuleError` only when the answer
    could not be judged and the message should be shown as is.

    :param request: settings, user, state, pending challenge data and the answer.

    Stops at first non-None result, see firstresult.
    """


@hookspec(firstresult=True)
def recover(request: RecoverRequest) -> Verdict | None:
    """A way back in without the usual answer, or back into sync.

    The host's own backup codes are served through this hook by a built-in plugin
    (method ``backup_code``). A module may offer more methods, listed in
    ``ModuleInfo.recovery_methods`` (TOTP: ``resync`` from two consecutive codes).
    :class:`Accepted` with a new ``state`` is written back with a compare-and-set, as in
    ``verify``.

    :param request: settings, user, state, the ``method`` and the answer.
    :returns: a verdict, or ``None`` when the method is not one of the module's.

    Stops at first non-None result, see firstresult.
    """


@hookspec
def forget_user(request: ForgetRequest) -> None:
    """The person's 2FA with this module is being removed (self-service or by an admin).

    Release anything held outside the host's database (a provider-side device, a
    cache). The host deletes the stored state itself whatever this hook does; an
    exception here is logged and audited, never blocks the removal.
    """


@hookspec
def register_commands(cli: typer.Typer) -> None:
    """Add the module's own commands to the ``secmod`` command line.

    .. versionadded:: 1.1

    ``cli`` is a Typer group named after the module: a command registered on it runs as
    ``secmod NAME COMMAND`` (YubiKey: ``secmod yubikey import-keys``). The CLI calls this
    hook once at start for every module the settings let it load; a module with nothing
    to add does not implement it. To read or change the module's table of
    ``secmod.toml`` (sealed values included), use
    :class:`secmod.host.ModuleSettingsFile`, never ``secmod.host`` internals.

    :param cli: the module's command group.

    Example::

        @hookimpl
        def register_commands(cli):
            @cli.command("import-keys")
            def import_keys(export: Path) -> None:
                settings = ModuleSettingsFile("yubikey")
                settings.set_sealed("keys", load(export))
    """
