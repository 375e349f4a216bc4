"""Security keys and passkeys: WebAuthn, on py_webauthn (the ``webauthn`` package).

The browser does the ceremony (``navigator.credentials.create()`` / ``.get()``): each
prompt carries a :class:`~secmod.hookspecs.BrowserCeremony` with the options, and the
browser posts the credential's JSON back in the hidden field ``credential``.

Module state, sealed by the host::

    {"user_handle": "<base64url, 32 random bytes: never the email>",
     "credentials": [{"id": "<base64url>", "public_key": "<base64url COSE key>",
                      "sign_count": 7, "name": "Work laptop", "transports": ["usb"],
                      "created_at": 1795855469.0, "last_used_at": 1795855600.0 | None}]}

Several credentials per person. Re-enrolling with this module (the host hands
``setup_user`` the current state) either registers one more, or, with the field
``remove``, removes one by its name while keeping the others.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field as SettingField
from pydantic import PrivateAttr, ValidationInfo, field_validator, model_validator
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    base64url_to_bytes,
    bytes_to_base64url,
    parse_authentication_credential_json,
    parse_registration_credential_json,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from secmod.hookspecs import (
    Accepted,
    Activation,
    ActivateRequest,
    BrowserCeremony,
    Challenge,
    ChallengeRequest,
    Field,
    ModuleError,
    ModuleInfo,
    ModuleSettings,
    Prompt,
    Rejected,
    SetupComplete,
    SetupPrompt,
    SetupRequest,
    Verdict,
    VerifyRequest,
    hookimpl,
)

__all__ = [
    "ANSWER_FIELD",
    "NAME_FIELD",
    "REMOVE_FIELD",
    "WebAuthnSettings",
    "relying_party_problem",
]

log = logging.getLogger("secmod.webauthn")

ANSWER_FIELD = "credential"
"""The hidden field the browser posts the credential's JSON in."""
NAME_FIELD = "name"
REMOVE_FIELD = "remove"

MAX_CREDENTIAL_JSON = 16 * 1024
"""A real credential's JSON is a few hundred bytes (a few KiB with attestation): anything
bigger is refused before parsing."""
MAX_NAME = 64
USER_HANDLE_BYTES = 32
FALLBACK_BASE_URL = "http://localhost:8000"
"""The relying party when the settings were validated without the host's context."""

SETUP_MESSAGE = "Register your security key or passkey"
SETUP_INSTRUCTIONS = (
    "Give it a name you will recognise, then press the button and touch your security key "
    "(or confirm with your device's fingerprint, face or PIN). This needs JavaScript in a "
    "browser that supports security keys."
)
LOGIN_MESSAGE = "Use your security key or passkey"
LOGIN_INSTRUCTIONS = (
    "Press the button, then touch your security key or confirm with your device's "
    "fingerprint, face or PIN. This needs JavaScript in a browser that supports security keys."
)
REGISTRATION_FAILED = "Your security key could not be registered. Please try again."
NO_CREDENTIAL = (
    "No answer came from a security key. Use a browser with JavaScript turned on and touch "
    "your key when it asks."
)
CLONE_SUSPECTED = (
    "This security key reported a use count lower than at its last use, as a copied key would. "
    "It was refused: use another key or a backup code, and tell support."
)


# -- settings ------------------------------------------------------------------------


def _origin_of(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) address")
    host = parts.hostname
    if ":" in host:  # an IPv6 literal keeps its brackets in an origin
        host = f"[{host}]"
    default_port = {"http": 80, "https": 443}[parts.scheme]
    port = f":{parts.port}" if parts.port and parts.port != default_port else ""
    return f"{parts.scheme}://{host}{port}"


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


