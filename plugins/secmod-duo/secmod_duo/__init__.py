"""DuoSecurity: WHMCS's Duo module (8.9+, Universal Prompt) on the official client.

The login goes: ``challenge`` runs Duo's health check, makes a fresh ``state`` and a
``nonce`` and returns the URL of Duo's prompt; the host keeps ``state``, ``nonce`` and
the Duo username sealed, bound to this user and this login attempt, and hands them to
``verify`` once. Duo sends the browser back with ``duo_code`` and ``state``; ``verify``
compares the state in constant time, exchanges the code with Duo (which checks the
signature, issuer, audience, expiry, username and nonce of the id_token) and requires
``auth_result.status == "allow"``, which the client itself never looks at.

WHMCS 8.12 trusts the state round-trip alone; this module does not.

The browser comes back to ``ChallengeRequest.callback_url`` (the host's
``/login/duo/callback``) unless the operator sets ``redirect_url``. When Duo cannot be
reached the hooks raise :class:`~secmod.hookspecs.ProviderUnavailable`, and the host
applies the operator's ``fail_mode`` for this module.

Module state, sealed by the host: ``username``, the name Duo knows the person by,
fixed at enrolment so that changing an email later cannot point an existing enrolment
at somebody else's Duo account.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
import secrets
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import duo_universal
import duo_universal.client as _duo_client
import jwt
import requests
from pydantic import ConfigDict, SecretStr, field_validator, model_validator
from pydantic import Field as SettingField

from secmod.hookspecs import (
    Accepted,
    Activation,
    ActivateRequest,
    Challenge,
    ChallengeRequest,
    LogRedaction,
    ModuleError,
    ModuleInfo,
    ModuleSettings,
    Prompt,
    ProviderUnavailable,
    Rejected,
    SetupComplete,
    SetupRequest,
    User,
    Verdict,
    VerifyRequest,
    hookimpl,
    messages,
    provider_call,
)

__all__ = ["DuoClient", "DuoSettings"]

log = logging.getLogger("secmod.duo")

CHALLENGE_SECONDS = 300
"""How long a login may spend at Duo's prompt (Duo's own JWTs live 5 minutes too)."""
CLIENT_ID_LENGTH = 20
CLIENT_SECRET_LENGTH = 40
REDIRECT_NOTICE = "You are being sent to Duo Security to approve this login."
# duo_universal sends the token exchange's parameters (the one-time duo_code and the
# signed client assertion) in the URL, and urllib3 logs request URLs at DEBUG.
TOKEN_QUERY = LogRedaction(pattern=r"(?<=/oauth/v1/token\?)[^\s\"']+")

_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_ERROR_CODE = re.compile(r"^[a-z0-9_]{1,40}$")
_LOOPBACK_NAMES = {"localhost"}


# -- settings -----------------------------------------------------------------------

class DuoSettings(ModuleSettings):
    """``[modules.duo]``: the three WHMCS settings plus what a Python host needs.

    Every field has a default so that an installed but unconfigured Duo module does not
    stop the host from starting; the credentials are required as soon as the module is
    enabled for clients or admins.
    """

    # Pydantic puts the rejected value in str(ValidationError); the secret must not be.
    model_config = ConfigDict(hide_input_in_errors=True)

    client_id: str = SettingField("", title="Client ID",
                                  description="The Client ID of the Duo Web SDK application (20 characters).")
    client_secret: SecretStr = SettingField(SecretStr(""), title="Client Secret",
                                            description="The Client Secret of that application (40 characters).")
    api_hostname: str = SettingField("", title="API Hostname",
                                     description="e.g. api-XXXXXXXX.duosecurity.com, without https:// or a path.")
    redirect_url: str = SettingField(
        "", title="Redirect URL",
        description="Leave empty: the host sends Duo its own callback, [web] base_url + /login/duo/callback. "
                    "Set it only when Duo must send the browser somewhere else.")
    username: Literal["email", "id"] = SettingField(
        "email", title="Duo username", description="What Duo knows the person by: their email (as WHMCS) or id.")
    http_timeout: float = SettingField(10.0, gt=0, le=60, title="HTTP timeout (seconds)")
    ca_file: str | None = SettingField(
        None, title="CA bundle",
        description="A CA file or folder to trust instead of Duo's pinned CAs (TLS inspection, tests).")

    @field_validator("client_id", "api_hostname", "redirect_url", mode="before")
    @classmethod
    def _strip(cls, value: Any) -> Any:
        # Pasted from the Duo Admin Panel, values often carry a space or a newline.
        return value.strip() if isinstance(value, str) else value

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, value: str) -> str:
        if value and (len(value) != CLIENT_ID_LENGTH or not value.isascii() or not value.isalnum()):
            raise ValueError(
                f"Client ID must be exactly {CLIENT_ID_LENGTH} letters and digits (this one has "
                f"{len(value)} characters); copy it from the Duo Web SDK application"
            )
        return value

    @field_validator("client_secret", mode="before")
    @classmethod
    def _client_secret(cls, value: Any) -> Any:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not isinstance(raw, str):
            return value  # pydantic's own type error, which never shows the value here
        raw = raw.strip()
        if raw and (len(raw) != CLIENT_SECRET_LENGTH or not raw.isascii() or not raw.isprintable()):
            raise ValueError(
                f"Client Secret must be exactly {CLIENT_SECRET_LENGTH} characters (this one has {len(raw)}); "
                "copy it from the Duo Web SDK application"
            )
        return SecretStr(raw)

    @field_validator("api_hostname")
    @classmethod
    def _api_hostname(cls, value: str) -> str:
        if not value:
            return value
        if "://" in value:
            raise ValueError("API Hostname must not include a scheme: give api-XXXXXXXX.duosecurity.com, not https://...")
        if any(char in value for char in "/?#@ \\"):
            raise ValueError("API Hostname must be a host name only, without a path, e.g. api-XXXXXXXX.duosecurity.com")
        host, _, port = value.partition(":")
        if port and not (port.isdigit() and 1 <= int(port) <= 65535):
            raise ValueError("API Hostname has a port that is not a number from 1 to 65535")
        if len(host) > 253 or not all(_LABEL.match(label) for label in host.split(".")):
            raise ValueError("API Hostname is not a valid host name, e.g. api-XXXXXXXX.duosecurity.com")
        return value.lower()

    @field_validator("redirect_url")
    @classmethod
    def _redirect_url(cls, value: str) -> str:
        if not value:
            return value
        url = urlsplit(value)
        if url.scheme not in ("https", "http") or not url.hostname:
            raise ValueError("Redirect URL must be an absolute https:// URL, e.g. https://portal.example.com/login/duo/callback")
        if url.fragment:
            raise ValueError("Redirect URL must not have a #fragment")
        if url.scheme == "http" and not _is_loopback(url.hostname):
            # duo_code and state travel in this URL: plain http only on the machine itself.
            raise ValueError("Redirect URL must use https:// (plain http:// is allowed for localhost only)")
        return value

    @field_validator("ca_file")
    @classmethod
    def _ca_file(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        path = Path(value.strip()).expanduser()
        if not path.exists():
            raise ValueError(f"CA bundle {str(path)!r} does not exist")
        return str(path)

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> DuoSettings:
        if self.clients or self.admins:
            missing = [label for label, present in (
                ("client_id (Client ID)", self.client_id),
                ("client_secret (Client Secret)", self.client_secret.get_secret_value()),
                ("api_hostname (API Hostname)", self.api_hostname),
            ) if not present]
            if missing:
                raise ValueError("the Duo module is enabled but these settings are empty: " + ", ".join(missing))
        return self

    @property
    def configured(self) -> bool:
        return bool(self.client_id and self.client_secret.get_secret_value() and self.api_hostname)


def _is_loopback(hostname: str) -> bool:
    if hostname.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


# -- the client ---------------------------------------------------------------------
#
# duo_universal calls the module-level ``requests.post`` with no timeout, so a Duo that
# accepts the connection and never answers would hold the login (and a worker) forever
# (protocols.md §0.1), and it has no session or timeout argument. DuoClient runs the
# library's own network methods, unchanged, with ``requests`` and ``jwt`` names of its
# own: the library module is never touched, so other callers of duo_universal and
# other threads see it exactly as it is. The hang tests fail if a future
# duo_universal stops going through those names.


class _RequestsWithTimeout:
    """``requests`` as one client's copies of the methods see it: every post bounded."""

    exceptions = requests.exceptions

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self._seconds)
        return requests.post(url, **kwargs)


