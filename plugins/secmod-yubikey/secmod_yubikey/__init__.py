"""YubiKey: WHMCS's "Yubico" security module, on yubico-client (Yubico OTP).

The person touches their key; the OTP must validate and its public id (the first 12
modhex characters, the same on every OTP of that key) must be one bound to them.

Two validation modes:

* ``cloud`` (default): YubiCloud or any server speaking validation protocol 2.0, through
  the real ``yubico_client.Yubico``; the server keeps the counters and refuses replays.
* ``local``: the operator imports each key's AES key and private id (``keys``), and
  secmod decrypts and checks the OTP itself, for sites without YubiCloud.

Module state, sealed by the host: ``{"keys": {public_id: {"added": t, "used": t,
"last": [usage, session] | null}}}``. ``last`` is the last accepted counter pair: the
replay rule in local mode, and a second line of defence in cloud mode (from the
response's ``sessioncounter``/``sessionuse``). Every verify that accepts writes it back
through the host's compare-and-set, so two racing submissions of one OTP cannot both
pass.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Mapping
from base64 import b64decode
from binascii import Error as Base64Error
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field as SettingField
from pydantic import SecretStr, field_validator, model_validator

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
    ProviderUnavailable,
    Rejected,
    SetupComplete,
    SetupPrompt,
    SetupRequest,
    Verdict,
    VerifyRequest,
    hookimpl,
    messages,
)

from . import cloud
from .keys import KeyImportError, LocalKey, dump_keys, load_key_table, merge_keys, parse_key_export
from .otp import OtpError, decrypt_token, is_newer, mask_otp, otp_candidates, public_id_of

__all__ = [
    "DEFAULT_API_URL",
    "KeyImportError",
    "LocalKey",
    "YubikeySettings",
    "dump_keys",
    "merge_keys",
    "parse_key_export",
]

log = logging.getLogger("secmod.yubikey")

DEFAULT_API_URL = "https://api.yubico.com/wsapi/2.0/verify"
_CLIENT_ID = re.compile(r"^[0-9]{1,10}$")
_LOOPBACK_NAMES = {"localhost"}

TOUCH_KEY = "Touch your YubiKey"
TOUCH_KEY_INSTRUCTIONS = (
    "Click in the field below, then touch the button (or gold disc) on your YubiKey. "
    "It types a one-time password and presses Enter for you."
)
OTP_FIELD_LABEL = "YubiKey"
OTP_PLACEHOLDER = "Yubico Key"
ENTER_OTP = "Enter a hardware-based token value."
TOO_MANY_KEYS = (
    "You already have the most YubiKeys allowed ({count}). "
    "Disable two-factor authentication and set it up again to change them."
)
NOT_IMPORTED = "This YubiKey is not registered with this site. Ask the site administrator to import it."
# Not the person's fault (service down, or our settings wrong): say so, and where to go.
SERVICE_DOWN = (
    "The YubiKey validation service is not available right now. "
    "Try again shortly, or log in with your backup code."
)


class YubikeySettings(ModuleSettings):
    """``[modules.yubikey]``. Off until the operator turns it on, as in WHMCS.

    ``client_id`` and ``secret_key`` are YubiCloud's "Client ID" and "Secret Key"
    (https://upgrade.yubico.com/getapikey/); WHMCS keeps the key in plain text, here it
    is a secret: write it as ``"sealed:..."`` and the host opens it at start.
    """

    client_id: str | None = None
    secret_key: SecretStr | None = None
    api_urls: list[str] = SettingField(default_factory=lambda: [DEFAULT_API_URL], min_length=1, max_length=10)
    timeout: int = SettingField(10, ge=1, le=60)
    """Seconds to wait for a validation server; also sent to it (ykval wants digits)."""
    max_retries: int = SettingField(2, ge=1, le=5)
    """Tries per server on an HTTP 5xx."""
    retry_delay: float = SettingField(0.5, ge=0, le=5)
    ca_file: str | None = None
    """A CA bundle to trust instead of the system's (TLS inspection, a local server)."""
    mode: Literal["cloud", "local"] = "cloud"
    max_keys_per_user: int = SettingField(1, ge=1, le=10)
    keys: dict[str, LocalKey] = SettingField(default_factory=dict, repr=False)
    """Local mode: public id -> {aes_key, private_id[, owner]}; or one sealed string."""

    @field_validator("client_id", mode="before")
    @classmethod
    def _client_id(cls, value: object) -> object:
        if value is None:
            return None
        text = str(value).strip() if isinstance(value, int | str) and not isinstance(value, bool) else None
        if text is None or not _CLIENT_ID.match(text) or int(text) == 0:
            raise ValueError("client_id must be the numeric Client ID from Yubico (1 to 10 digits, not 0)")
        return text

    @field_validator("secret_key")
    @classmethod
    def _secret_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        text = value.get_secret_value().strip()
        try:
            raw = b64decode(text, validate=True)
        except (Base64Error, ValueError):
            raw = b""
        if not raw:
            raise ValueError("secret_key must be the base64 Secret Key Yubico issued with the Client ID")
        return SecretStr(text)

    @field_validator("api_urls", mode="before")
    @classmethod
    def _one_url(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("api_urls")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        for url in value:
            parts = urlsplit(url)
            if parts.scheme not in {"http", "https"} or not parts.hostname:
                raise ValueError(f"api_urls: {url!r} must be an http(s):// URL")
            if parts.query or parts.fragment:
                raise ValueError(f"api_urls: {url!r} must not carry a query; the client adds it")
            if parts.scheme == "http" and not _is_loopback(parts.hostname):
                # The OTP would cross the network in clear; only a local server may use http.
                raise ValueError(f"api_urls: {url!r} must use https (plain http only on 127.0.0.1/localhost)")
        return value

    @field_validator("ca_file")
    @classmethod
    def _ca_file(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"ca_file: {value!r} is not a file")
        return value

    @field_validator("keys", mode="before")
    @classmethod
    def _keys(cls, value: object) -> object:
        try:
            return load_key_table(value if value is not None else {})
        except KeyImportError as error:
            raise ValueError(str(error)) from None

    @model_validator(mode="after")
    def _complete(self) -> YubikeySettings:
        if not (self.clients or self.admins):
            return self  # not switched on: nothing else is needed yet
        if self.mode == "cloud" and (self.client_id is None or self.secret_key is None):
            raise ValueError(
                "cloud mode needs client_id and secret_key (get them at https://upgrade.yubico.com/getapikey/)"
            )
        if self.mode == "local" and not self.keys:
            raise ValueError("local mode needs keys: import each YubiKey's AES key and private id first")
        return self


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- validation ------------------------------------------------------------------------


def _ask_cloud(settings: YubikeySettings, otp: str) -> cloud.CloudAnswer:
    assert settings.client_id is not None and settings.secret_key is not None  # settings checked it
    return cloud.ask(
        otp, client_id=settings.client_id, secret_key=settings.secret_key.get_secret_value(),
        api_urls=settings.api_urls, timeout=settings.timeout, ca_file=settings.ca_file,
        max_retries=settings.max_retries, retry_delay=settings.retry_delay,
    )


def _cloud_counters(answer: cloud.CloudAnswer) -> tuple[int, int] | None:
    # ykval's names are confusing: "sessioncounter" is the usage counter and
    # "sessionuse" the per-power-up session counter (protocols.md §2.3).
    usage, session = answer.response.get("sessioncounter", ""), answer.response.get("sessionuse", "")
    return (int(usage), int(session)) if usage.isdigit() and session.isdigit() else None


def _check(
    settings: YubikeySettings, otp: str, last: tuple[int, int] | None
) -> tuple[str, bool, tuple[int, int] | None]:
    """Validate one cleaned OTP: (reason, counts, new counters). ``reason == "ok"`` accepts.

    :raises ProviderUnavailable: the validation service did not answer, or answered
        only with errors signed with the empty key.
    """
    if settings.mode == "local":
        key = settings.keys.get(public_id_of(otp))
        if key is None:
            return "unknown_key", True, None
        try:
            token = decrypt_token(otp, key.aes_bytes(), key.uid_bytes())
        except OtpError:
            return "bad_otp", True, None
        if not is_newer(token.counters, last):
            return "replayed", True, None
        return "ok", True, token.counters
    answer = _ask_cloud(settings, otp)
    if answer.outage:
        # Nobody who could judge the OTP answered: the host applies the operator's
        # fail_mode for this module (closed by default: the backup code still works).
        raise ProviderUnavailable(messages.YUBICO_INVALID, reason=answer.reason, detail=SERVICE_DOWN)
    if not answer.ok:
        return answer.reason, answer.counts, None
    counters = _cloud_counters(answer)
    # The service already refused replays; this also catches a server whose counters
    # lag behind another one's (several api_urls without sync).
    if counters is not None and not is_newer(counters, last):
        return "replayed", True, None
    return "ok", True, counters


def _last(entry: Any) -> tuple[int, int] | None:
    last = entry.get("last") if isinstance(entry, Mapping) else None
    return (int(last[0]), int(last[1])) if isinstance(last, list | tuple) and len(last) == 2 else None


def _bound(state: Any) -> dict[str, dict[str, Any]]:
    keys = state.get("keys") if state else None
    return {str(k): dict(v) for k, v in keys.items()} if isinstance(keys, Mapping) else {}


# -- hooks -------------------------------------------------------------------------------


@hookimpl
def configure() -> ModuleInfo:
    # "YubiKey" rather than WHMCS's "Yubico": people know the device, not the company,
    # and the short description (WHMCS's own) already names the device that way.
    return ModuleInfo(
        name="yubikey",
        friendly_name="YubiKey",
        short_description="Generate codes using a YubiKey hardware device.",
        description=(
            "Touch a YubiKey to type a one-time password (Yubico OTP), validated by YubiCloud "
            "or, in local mode, by secmod with keys the administrator imported."
        ),
        settings_model=YubikeySettings,
        log_redactions=cloud.LOG_REDACTIONS,
    )


@hookimpl
def activate(request: ActivateRequest[YubikeySettings]) -> Activation:
    settings = request.settings
    if settings.mode == "local":
        return Activation(message=f"Local validation with {len(settings.keys)} imported YubiKey(s).")
    if settings.client_id is None or settings.secret_key is None:
        raise ModuleError("cloud mode needs client_id and secret_key", reason="config")
    # An OTP that will not validate (its token fails the CRC under a key's AES secret but
    # for a 1 in 65536 chance, and then also needs the private id): the server must
    # answer BAD_OTP, signed with our key. That proves it is reachable and
    # knows our client id and secret key, and spends nobody's OTP. ("v" is not on the
    # Dvorak list, so ykval does not remap it.)
    answer = _ask_cloud(settings, "c" * 12 + "v" * 32)
    if "BAD_OTP" in answer.statuses and not (set(answer.statuses) & {"NO_SUCH_CLIENT", "BAD_SIGNATURE"}):
        return Activation(
            message=f"Validation server answered for client id {settings.client_id}; the secret key checks out."
        )
    if "NO_SUCH_CLIENT" in answer.statuses + answer.unsigned:
        raise ModuleError(f"The validation server does not know client id {settings.client_id}.", reason="config")
    if "BAD_SIGNATURE" in answer.statuses or answer.reason == "bad_response":
        raise ModuleError("The validation server does not accept the secret key for this client id.", reason="config")
    if answer.outage and not answer.unsigned:
        raise ModuleError(
            "No validation server answered (check api_urls, the network and ca_file).", reason="unavailable"
        )
    said = ", ".join(answer.statuses + answer.unsigned) or answer.reason
    raise ModuleError(f"Unexpected answer from the validation server ({said}).", reason="config")


def _otp_field() -> Field:
    return Field(
        name="otp", label=OTP_FIELD_LABEL, kind="password", placeholder=OTP_PLACEHOLDER,
        max_length=64, autocomplete="off",
    )


@hookimpl
def setup_user(request: SetupRequest[YubikeySettings]) -> SetupPrompt | SetupComplete:
    settings = request.settings
    if request.answer is None or request.pending is None:
        return SetupPrompt(
            prompt=Prompt(message=TOUCH_KEY, instructions=TOUCH_KEY_INSTRUCTIONS, fields=(_otp_field(),)),
            pending={"step": "touch"},
        )
    bound = _bound(request.state)
    candidates = otp_candidates(request.answer.get("otp"))
    if not candidates:
        raise ModuleError(messages.YUBICO_INVALID, reason="malformed")
    if settings.mode == "local":
        # Of the keyboard-layout readings, the one whose key the operator imported.
        candidates = [c for c in candidates if public_id_of(c) in settings.keys] or candidates
    otp = candidates[0]
    public_id = public_id_of(otp)
    if settings.mode == "local":
        key = settings.keys.get(public_id)
        if key is None or (key.owner is not None and key.owner != request.user.id):
            raise ModuleError(messages.YUBICO_INVALID, reason="unknown_key", detail=NOT_IMPORTED)
    if public_id not in bound and settings.max_keys_per_user > 1 and len(bound) >= settings.max_keys_per_user:
        raise ModuleError(
            TOO_MANY_KEYS.format(count=settings.max_keys_per_user), reason="too_many_keys"
        )
    reason, counts, counters = _check(settings, otp, _last(bound.get(public_id)))
    if reason != "ok":
        log.info("YubiKey enrolment failed for %s: %s", mask_otp(otp), reason)
        detail = SERVICE_DOWN if not counts else ""
        raise ModuleError(messages.YUBICO_INVALID, reason=reason, detail=detail)
    entry = {**bound.get(public_id, {"added": request.now}), "last": list(counters) if counters else None}
    if settings.max_keys_per_user == 1:
        bound = {}  # one key per person, as in WHMCS: a new key replaces the old one
    bound[public_id] = entry
    return SetupComplete(state={"keys": bound}, message=messages.YUBICO_SAVED)


@hookimpl
def challenge(request: ChallengeRequest[YubikeySettings]) -> Challenge:
    return Challenge(prompt=Prompt(message=ENTER_OTP, instructions=TOUCH_KEY_INSTRUCTIONS, fields=(_otp_field(),)))


@hookimpl
def verify(request: VerifyRequest[YubikeySettings]) -> Verdict:
    settings = request.settings
    bound = _bound(request.state)
    candidates = otp_candidates(request.answer.get("otp"))
    if not candidates:
        return Rejected(reason="malformed")
    # Binding first: an OTP of a key that is not this person's is refused without
    # asking anybody, so it is not spent at YubiCloud either.
    mine = [c for c in candidates if public_id_of(c) in bound]
    if not mine:
        return Rejected(reason="unknown_key")
    otp = mine[0]
    public_id = public_id_of(otp)
    if settings.mode == "local":
        key = settings.keys.get(public_id)
        if key is None or (key.owner is not None and key.owner != request.user.id):
            return Rejected(reason="key_revoked")  # the operator removed or reassigned it
    reason, counts, counters = _check(settings, otp, _last(bound[public_id]))
    if reason != "ok":
        if counts:
            return Rejected(reason=reason)  # WHMCS's "incorrect ... N attempts remaining"
        return Rejected(reason=reason, message=messages.YUBICO_INVALID, detail=SERVICE_DOWN, counts=False)
    entry = {**bound[public_id], "used": request.now}
    if counters is not None:
        entry["last"] = list(counters)
    return Accepted(state={**request.state, "keys": {**bound, public_id: entry}})


@hookimpl
def register_commands(cli: Any) -> None:
    """``secmod yubikey import-keys``: local-mode keys from a programming tool's export."""
    from .cli import import_keys  # typer and the settings file only when the CLI asks

    cli.command("import-keys")(import_keys)