class WebAuthnSettings(ModuleSettings):
    """``[modules.webauthn]``. Off until the operator switches it on.

    ``rp_id`` and ``origin`` left empty follow the host's ``[web] base_url`` (its host
    name and its scheme://host:port), read from the validation context each time the
    settings are loaded, so they are never written down and never go stale when the
    site moves. Set them only when the public address differs, e.g.
    ``rp_id = "example.com"`` to share keys between ``www.`` and ``portal.``. Read the
    values in use from :attr:`effective_rp_id` and :attr:`effective_origin`.
    """

    rp_id: str = SettingField(
        "",
        title="Relying party id",
        description=(
            "A domain (example.com) or localhost, never an IP address; "
            "empty: the host of [web] base_url."
        ),
    )
    origin: str = SettingField(
        "",
        title="Origin",
        description="scheme://host[:port] the browser shows; empty: that of [web] base_url.",
    )
    rp_name: str = SettingField(
        "secmod",
        min_length=1,
        max_length=64,
        title="Site name",
        description="The name the browser shows when asking for the key.",
    )
    user_verification: Literal["required", "preferred", "discouraged"] = SettingField(
        "preferred",
        title="User verification",
        description="required: only keys that check a PIN or fingerprint. preferred: ask for it.",
    )
    resident_key: Literal["required", "preferred", "discouraged"] = SettingField(
        "preferred",
        title="Discoverable credentials (passkeys)",
        description="preferred: passkeys allowed; discouraged: plain security-key credentials.",
    )
    attestation: Literal["none", "indirect", "direct"] = SettingField(
        "none",
        title="Attestation",
        description="none: no statement about the key's make and model is asked for (recommended).",
    )
    timeout_seconds: int = SettingField(300, ge=30, le=600, title="Ceremony timeout (seconds)")
    max_credentials: int = SettingField(10, ge=1, le=50, title="Keys per person")

    _base_origin: str = PrivateAttr(default=_origin_of(FALLBACK_BASE_URL))

    @field_validator("origin")
    @classmethod
    def _origin(cls, value: str) -> str:
        if not value.strip():
            return ""
        origin = _origin_of(value)
        if origin != value.strip().rstrip("/"):
            raise ValueError(f"origin must be scheme://host[:port] with no path, e.g. {origin!r}")
        return origin

    @field_validator("rp_id")
    @classmethod
    def _rp_id(cls, value: str) -> str:
        value = value.strip().lower()
        if not value:
            return ""
        if _is_ip(
            value
        ):  # valid here, refused by activate with the reason (switched off, harmless)
            return value.strip("[]")
        if "/" in value or ":" in value:
            raise ValueError(
                "rp_id must be a bare domain name such as example.com (no scheme, port or path)"
            )
        return value

    @model_validator(mode="after")
    def _relying_party(self, info: ValidationInfo) -> WebAuthnSettings:
        base_url = (info.context or {}).get("base_url") or FALLBACK_BASE_URL
        # A private attribute: the frozen model's fields keep exactly what was written.
        self._base_origin = _origin_of(base_url)
        host = (urlsplit(self.effective_origin).hostname or "").lower()
        rp_id = self.effective_rp_id
        if host != rp_id and not host.endswith("." + rp_id):
            raise ValueError(
                f"rp_id {rp_id!r} must be the origin's host {host!r} or a domain it belongs to"
            )
        return self

    @property
    def effective_origin(self) -> str:
        """The origin browsers must report: ``origin``, else that of ``[web] base_url``."""
        return self.origin or self._base_origin

    @property
    def effective_rp_id(self) -> str:
        """The relying-party id: ``rp_id``, else the host name of the effective origin."""
        return self.rp_id or (urlsplit(self.effective_origin).hostname or "")


def relying_party_problem(settings: WebAuthnSettings) -> str:
    """Why no browser will run a ceremony for these settings, or ``""``."""
    host = urlsplit(settings.effective_origin).hostname or ""
    if _is_ip(settings.effective_rp_id) or _is_ip(host):
        return (
            f"WebAuthn cannot run on an IP address ({settings.effective_rp_id}): browsers accept "
            "only a domain name or localhost as the relying party. Set [web] base_url to "
            "http://localhost:PORT or "
            "the site's domain (or set [modules.webauthn] rp_id and origin)."
        )
    if (
        urlsplit(settings.effective_origin).scheme != "https"
        and host != "localhost"
        and not host.endswith(".localhost")
    ):
        return (
            "Browsers offer security keys only on https:// pages (or http://localhost); the "
            f"origin {settings.effective_origin} is plain http. Serve the site over https and set "
            "[web] base_url to it."
        )
    return ""


