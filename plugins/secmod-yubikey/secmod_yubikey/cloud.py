"""YubiCloud (validation protocol 2.0) through the real ``yubico_client``.

yubico_client 1.13 never returns False: it returns the response or raises, and most
failure statuses, a server that is down and a timeout all end in the same bare
``Exception("NO_VALID_ANSWERS")`` (docs/protocols.md §2.5 in shared). To tell "the OTP
is bad" (the person's fault, counts towards the lockout) from "nobody answered" (not
their fault), :class:`_Client` notes the status of every response the client reads;
it also refuses what Yubico's own C client refuses and yubico_client lets through: an
``OK`` that does not echo our nonce. The protocol and all other checks stay the library's.

An error status signed with the *empty* key is what ykval sends before it knows the
client (its early errors); anyone on the path can forge one, so it never counts against
the person: it is reported as an outage (``unsigned_error``), like a server that does
not answer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import requests
from secmod.hookspecs import LogRedaction, provider_call
from yubico_client import Yubico
from yubico_client.yubico_exceptions import (
    InvalidClientIdError,
    InvalidValidationResponse,
    SignatureVerificationError,
    StatusCodeError,
)

__all__ = ["LOG_REDACTIONS", "CloudAnswer", "ask"]

log = logging.getLogger("secmod.yubikey")

_STATUS = re.compile(r"status=([A-Z0-9_]+)")
# Signed with our key, these say the service cannot judge right now.
_SERVICE_TROUBLE = {"BACKEND_ERROR", "NOT_ENOUGH_ANSWERS"}
# The statuses an operator must act on: the client id or the key is wrong.
_CONFIG_PROBLEM = {"BAD_SIGNATURE", "NO_SUCH_CLIENT", "MISSING_PARAMETER", "OPERATION_NOT_ALLOWED"}
# Statuses that say our side or the service is wrong, never the person.
_NOT_THEIR_FAULT = _SERVICE_TROUBLE | _CONFIG_PROBLEM


@dataclass(frozen=True, slots=True)
class CloudAnswer:
    """What the validation service said, reduced to what the module decides on.

    :param reason: ``ok``, ``replayed``, ``invalid_or_unavailable``, ``bad_response``,
        ``unavailable`` or ``unsigned_error``.
    :param counts: whether a rejection counts towards the person's lockout.
    :param statuses: every status read from a response signed with our key.
    :param unsigned: statuses read from responses signed with the empty key.
    :param response: the fields of an OK response (``sessioncounter``...).
    """

    reason: str
    counts: bool = True
    statuses: tuple[str, ...] = ()
    unsigned: tuple[str, ...] = ()
    response: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return self.reason == "ok"

    @property
    def outage(self) -> bool:
        """Nobody who could judge the OTP answered: a provider outage, never counted."""
        return self.reason in {"unavailable", "unsigned_error"}


class _Client(Yubico):
    """yubico_client's Yubico, noting the status of each response it reads."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.heard: list[str] = []
        self.unsigned: list[str] = []

    def verify_response(self, response: str, otp: str, nonce: str, return_response: bool = False) -> Any:
        # Called in the thread that called verify(), once per finished server reply.
        match = _STATUS.search(response or "")
        status = match.group(1) if match else ""
        if status != "OK" and self._signed_with_empty_key(response):
            # ykval's early errors, or a forgery: it says nothing about the OTP.
            self.unsigned.append(status)
            return False
        self.heard.append(status)
        result = super().verify_response(response, otp, nonce, return_response)
        if status == "OK":
            # The library checks the echoes only when present; a genuine OK has both.
            fields = self.get_parameters_as_dictionary(self.parse_parameters_from_response(response)[1])
            if fields.get("nonce") != nonce or fields.get("otp") != otp:
                raise InvalidValidationResponse("OK without our nonce and OTP echoed", response, fields)
        return result

    def _signed_with_empty_key(self, response: str) -> bool:
        signature, query = self.parse_parameters_from_response(response)
        expected = base64.b64encode(hmac.new(b"", query.encode(), hashlib.sha1).digest()).decode()
        return signature is not None and hmac.compare_digest(signature, expected)


