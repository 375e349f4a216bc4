"""Time-Based Tokens: WHMCS's default security module, on pyotp (RFC 6238).

Module state, sealed by the host: ``secret`` (base32, unpadded), ``last_step`` (the
last accepted time step, so a code is never accepted twice) and ``drift`` (the whole
steps the person's device runs ahead, negative when behind).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import UTC, datetime
from typing import Literal

import pyotp
from pydantic import Field as SettingField

from secmod.hookspecs import (
    Accepted,
    Activation,
    ActivateRequest,
    Challenge,
    ChallengeRequest,
    Field,
    ModuleError,
    ModuleInfo,
    ModuleSettings,
    Prompt,
    Provisioning,
    RecoverRequest,
    RecoveryMethod,
    Rejected,
    SetupComplete,
    SetupPrompt,
    SetupRequest,
    Verdict,
    VerifyRequest,
    hookimpl,
    messages,
)

__all__ = ["RESYNC_CODES_TOO_OLD", "TotpSettings", "describe_skew", "find_step", "find_step_below"]

_DIGESTS = {"SHA1": hashlib.sha1, "SHA256": hashlib.sha256, "SHA512": hashlib.sha512}
_SPACES = re.compile(r"[\s\-]")

RESYNC_CODES_TOO_OLD = (
    "These two codes are older than the last code accepted for your account, and each code "
    "works only once. Your device's clock is behind: set it to take its time from the network, "
    "or wait about {wait} until it shows newer codes, then enter two consecutive codes again."
)


class TotpSettings(ModuleSettings):
    """``[modules.totp]``. On for clients and admins by default, as in WHMCS."""

    clients: bool = True
    admins: bool = True
    digits: Literal[6, 8] = 6
    period: int = SettingField(30, ge=15, le=120)
    algorithm: Literal["SHA1", "SHA256", "SHA512"] = "SHA1"
    window: int = SettingField(1, ge=0, le=10)
    issuer: str | None = SettingField(
        None, min_length=1, max_length=64,
        description="The name authenticator apps show; unset, the host's own issuer setting.",
    )
    skew_search_minutes: int = SettingField(10, ge=0, le=24 * 60)
    max_drift_minutes: int = SettingField(10, ge=0, le=24 * 60)
    resync_search_minutes: int = SettingField(24 * 60, ge=1, le=7 * 24 * 60)


class _Totp(pyotp.TOTP):
    """pyotp's TOTP with the secret decoded once.

    pyotp decodes the base32 secret for every code it computes; the skew and resync
    searches compute dozens to thousands of steps per request (see ``make bench``).
    """

    _key: bytes | None = None

    def byte_secret(self) -> bytes:
        if self._key is None:
            self._key = super().byte_secret()  # pyotp's own checks of the secret, once
        return self._key

    def code_at_step(self, step: int) -> str:
        return self.generate_otp(step)

    def matches(self, code: str, step: int) -> bool:
        return step >= 0 and hmac.compare_digest(self.generate_otp(step), code)


def _totp(settings: TotpSettings, secret: str) -> _Totp:
    return _Totp(secret, digits=settings.digits, digest=_DIGESTS[settings.algorithm], interval=settings.period)


def _clean(answer: object, digits: int) -> str | None:
    # WHMCS strips nothing; people paste "123 456" from apps that group digits.
    code = _SPACES.sub("", str(answer or ""))
    return code if len(code) == digits and code.isascii() and code.isdigit() else None


def find_step(totp: _Totp, code: str, center: int, radius: int) -> int | None:
    """The time step within ``center ± radius`` whose code is ``code``, nearest first."""
    for distance in range(radius + 1):
        for step in (center - distance, center + distance) if distance else (center,):
            if totp.matches(code, step):
                return step
    return None


def find_step_below(totp: _Totp, code: str, ceiling: int, floor: int) -> int | None:
    """The step in ``[floor, ceiling)`` whose code is ``code``, latest first."""
    for step in range(ceiling - 1, max(floor, 0) - 1, -1):
        if totp.matches(code, step):
            return step
    return None


def describe_skew(offset_seconds: int, now: float) -> str:
    """Plain words for a device clock that is ``offset_seconds`` ahead (negative: behind)."""
    server = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    direction = "ahead of" if offset_seconds > 0 else "behind"
    return (
        f"Your device's clock appears to be about {_duration(abs(offset_seconds))} {direction} the "
        f"server's. The server time is {server}. Set your device to take its time from the network, "
        "then try again with a new code."
    )


def _duration(seconds: int) -> str:
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def _skew_radius(settings: TotpSettings) -> int:
    return settings.skew_search_minutes * 60 // settings.period


def _diagnose_setup(settings: TotpSettings, totp: _Totp, code: str, current: int, now: float) -> str:
    # At enrolment the secret is on the enrolling person's own screen: nobody is
    # guessing, so both directions are searched and a fast clock is named too.
    step = find_step(totp, code, current, _skew_radius(settings))
    if step is None or abs(step - current) <= settings.window:
        return ""
    return describe_skew((step - current) * settings.period, now)


def _diagnose_login(
    settings: TotpSettings, totp: _Totp, code: str, current: int, lowest_acceptable: int, now: float
) -> str:
    # Only steps below everything verify accepts now (README, "The clock-skew
    # diagnosis"): the next accepted code moves last_step above them, so a guess that
    # matched one can never log in. A code of a later step gets no word at all, since
    # it would be accepted when its time comes.
    step = find_step_below(totp, code, lowest_acceptable, current - _skew_radius(settings))
    return "" if step is None else describe_skew((step - current) * settings.period, now)


RESYNC = RecoveryMethod(
    name="resync",
    label="Resynchronise your authenticator",
    prompt=Prompt(
        message="Enter two consecutive codes from your authenticator app",
        instructions=(
            "If your codes are refused because your device's clock is wrong, type the code "
            "it shows now, wait for the next one, and type that too."
        ),
        fields=(
            Field(name="code", label="Code", placeholder="123456"),
            Field(name="next_code", label="Next code", placeholder="654321"),
        ),
    ),
)


@hookimpl
def configure() -> ModuleInfo:
    return ModuleInfo(
        name="totp",
        friendly_name="Time Based Tokens",
        short_description="Get codes from an app like Google Authenticator or Duo.",
        description=(
            "Enter a code that regenerates every 30 seconds in an authenticator app. "
            "No configuration required."
        ),
        settings_model=TotpSettings,
        contract=">=1.1,<2",  # RecoveryMethod and the host-drawn QR code are 1.1
        recovery_methods=(RESYNC,),
    )


@hookimpl
def activate(request: ActivateRequest[TotpSettings]) -> Activation:
    return Activation(message="No configuration required.")


@hookimpl
def setup_user(request: SetupRequest[TotpSettings]) -> SetupPrompt | SetupComplete:
    settings = request.settings
    if request.answer is None or request.pending is None:
        secret = pyotp.random_base32()  # 160 bits; unpadded, so the URI has no %3D
        issuer = settings.issuer or request.issuer or "secmod"
        uri = _totp(settings, secret).provisioning_uri(name=request.user.label, issuer_name=issuer)
        # The host draws the QR codes from the URI.
        prompt = Prompt(
            message=messages.TOTP_CONNECT_APP,
            instructions=messages.TOTP_SETUP_INSTRUCTIONS.replace("6-digit", f"{settings.digits}-digit"),
            fields=(Field(name="code", label="Authentication code", max_length=settings.digits, placeholder="123456"[: settings.digits]),),
            provisioning=Provisioning(secret=secret, uri=uri),
        )
        return SetupPrompt(prompt=prompt, pending={"secret": secret})
    secret = request.pending["secret"]
    totp = _totp(settings, secret)
    current = int(request.now // settings.period)
    code = _clean(request.answer.get("code"), settings.digits)
    step = find_step(totp, code, current, settings.window) if code else None
    if step is None:
        detail = _diagnose_setup(settings, totp, code, current, request.now) if code else ""
        raise ModuleError(messages.TOTP_SETUP_MISMATCH, reason="wrong_code", detail=detail)
    # The setup code counts as used, as in WHMCS: it cannot log anybody in afterwards.
    return SetupComplete(state={"secret": secret, "last_step": step, "drift": step - current})


@hookimpl
def challenge(request: ChallengeRequest[TotpSettings]) -> Challenge:
    settings = request.settings
    return Challenge(
        prompt=Prompt(
            message=messages.TOTP_ENTER_CODE,
            fields=(Field(name="code", label="Authentication code", max_length=settings.digits, placeholder="123456"[: settings.digits]),),
        )
    )


@hookimpl
def verify(request: VerifyRequest[TotpSettings]) -> Verdict:
    settings = request.settings
    state = request.state
    code = _clean(request.answer.get("code"), settings.digits)
    if code is None:
        return Rejected(reason="malformed")
    totp = _totp(settings, state["secret"])
    current = int(request.now // settings.period)
    drift = int(state.get("drift", 0))
    step = find_step(totp, code, current + drift, settings.window)
    if step is None:
        lowest = current + drift - settings.window
        return Rejected(reason="wrong_code", detail=_diagnose_login(settings, totp, code, current, lowest, request.now))
    if step <= int(state.get("last_step", -1)):
        return Rejected(reason="replayed")
    max_drift = settings.max_drift_minutes * 60 // settings.period
    learned = max(-max_drift, min(max_drift, step - current))
    return Accepted(state={**state, "last_step": step, "drift": learned})


@hookimpl
def recover(request: RecoverRequest[TotpSettings]) -> Verdict | None:
    """``resync``: two consecutive codes (``code`` then ``next_code``) from a drifted device.

    The device may be behind or ahead by up to ``resync_search_minutes``; both codes
    must be newer than the last accepted one (a code is accepted once). Two right codes
    that are older get their own reason and say so, without counting as a failure:
    only the device's holder can type them.
    """
    if request.method != "resync":
        return None
    settings = request.settings
    first = _clean(request.answer.get("code"), settings.digits)
    second = _clean(request.answer.get("next_code"), settings.digits)
    if first is None or second is None:
        return Rejected(reason="malformed")
    totp = _totp(settings, request.state["secret"])
    current = int(request.now // settings.period)
    radius = settings.resync_search_minutes * 60 // settings.period
    last = int(request.state.get("last_step", -1))
    used_pair: int | None = None
    # Every step in range whose code is `first`, nearest first; the next must be `second`.
    for distance in range(radius + 1):
        for step in (current - distance, current + distance) if distance else (current,):
            if totp.matches(first, step) and totp.matches(second, step + 1):
                if step > last:
                    state = {**request.state, "last_step": step + 1, "drift": step + 1 - current}
                    return Accepted(state=state, reason="resync")
                used_pair = step if used_pair is None else used_pair
    if used_pair is not None:
        wait = (last + 1 - used_pair) * settings.period
        return Rejected(reason="resync_codes_too_old", message=RESYNC_CODES_TOO_OLD.format(wait=_duration(wait)),
                        counts=False)
    return Rejected(reason="resync_failed")