def _usable(settings: ModuleSettings) -> WebAuthnSettings:
    if not isinstance(settings, WebAuthnSettings):  # the host validated them with our model
        raise TypeError(f"expected WebAuthnSettings, got {type(settings).__name__}")
    problem = relying_party_problem(settings)
    if problem:
        raise ModuleError(problem, reason="bad_relying_party")
    return settings


# -- state ---------------------------------------------------------------------------


def _credentials(state: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    return [dict(item) for item in (state or {}).get("credentials", ())]


def _descriptors(credentials: Sequence[Mapping[str, Any]]) -> list[PublicKeyCredentialDescriptor]:
    descriptors = []
    for item in credentials:
        transports = []
        for name in item.get("transports", ()):
            try:
                transports.append(AuthenticatorTransport(name))
            except ValueError:
                continue  # a transport this library does not know: the browser works without it
        descriptors.append(
            PublicKeyCredentialDescriptor(
                id=base64url_to_bytes(item["id"]), transports=transports or None
            )
        )
    return descriptors


def _day(timestamp: float | None) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d") if timestamp else "never"


def _list_keys(credentials: Sequence[Mapping[str, Any]]) -> str:
    lines = [
        f"{item['name']} (added {_day(item.get('created_at'))}, "
        f"last used {_day(item.get('last_used_at'))})"
        for item in credentials
    ]
    return "Your keys: " + "; ".join(lines) + "."


def _clean_name(raw: str) -> str:
    name = " ".join(raw.split())
    if len(name) > MAX_NAME or not name.isprintable():
        raise ModuleError(
            f"A key's name can have at most {MAX_NAME} printable characters.", reason="bad_name"
        )
    return name


def _credential_json(answer: Mapping[str, str]) -> str | None:
    """The credential's JSON as posted ("" when none), or ``None`` when it is too big to be one."""
    text = str(answer.get(ANSWER_FIELD, "")).strip()
    return None if len(text) > MAX_CREDENTIAL_JSON else text


# The library says what failed only in its messages; these become the audit reasons.
# Matched on how each message starts: the rest may quote what the client sent (an
# origin such as "https://challenge.evil" must not pass for a wrong challenge).
# tests/test_attacks.py pins each one, so a library release that rewords them is caught.
_FAILURES = (
    ("Client data challenge was not", "wrong_challenge"),
    ("Unexpected client data origin", "wrong_origin"),
    ("Unexpected RP ID hash", "wrong_rp_id"),
    ("Could not verify authentication signature", "bad_signature"),
    ("User was not present", "user_not_present"),
    ("User presence was required", "user_not_present"),
    ("User verification is required", "user_not_verified"),
    ("Unexpected client data type", "wrong_ceremony"),
)


def _reason(error: Exception) -> str:
    text = str(error)
    return next(
        (reason for prefix, reason in _FAILURES if text.startswith(prefix)), "invalid_response"
    )


# Hostile JSON reaches the library's parsers: whatever they raise on it is a refusal,
# never a crash (json nesting -> RecursionError, bad base64 -> binascii.Error...).
_BAD_INPUT = (
    WebAuthnException,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    OverflowError,
    RecursionError,
)


# -- hooks ---------------------------------------------------------------------------


@hookimpl
def configure() -> ModuleInfo:
    return ModuleInfo(
        name="webauthn",
        friendly_name="Security Key / Passkey",
        short_description="Touch a security key, or use a passkey on your phone or computer.",
        description=(
            "WebAuthn: a hardware security key (YubiKey, Titan...) or a passkey kept by the "
            "device or a password manager. Phishing-resistant; needs a browser."
        ),
        settings_model=WebAuthnSettings,
        contract=">=1.1,<2",
    )


@hookimpl
def activate(request: ActivateRequest) -> Activation:
    settings = _usable(request.settings)
    return Activation(
        message=f"Relying party {settings.effective_rp_id}, origin {settings.effective_origin}."
    )


@hookimpl
def setup_user(request: SetupRequest) -> SetupPrompt | SetupComplete:
    settings = _usable(request.settings)
    credentials = _credentials(request.state)
    if request.answer is None or request.pending is None:
        return _registration_prompt(settings, request, credentials)
    removing = str(request.answer.get(REMOVE_FIELD, "")).strip()
    response = _credential_json(request.answer)
    if removing and response != "":
        raise ModuleError("Register a new key or remove one, not both at once.", reason="ambiguous")
    if removing:
        return _remove(request, credentials, removing)
    if response is None:
        raise ModuleError(REGISTRATION_FAILED, reason="malformed")
    if not response:
        raise ModuleError(NO_CREDENTIAL, reason="no_credential")
    if len(credentials) >= settings.max_credentials:
        raise ModuleError(
            f"You already have {len(credentials)} keys, the most allowed. Remove one first.",
            reason="too_many_keys",
        )
    name = (
        _clean_name(str(request.answer.get(NAME_FIELD, "")))
        or f"Security key {len(credentials) + 1}"
    )
    if any(item["name"].casefold() == name.casefold() for item in credentials):
        raise ModuleError(
            f"You already have a key named {name!r}: choose another name.", reason="duplicate_name"
        )
    try:
        registration = parse_registration_credential_json(response)
        verified = verify_registration_response(
            credential=registration,
            expected_challenge=base64url_to_bytes(request.pending["challenge"]),
            expected_rp_id=settings.effective_rp_id,
            expected_origin=settings.effective_origin,
            require_user_verification=settings.user_verification == "required",
        )
    except _BAD_INPUT as error:
        reason = _reason(error)
        log.info("registration refused: %s (%s)", reason, type(error).__name__)
        raise ModuleError(REGISTRATION_FAILED, reason=reason) from None
    credential_id = bytes_to_base64url(verified.credential_id)
    if any(item["id"] == credential_id for item in credentials):
        raise ModuleError("This key is already registered for you.", reason="already_registered")
    transports = [t.value for t in (registration.response.transports or [])]
    credentials.append(
        {
            "id": credential_id,
            "public_key": bytes_to_base64url(verified.credential_public_key),
            "sign_count": verified.sign_count,
            "name": name,
            "transports": transports,
            "created_at": request.now,
            "last_used_at": None,
        }
    )
    return SetupComplete(
        state={"user_handle": request.pending["user_handle"], "credentials": credentials},
        message="Your security key is registered."
        if len(credentials) == 1
        else f"Your security key is registered. You now have {len(credentials)} keys.",
    )


def _registration_prompt(
    settings: WebAuthnSettings, request: SetupRequest, credentials: list[dict[str, Any]]
) -> SetupPrompt:
    user_handle = (request.state or {}).get("user_handle") or bytes_to_base64url(
        secrets.token_bytes(USER_HANDLE_BYTES)
    )
    options = generate_registration_options(
        rp_id=settings.effective_rp_id,
        rp_name=settings.rp_name,
        user_id=base64url_to_bytes(user_handle),
        user_name=request.user.label,
        user_display_name=request.user.name or request.user.label,
        timeout=settings.timeout_seconds * 1000,
        attestation=AttestationConveyancePreference(settings.attestation),
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement(settings.resident_key),
            user_verification=UserVerificationRequirement(settings.user_verification),
        ),
        exclude_credentials=_descriptors(credentials),
    )
    fields = [
        Field(
            name=NAME_FIELD,
            label="Name for this key",
            placeholder="e.g. Work laptop",
            max_length=MAX_NAME,
            autocomplete="off",
            required=False,
        )
    ]
    instructions = SETUP_INSTRUCTIONS
    if credentials:
        fields.append(
            Field(
                name=REMOVE_FIELD,
                label="Or remove the key named",
                max_length=MAX_NAME,
                autocomplete="off",
                required=False,
            )
        )
        instructions = (
            f"{_list_keys(credentials)} To add another, name it, press the button and touch it. "
            "To remove one instead, type its name under \u201cOr remove the key named\u201d and "
            "submit "
            "without touching a key."
        )
    fields.append(
        Field(name=ANSWER_FIELD, label="Security key response", kind="hidden", autocomplete="off")
    )
    prompt = Prompt(
        message=SETUP_MESSAGE,
        instructions=instructions,
        fields=tuple(fields),
        ceremony=BrowserCeremony(
            kind="webauthn.create", options_json=options_to_json(options), answer_field=ANSWER_FIELD
        ),
    )
    return SetupPrompt(
        prompt=prompt,
        pending={"challenge": bytes_to_base64url(options.challenge), "user_handle": user_handle},
    )


