"""YubiCloud (validation protocol 2.0) through the real ``yubico_client``.

yubico_client 1.13 never returns False: it returns the response or raises, and most
failure statuses, a server that is down and a timeout all end in the same bare
``Exception("NO_VALID_ANSWERS")`` (docs/protocols.md §2.5 in shared). To tell "the OTP
is bad" (the person's fault, counts towards the lockout) from "nobody answered" (not
their fault), :class:`_Client` notes the status of every response the client reads;
that is the only thing it changes, the protocol and all checks stay the library's.
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
from secmod.hookspecs import provider_call
from yubico_client import Yubico
from yubico_client.yubico_exceptions import (
    InvalidClientIdError,
    InvalidValidationResponse,
    SignatureVerificationError,
    StatusCodeError,
)

__all__ = ["CloudAnswer", "ask", "install_log_redaction"]

log = logging.getLogger("secmod.yubikey")

_STATUS = re.compile(r"status=([A-Z0-9_]+)")
# ykval answers these before it knows the client, so it signs them with an empty key
# (protocols.md §2.6 steps 2-7); yubico_client then reports a signature error instead.
_UNSIGNED_EARLY = {"MISSING_PARAMETER", "BAD_OTP", "NO_SUCH_CLIENT"}
# Statuses that say our side or the service is wrong, never the person.
_NOT_THEIR_FAULT = {
    "BAD_SIGNATURE", "NO_SUCH_CLIENT", "MISSING_PARAMETER", "OPERATION_NOT_ALLOWED",
    "BACKEND_ERROR", "NOT_ENOUGH_ANSWERS",
}
# The statuses an operator must act on: the client id or the key is wrong.
_CONFIG_PROBLEM = {"BAD_SIGNATURE", "NO_SUCH_CLIENT", "MISSING_PARAMETER", "OPERATION_NOT_ALLOWED"}


@dataclass(frozen=True, slots=True)
class CloudAnswer:
    """What the validation service said, reduced to what the module decides on.

    :param reason: ``ok``, ``replayed``, ``invalid_or_unavailable``, ``bad_response``
        or ``unavailable``.
    :param counts: whether a rejection counts towards the person's lockout.
    :param statuses: every status read from a response (for the operator's log).
    :param response: the fields of an OK response (``sessioncounter``...).
    """

    reason: str
    counts: bool = True
    statuses: tuple[str, ...] = ()
    response: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return self.reason == "ok"


class _Client(Yubico):
    """yubico_client's Yubico, noting the status of each response it reads."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.heard: list[str] = []

    def verify_response(self, response: str, otp: str, nonce: str, return_response: bool = False) -> Any:
        # Called in the thread that called verify(), once per finished server reply.
        match = _STATUS.search(response or "")
        status = match.group(1) if match else ""
        self.heard.append(status)
        if status in _UNSIGNED_EARLY and self._signed_with_empty_key(response):
            # The early errors of ykval: nothing to accept, and not an attack either.
            return False
        return super().verify_response(response, otp, nonce, return_response)

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
        if not heard:
            if str(error) != "NO_VALID_ANSWERS":
                log.error("YubiKey: validation failed with %s", type(error).__name__)
            return CloudAnswer("unavailable", counts=False)
        problems = sorted(set(heard) & _CONFIG_PROBLEM)
        if problems:
            log.error("YubiKey: the validation server answered %s: check client_id and secret_key", ", ".join(problems))
        counts = any(status not in _NOT_THEIR_FAULT for status in heard)
        return CloudAnswer("invalid_or_unavailable", counts=counts, statuses=heard)
    fields = response if isinstance(response, dict) else {}
    # yubico_client checks the otp echo only when present; a signed OK always has it.
    if fields.get("otp") != otp:
        log.warning("YubiKey: an OK validation response did not echo the OTP")
        return CloudAnswer("bad_response", counts=False)
    return CloudAnswer("ok", statuses=("OK",), response=dict(fields))


class _Redact(logging.Filter):
    """Masks OTPs, nonces and signatures in yubico_client's own log lines.

    The library logs whole request URLs (``otp=...&h=...``) at DEBUG, response
    parameters on a signature mismatch at WARNING, and requests' error text (which
    quotes the URL) at ERROR when a server is down.
    """

    _SECRET = re.compile(r"((?:otp|nonce|h)=)[^&\s'\",)]+")
    _MODHEX = re.compile(r"\b([cbdefghijklnrtuv]{0,16})[cbdefghijklnrtuv]{32}\b")

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a broken format string is the library's; drop its args
            text = str(record.msg)
        text = self._SECRET.sub(r"\1***", text)
        record.msg = self._MODHEX.sub(r"\1***", text)
        record.args = None
        return True


def install_log_redaction() -> None:
    """Attach the redaction filter to the loggers that see our request URLs (once).

    Protocol 2.0 is a GET, so the OTP is in the URL: yubico_client logs it, and so
    does urllib3 at DEBUG. An OTP that never reached a server (it was down) is still
    a live credential, so both loggers get the filter; it only rewrites the
    ``otp=``/``nonce=``/``h=`` values and OTP-shaped words of their messages.
    """
    for name in ("yubico.client", "urllib3.connectionpool"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Redact) for f in logger.filters):
            logger.addFilter(_Redact())
