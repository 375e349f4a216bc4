"""What the host answers its application: frozen, typed, free of secrets in ``repr``."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from secmod.hookspecs import BrowserCeremony, Field, Prompt, Provisioning, messages

__all__ = [
    "ChallengeStarted",
    "Enrolled",
    "EnrolmentStatus",
    "LoginState",
    "LoginStep",
    "Outcome",
    "SetupStarted",
    "VerifyResult",
]


class LoginStep(enum.StrEnum):
    NOT_REQUIRED = "not_required"
    MUST_SET_UP = "must_set_up"
    CHALLENGE = "challenge"


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginState:
    """What the person who just gave their password must do next.

    :param step: not required, must set up (forced, nothing enrolled, a module is
        enabled for the audience) or challenge.
    :param module: the enrolled module to challenge with (``step == CHALLENGE``).
    :param choices: modules the person may enrol in (``step == MUST_SET_UP``).
    :param message: WHMCS's text for the step.
    """

    step: LoginStep
    module: str | None = None
    choices: tuple[str, ...] = ()
    message: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SetupStarted:
    """An enrolment step to show; send ``setup_id`` back with the answer."""

    setup_id: str = field(repr=False)
    module: str
    prompt: Prompt
    error: str = ""
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Enrolled:
    """Enrolment finished; ``backup_codes`` are shown once and never again.

    ``backup_codes`` is empty when the person re-enrolled with the module they already
    had: their existing codes stay valid.
    """

    module: str
    backup_codes: tuple[str, ...] = field(repr=False)
    message: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChallengeStarted:
    """A login challenge; send ``challenge_id`` back with the answer."""

    challenge_id: str = field(repr=False)
    module: str
    prompt: Prompt
    expires_at: datetime


class Outcome(enum.StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    LOCKED = "locked"


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyResult:
    """The host's verdict on an answer.

    :param outcome: accepted, rejected, or locked (too many failures).
    :param message: the WHMCS text to show.
    :param reason: the audit code (``wrong_code``, ``replayed``, ``locked``...).
    :param attempts_left: failures left before the lockout (rejected only).
    :param locked_until: when a lockout ends (UTC).
    :param detail: a plain-words diagnosis (clock skew), never a secret.
    :param new_backup_codes: after a backup-code login, the replacement, shown once.
    :param challenge_open: whether the same challenge (``challenge_id`` and the prompt
        already shown) may be answered again (added in contract 1.1). True after a
        rejected answer to a challenge that keeps nothing server-side (TOTP, YubiKey:
        show the same form again). False when accepted, locked, or when the challenge
        was one-shot (an email code, Duo's redirect: its pending data is spent by this
        answer), or when no ``challenge_id`` was given: call
        :meth:`~secmod.host.Host.begin_challenge` again before the next answer.
    """

    outcome: Outcome
    module: str | None = None
    message: str = ""
    reason: str = ""
    attempts_left: int | None = None
    locked_until: datetime | None = None
    detail: str = ""
    new_backup_codes: tuple[str, ...] = field(default=(), repr=False)
    challenge_open: bool = False

    @property
    def accepted(self) -> bool:
        return self.outcome is Outcome.ACCEPTED


@dataclass(frozen=True, slots=True, kw_only=True)
class EnrolmentStatus:
    """What ``secmod status`` and the security page show about a person.

    :param locked_until: when the lockout from wrong codes ends, if one is running.
    :param backup_locked_until: when the lockout from wrong backup codes ends.
    """

    module: str
    enrolled_at: datetime
    backup_codes_left: int
    locked_until: datetime | None
    backup_locked_until: datetime | None = None


def utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def locked_result(module: str, until: float, *, reason: str = "locked") -> VerifyResult:
    """The answer while a lockout runs: WHMCS's "Login Attempts Exceeded" and until when."""
    locked_until = utc(until)
    return VerifyResult(
        outcome=Outcome.LOCKED, module=module, reason=reason, locked_until=locked_until, attempts_left=0,
        message=messages.LOCKED.format(until=locked_until.strftime("%Y-%m-%d %H:%M:%S UTC")),
    )


def prompt_to_json(prompt: Prompt) -> dict[str, Any]:
    """A prompt as JSON, to keep sealed between the steps of an enrolment."""
    return asdict(prompt)


def prompt_from_json(data: Mapping[str, Any]) -> Prompt:
    provisioning = data.get("provisioning")
    return Prompt(
        message=data["message"],
        instructions=data.get("instructions", ""),
        fields=tuple(Field(**item) for item in data.get("fields", ())),
        redirect_url=data.get("redirect_url"),
        provisioning=Provisioning(**provisioning) if provisioning else None,
        ceremony=BrowserCeremony(**ceremony) if (ceremony := data.get("ceremony")) else None,
    )