def _remove(request: SetupRequest, credentials: list[dict[str, Any]], name: str) -> SetupComplete:
    wanted = " ".join(name.split()).casefold()
    keep = [item for item in credentials if item["name"].casefold() != wanted]
    if len(keep) == len(credentials):
        raise ModuleError(
            "You have no key with that name. Type it as listed above.", reason="no_such_key"
        )
    if not keep:
        raise ModuleError(
            "That is your only key. Register another first, or turn Two-Factor Authentication "
            "off instead.",
            reason="last_key",
        )
    state = dict(request.state or {})
    return SetupComplete(
        state={**state, "credentials": keep},
        message=f"The key was removed. You have {len(keep)} left.",
    )


@hookimpl
def challenge(request: ChallengeRequest) -> Challenge:
    settings = _usable(request.settings)
    credentials = _credentials(request.state)
    if not credentials:
        raise ModuleError(
            "No security key is registered for you. Log in with your backup code.",
            reason="no_credentials",
        )
    options = generate_authentication_options(
        rp_id=settings.effective_rp_id,
        timeout=settings.timeout_seconds * 1000,
        allow_credentials=_descriptors(credentials),
        user_verification=UserVerificationRequirement(settings.user_verification),
    )
    prompt = Prompt(
        message=LOGIN_MESSAGE,
        instructions=LOGIN_INSTRUCTIONS,
        fields=(
            Field(
                name=ANSWER_FIELD, label="Security key response", kind="hidden", autocomplete="off"
            ),
        ),
        ceremony=BrowserCeremony(
            kind="webauthn.get", options_json=options_to_json(options), answer_field=ANSWER_FIELD
        ),
    )
    return Challenge(
        prompt=prompt,
        pending={"challenge": bytes_to_base64url(options.challenge)},
        expires_in=settings.timeout_seconds,
    )