class _JwtWithFullLengthKey:
    """``jwt`` with the HMAC key zero-padded to the 64 bytes PyJWT expects for HS512.

    Duo's client secrets are 40 characters, and PyJWT warns (InsecureKeyLengthWarning)
    on every encode and decode, which breaks logins under ``-W error``. HMAC pads any
    key shorter than the hash's block (128 bytes for SHA-512) with zero bytes (RFC 2104
    §2), so the padded key signs and verifies exactly the same bytes. Unlike
    ``warnings.catch_warnings``, this changes no process-wide state.
    """

    @staticmethod
    def _key(key: str | bytes) -> bytes:
        raw = key.encode() if isinstance(key, str) else key
        return raw.ljust(64, b"\0")

    def encode(self, payload: dict[str, Any], key: str | bytes, algorithm: str) -> str:
        return jwt.encode(payload, self._key(key), algorithm=algorithm)

    def decode(self, token: str, key: str | bytes, **kwargs: Any) -> Any:
        return jwt.decode(token, self._key(key), **kwargs)


_NETWORK_METHODS = ("health_check", "create_auth_url", "exchange_authorization_code_for_2fa_result")


class DuoClient(duo_universal.Client):
    """``duo_universal.Client`` whose HTTP requests time out after ``timeout`` seconds
    and whose JWTs raise no key-length warning; everything else is the library's."""

    def __init__(self, *args: Any, timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        names = {**vars(_duo_client), "requests": _RequestsWithTimeout(timeout), "jwt": _JwtWithFullLengthKey()}
        for name in _NETWORK_METHODS:
            method = getattr(duo_universal.Client, name)
            own = types.FunctionType(method.__code__, names, name, method.__defaults__, method.__closure__)
            setattr(self, name, types.MethodType(own, self))


# -- failures -----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Failure:
    """A classified client failure.

    :param reason: the audit code.
    :param kind: ``refused`` (Duo or the token says no: counts towards the lockout),
        ``outage`` (Duo could not be asked: the fail mode applies), ``provider`` (Duo
        answered wrongly: not the person's fault, never fails open), ``config`` (our
        settings are wrong: never fails open).
    :param explain: plain words for the operator; never a secret, code or state.
    """

    reason: str
    kind: Literal["refused", "outage", "provider", "config"]
    explain: str


def _classify(error: BaseException, settings: DuoSettings) -> _Failure:
    """What a duo_universal failure means (the full map is protocols.md §1.7)."""
    host = settings.api_hostname
    # The client wraps causes in DuoException, health failures twice.
    cause: Any = error
    while isinstance(cause, duo_universal.DuoException) and cause.args and isinstance(cause.args[0], BaseException):
        cause = cause.args[0]
    payload = cause.args[0] if isinstance(cause, duo_universal.DuoException) and cause.args else cause

    # requests: Timeout before ConnectionError (ConnectTimeout is both), SSLError too.
    if isinstance(payload, requests.exceptions.Timeout):
        return _Failure("timeout", "outage", f"{host} did not answer within {settings.http_timeout:g} s")
    if isinstance(payload, requests.exceptions.SSLError):
        return _Failure("tls_error", "provider",
                        f"the TLS certificate of {host} could not be verified (behind TLS inspection? set ca_file)")
    if isinstance(payload, requests.exceptions.ConnectionError):
        return _Failure("unavailable", "outage", f"could not connect to {host}")
    if isinstance(payload, ValueError):
        # json.JSONDecodeError: an error page that is not JSON (a 5xx from a proxy),
        # which the token exchange lets escape unwrapped (protocols.md §0.3); also
        # requests' own JSONDecodeError for a 200 that is not JSON, hence before the next.
        return _Failure("provider_error", "outage", f"{host} answered with an error page that is not Duo's JSON")
    if isinstance(payload, requests.exceptions.RequestException):
        return _Failure("unavailable", "outage", f"the request to {host} failed ({type(payload).__name__})")
    if isinstance(payload, dict):
        return _classify_body(payload, host)
    if isinstance(payload, KeyError):
        return _Failure("invalid_response", "provider", f"{host} answered without an id_token")
    if payload == _duo_client.ERR_USERNAME:
        return _Failure("username_mismatch", "refused", "the id_token is for another Duo user")
    if payload == _duo_client.ERR_NONCE:
        return _Failure("nonce_mismatch", "refused", "the id_token's nonce is not this login's")
    if isinstance(payload, jwt.InvalidSignatureError):
        return _Failure("bad_signature", "refused", "the id_token's signature does not match the Client Secret")
    if isinstance(payload, jwt.ExpiredSignatureError | jwt.ImmatureSignatureError):
        # Duo signs the token seconds before we read it: an expired or future one
        # means this server's clock is off, which no user should be locked out for.
        return _Failure("token_expired", "provider", "the id_token is expired or not yet valid: check this server's clock")
    if isinstance(payload, jwt.InvalidTokenError):
        return _Failure("invalid_token", "refused", f"the id_token was refused ({type(payload).__name__})")
    return _Failure("duo_error", "provider", f"the Duo client failed ({type(payload).__name__})")


def _classify_body(body: dict[str, Any], host: str) -> _Failure:
    """A JSON error from Duo: OAuth errors from the token endpoint, stat FAIL elsewhere."""
    error = str(body.get("error") or body.get("message") or "")
    if error == "invalid_grant":
        return _Failure("invalid_grant", "refused", "Duo does not know this code, or it was used already")
    if error in ("invalid_client", "unauthorized_client", "invalid_request", "unsupported_grant_type", "invalid_scope"):
        detail = str(body.get("error_description") or body.get("message_detail") or "")[:200]
        return _Failure(error, "config", f"Duo refused the Client ID or Client Secret ({error}{': ' + detail if detail else ''})")
    # A 5xx with a JSON body, or health_check's stat FAIL for any other reason.
    detail = str(body.get("message_detail") or body.get("error_description") or error or "no detail")[:200]
    return _Failure("provider_error", "outage", f"{host} reported a problem: {detail}")


def _refusal(failure: _Failure) -> Verdict:
    """A failure at verify: the person's (counted) or not; an outage is the host's call."""
    if failure.kind == "refused":
        return Rejected(reason=failure.reason)  # the host adds WHMCS's text and attempts left
    log.warning("Duo login could not be checked: %s", failure.explain)
    if failure.kind == "outage":
        # The host refuses without counting, or lets the person in where the operator
        # set fail_mode = "open" for this module.
        raise ProviderUnavailable(messages.DUO_DISRUPTION, reason=failure.reason)
    message = messages.DUO_UNAVAILABLE if failure.kind == "config" else messages.DUO_DISRUPTION
    return Rejected(reason=failure.reason, message=message, counts=False)


# -- helpers ------------------------------------------------------------------------

# The health check sends no redirect URL, but the client insists on having one.
_UNUSED_REDIRECT = "https://localhost/health-check-only"


def _client(settings: DuoSettings, redirect_url: str = "") -> DuoClient:
    if not settings.configured:
        raise ModuleError(messages.DUO_UNAVAILABLE, reason="not_configured")
    extra = {"duo_certs": settings.ca_file} if settings.ca_file else {}  # default: Duo's pinned CAs
    return DuoClient(
        settings.client_id, settings.client_secret.get_secret_value(), settings.api_hostname,
        redirect_url or _UNUSED_REDIRECT, timeout=settings.http_timeout, **extra,
    )


def _duo_username(settings: DuoSettings, user: User) -> str:
    name = user.email.strip() if settings.username == "email" else user.id
    if not name:
        raise ModuleError(
            "Duo Security needs an email address on your account. Please add one and try again.",
            reason="no_email",
        )
    return name


def _health_check(settings: DuoSettings) -> _Failure | None:
    try:
        with provider_call("duo", "health_check"):
            _client(settings).health_check()
    except ModuleError:
        raise
    except Exception as error:  # DuoException, and whatever escapes it unwrapped
        return _classify(error, settings)
    return None


# -- hooks --------------------------------------------------------------------------

@hookimpl
def configure() -> ModuleInfo:
    return ModuleInfo(
        name="duo",
        friendly_name="Duo Security",
        short_description="Get codes via Duo Push, SMS or Phone Callback.",
        description=(
            "Duo's Universal Prompt: the person approves the login at Duo (push, SMS, phone "
            "call) and is sent back. Needs a Duo \"Web SDK\" application."
        ),
        settings_model=DuoSettings,
        redirects=True,
        log_redactions=(TOKEN_QUERY,),
    )


@hookimpl
def activate(request: ActivateRequest[DuoSettings]) -> Activation:
    settings = request.settings
    if not settings.configured:
        raise ModuleError(
            "not configured: set client_id, client_secret and api_hostname in [modules.duo]",
            reason="not_configured",
        )
    failure = _health_check(settings)
    if failure is not None:
        raise ModuleError(f"health check failed: {failure.explain}", reason=failure.reason)
    return Activation(message=f"Duo health check passed at {settings.api_hostname}")


@hookimpl
def setup_user(request: SetupRequest[DuoSettings]) -> SetupComplete:
    # As WHMCS: nothing to exchange here; Duo enrols the person at their first Duo login.
    settings = request.settings
    return SetupComplete(state={"username": _duo_username(settings, request.user)},
                         message=messages.DUO_SETUP_NEXT_LOGIN)


@hookimpl
def challenge(request: ChallengeRequest[DuoSettings]) -> Challenge:
    settings = request.settings
    username = str(request.state.get("username") or _duo_username(settings, request.user))
    redirect_url = settings.redirect_url or request.callback_url
    if not redirect_url:
        raise ModuleError(messages.DUO_UNAVAILABLE, reason="no_callback_url")
    failure = _health_check(settings)
    if failure is not None:
        log.warning("Duo health check failed: %s", failure.explain)
        if failure.kind == "outage":
            # No prompt to send the person to; the host applies this module's fail_mode.
            raise ProviderUnavailable(messages.DUO_DISRUPTION, reason=failure.reason)
        message = messages.DUO_UNAVAILABLE if failure.kind == "config" else messages.DUO_DISRUPTION
        raise ModuleError(message, reason=failure.reason)
    client = _client(settings, redirect_url)
    state = client.generate_state()  # 36 characters; Duo accepts 16..1024
    nonce = secrets.token_urlsafe(32)  # 43 characters; Duo accepts 17..1023
    url = client.create_auth_url(username, state, nonce)
    return Challenge(
        prompt=Prompt(message=REDIRECT_NOTICE, redirect_url=url),
        # The token exchange must name the same redirect URL as the prompt did.
        pending={"state": state, "nonce": nonce, "username": username, "issued_at": request.now,
                 "redirect_url": redirect_url},
        expires_in=CHALLENGE_SECONDS,
    )


@hookimpl
def verify(request: VerifyRequest[DuoSettings]) -> Verdict:
    settings = request.settings
    try:
        return _verify(settings, request)
    except ProviderUnavailable:
        raise
    except ModuleError as error:
        return Rejected(reason=error.reason, message=error.message, counts=False)
    except Exception as error:
        # Whatever happens, the person gets a clear refusal, never a stack trace. The
        # type only: exception texts may quote a code.
        log.error("Duo verify failed unexpectedly: %s", type(error).__name__)
        log.debug("Duo verify failure", exc_info=True)
        return Rejected(reason="module_error", message=messages.DUO_UNAVAILABLE, counts=False)


def _verify(settings: DuoSettings, request: VerifyRequest) -> Verdict:
    pending = request.pending
    if pending is None:
        # No challenge for this answer: expired, already used (a replayed state), or
        # started by somebody else (the host binds pending data to the person). Nothing
        # was judged and nothing can be accepted this way, so it costs the person nothing:
        # a cross-site link to the callback must not burn their attempts.
        return Rejected(reason="no_challenge", counts=False)
    if request.now - float(pending.get("issued_at", 0)) > CHALLENGE_SECONDS:
        return Rejected(reason="expired")
    answer = request.answer
    duo_error = answer.get("error")
    if duo_error:
        # Duo's redirect carries error= when the prompt could not finish (the person
        # cancelled, a policy refused). Only a short code goes to the audit.
        code = duo_error if _ERROR_CODE.match(duo_error) else "other"
        return Rejected(reason=f"duo_error:{code}")
    state = answer.get("state") or ""
    duo_code = answer.get("duo_code") or ""
    if not state or not duo_code:
        return Rejected(reason="malformed")
    if not hmac.compare_digest(state.encode(), str(pending["state"]).encode()):
        return Rejected(reason="state_mismatch")
    client = _client(settings, str(pending.get("redirect_url") or settings.redirect_url))
    try:
        with provider_call("duo", "token_exchange"):
            claims = client.exchange_authorization_code_for_2fa_result(
                duo_code, str(pending["username"]), nonce=str(pending["nonce"])
            )
    except Exception as error:  # DuoException, and json.JSONDecodeError unwrapped
        return _refusal(_classify(error, settings))
    result = claims.get("auth_result")
    # duo_universal returns a correctly signed "deny" as if it were a success.
    if not isinstance(result, dict) or result.get("status") != "allow":
        return Rejected(reason="deny")
    return Accepted(reason="ok")