def ask(
    otp: str,
    *,
    client_id: str,
    secret_key: str,
    api_urls: list[str],
    timeout: int,
    ca_file: str | None,
    max_retries: int,
    retry_delay: float,
) -> CloudAnswer:
    """Validate ``otp`` (already cleaned to modhex) with the validation servers.

    Never raises: every outcome of the library, including its bare ``Exception`` and
    the requests errors it lets through, becomes a :class:`CloudAnswer`.
    """
    client: _Client | None = None
    try:
        client = _Client(
            client_id, key=secret_key, translate_otp=False, api_urls=list(api_urls),
            ca_certs_bundle_path=ca_file, max_retries=max_retries, retry_delay=retry_delay,
        )
        with provider_call("yubicloud", "verify"):
            response = client.verify(otp, timestamp=True, timeout=timeout, return_response=True)
    except StatusCodeError as error:
        if error.status_code == "REPLAYED_OTP":
            return CloudAnswer("replayed", statuses=("REPLAYED_OTP",))
        return CloudAnswer("invalid_or_unavailable", statuses=(str(error.status_code),))
    except InvalidClientIdError:  # only without a key, which the settings forbid
        log.error("YubiKey: the validation server does not know client id %s", client_id)
        return CloudAnswer("invalid_or_unavailable", counts=False, statuses=("NO_SUCH_CLIENT",))
    except (SignatureVerificationError, InvalidValidationResponse) as error:
        # The answer is not from someone holding our API key, or it is for another
        # request: a misconfigured key or a man in the middle. Never the person.
        log.warning("YubiKey: a validation response failed its check (%s); is secret_key right?", type(error).__name__)
        return CloudAnswer("bad_response", counts=False)
    except requests.exceptions.RequestException as error:
        # With a single URL the library re-raises TLS errors (protocols.md §2.5).
        log.warning("YubiKey: validation server unreachable (%s)", type(error).__name__)
        return CloudAnswer("unavailable", counts=False)
    except Exception as error:  # the library's bare Exception("NO_VALID_ANSWERS"), and bugs
        heard = tuple(s for s in client.heard if s) if client is not None else ()
        unsigned = tuple(s for s in client.unsigned if s) if client is not None else ()
        if str(error) != "NO_VALID_ANSWERS":
            log.error("YubiKey: validation failed with %s", type(error).__name__)
        if unsigned:
            log.error("YubiKey: the validation server answered %s signed with the empty key (check client_id; "
                      "or someone on the path forged it)", ", ".join(sorted(set(unsigned))))
        problems = sorted(set(heard) & _CONFIG_PROBLEM)
        if problems:
            log.error("YubiKey: the validation server answered %s: check client_id and secret_key", ", ".join(problems))
        if any(status not in _NOT_THEIR_FAULT for status in heard):
            return CloudAnswer("invalid_or_unavailable", statuses=heard, unsigned=unsigned)
        if problems:
            return CloudAnswer("invalid_or_unavailable", counts=False, statuses=heard, unsigned=unsigned)
        reason = "unsigned_error" if unsigned else "unavailable"
        return CloudAnswer(reason, counts=False, statuses=heard, unsigned=unsigned)
    fields = response if isinstance(response, dict) else {}
    return CloudAnswer("ok", statuses=("OK",), response=dict(fields))


# Protocol 2.0 is a GET, so the OTP is in the URL: yubico_client logs whole request URLs
# (``otp=...&nonce=...&h=...``) at DEBUG, response parameters on a signature mismatch
# at WARNING, and requests' error text (which quotes the URL) at ERROR; urllib3 logs the
# URL at DEBUG. An OTP that never reached a server is still a live credential. The host
# masks these in both loggers (ModuleInfo.log_redactions); modules install no filters.
_LIBRARY_LOGGERS = ("yubico.client", "urllib3.connectionpool")
LOG_REDACTIONS = (
    LogRedaction(pattern=r"(?<=\botp=)[^&\s'\",)]+", loggers=_LIBRARY_LOGGERS),
    LogRedaction(pattern=r"(?<=\bnonce=)[^&\s'\",)]+", loggers=_LIBRARY_LOGGERS),
    LogRedaction(pattern=r"(?<=\bh=)[^&\s'\",)]+", loggers=_LIBRARY_LOGGERS),
    LogRedaction(pattern=r"\b[cbdefghijklnrtuv]{32,48}\b", loggers=_LIBRARY_LOGGERS),  # a bare OTP
)