@hookimpl
def verify(request: VerifyRequest) -> Verdict:
    settings = _usable(request.settings)
    if request.pending is None or "challenge" not in request.pending:
        # Used, expired, or never issued to this person: an old assertion cannot come back.
        return Rejected(reason="no_challenge")
    response = _credential_json(request.answer)
    if not response:
        return Rejected(reason="malformed")
    credentials = _credentials(request.state)
    try:
        assertion = parse_authentication_credential_json(response)
    except _BAD_INPUT:
        return Rejected(reason="malformed")
    credential_id = bytes_to_base64url(assertion.raw_id)
    stored = next((item for item in credentials if item["id"] == credential_id), None)
    if stored is None:
        return Rejected(reason="unknown_credential")
    user_handle = assertion.response.user_handle
    if user_handle is not None and bytes_to_base64url(user_handle) != request.state.get(
        "user_handle"
    ):
        return Rejected(reason="wrong_user_handle")
    try:
        verified = verify_authentication_response(
            credential=assertion,
            expected_challenge=base64url_to_bytes(request.pending["challenge"]),
            expected_rp_id=settings.effective_rp_id,
            expected_origin=settings.effective_origin,
            credential_public_key=base64url_to_bytes(stored["public_key"]),
            # 0 turns the library's own counter check off: it runs before the signature
            # is checked, so a forged answer could raise a false clone alarm. Ours is below.
            credential_current_sign_count=0,
            require_user_verification=settings.user_verification == "required",
        )
    except _BAD_INPUT as error:
        return Rejected(reason=_reason(error))
    previous = int(stored.get("sign_count", 0))
    # Authenticators without a counter (many synced passkeys) always send 0.
    if (verified.new_sign_count or previous) and verified.new_sign_count <= previous:
        log.warning(
            "security key %r of a %s user reported counter %d after %d: possible cloned key",
            stored["name"],
            request.user.audience.value,
            verified.new_sign_count,
            previous,
        )
        return Rejected(reason="counter_regressed", message=CLONE_SUSPECTED)
    updated = [
        {**item, "sign_count": verified.new_sign_count, "last_used_at": request.now}
        if item is stored
        else item
        for item in credentials
    ]
    return Accepted(state={**request.state, "credentials": updated})
