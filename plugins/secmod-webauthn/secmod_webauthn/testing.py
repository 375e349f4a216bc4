"""Test doubles for WebAuthn: a software authenticator and the conformance driver.

:class:`SoftAuthenticator` plays a security key and the browser around it: it reads the
options a :class:`~secmod.hookspecs.BrowserCeremony` carries and returns the
credential's JSON exactly as ``PublicKeyCredential.toJSON()`` would (base64url
members). It is written from the WebAuthn spec (§6.1 authenticator data, §6.5.1
attested credential data, §8.7 "none" attestation, COSE ES256 keys from RFC 9053),
with ``cryptography`` and ``cbor2``, not from the module's code, so a mistake shared by
the module and its tests cannot hide.

Every knob an attack test needs is a keyword argument: another ``origin``, ``rp_id``,
``challenge``, ``sign_count``, no user presence or verification.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from secmod.hookspecs import Prompt, User
from secmod.testing.contract import ModuleDriver

__all__ = [
    "CredentialExcluded",
    "SoftAuthenticator",
    "SoftCredential",
    "WebAuthnDriver",
    "b64url",
    "from_b64url",
]

FLAG_UP = 0x01  # user present
FLAG_UV = 0x04  # user verified
FLAG_AT = 0x40  # attested credential data included
COSE_ES256 = -7


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def from_b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CredentialExcluded(Exception):
    """The options exclude a credential this authenticator holds (the browser's
    ``InvalidStateError``): a key cannot be registered twice."""


@dataclass
class SoftCredential:
    """One credential the authenticator holds: its key, whose it is and its counter."""

    credential_id: bytes
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)
    rp_id: str
    user_handle: bytes = field(repr=False)
    sign_count: int = 0

    def cose_public_key(self) -> bytes:
        numbers = self.private_key.public_key().public_numbers()
        return cbor2.dumps(
            {
                1: 2,
                3: COSE_ES256,
                -1: 1,
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )


def _credential_json(credential: SoftCredential, response: dict[str, Any]) -> str:
    """A ``PublicKeyCredential`` as the browser serialises it, around ``response``."""
    return json.dumps(
        {
            "id": b64url(credential.credential_id),
            "rawId": b64url(credential.credential_id),
            "type": "public-key",
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
            "response": response,
        }
    )


class SoftAuthenticator:
    """A platform authenticator with its browser, at ``origin``.

    :param origin: where the browser is (``clientDataJSON.origin``).
    :param counter_step: how much the signature counter grows per use; 0 plays a passkey
        that keeps no counter (always 0).
    :param user_verified: whether it checks a PIN or fingerprint (the UV flag).
    """

    def __init__(
        self,
        origin: str = "http://localhost:8000",
        *,
        counter_step: int = 1,
        user_verified: bool = True,
    ) -> None:
        self.origin = origin
        self.counter_step = counter_step
        self.user_verified = user_verified
        self.credentials: dict[bytes, SoftCredential] = {}

    # -- registration ------------------------------------------------------------------

    def create(
        self,
        options_json: str,
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        challenge: str | None = None,
        reuse: bytes | None = None,
    ) -> str:
        """``navigator.credentials.create()``: a new ES256 credential, "none" attestation.

        :param reuse: register this held credential again, as a browser that ignores
            ``excludeCredentials`` would let a key do.
        """
        options = json.loads(options_json)
        excluded = {from_b64url(item["id"]) for item in options.get("excludeCredentials", ())}
        if reuse is None and excluded & set(self.credentials):
            raise CredentialExcluded("this authenticator already holds an excluded credential")
        assert any(p["alg"] == COSE_ES256 for p in options["pubKeyCredParams"]), (
            "the RP must allow ES256"
        )
        rp = rp_id or options["rp"]["id"]
        if reuse is not None:
            credential = self.credentials[reuse]
        else:
            credential = SoftCredential(
                credential_id=os.urandom(32),
                private_key=ec.generate_private_key(ec.SECP256R1()),
                rp_id=options["rp"]["id"],
                user_handle=from_b64url(options["user"]["id"]),
            )
            self.credentials[credential.credential_id] = credential
        attested = (
            bytes(16)  # AAGUID: zeros, as "none" attestation reports it
            + struct.pack(">H", len(credential.credential_id))
            + credential.credential_id
            + credential.cose_public_key()
        )
        auth_data = (
            self._authenticator_data(rp, credential.sign_count, extra_flags=FLAG_AT) + attested
        )
        client_data = self._client_data(
            "webauthn.create", challenge or options["challenge"], origin
        )
        return _credential_json(
            credential,
            {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(
                    cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
                ),
                "transports": ["internal"],
            },
        )

    # -- authentication ----------------------------------------------------------------

    def holds_any(self, options_json: str) -> bool:
        allowed = json.loads(options_json).get("allowCredentials") or []
        return any(from_b64url(item["id"]) in self.credentials for item in allowed)

    def get(
        self,
        options_json: str,
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        challenge: str | None = None,
        sign_count: int | None = None,
        user_present: bool = True,
        credential_id: bytes | None = None,
        user_handle: bytes | None = None,
    ) -> str:
        """``navigator.credentials.get()``: an assertion by a credential the options allow."""
        options = json.loads(options_json)
        credential = self._pick(options, credential_id)
        if sign_count is None:
            credential.sign_count += self.counter_step
            count = credential.sign_count
        else:
            count = sign_count
        auth_data = self._authenticator_data(
            rp_id or options["rpId"], count, user_present=user_present
        )
        client_data = self._client_data("webauthn.get", challenge or options["challenge"], origin)
        signature = credential.private_key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        return _credential_json(
            credential,
            {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": b64url(
                    user_handle if user_handle is not None else credential.user_handle
                ),
            },
        )

    def _pick(self, options: dict[str, Any], credential_id: bytes | None) -> SoftCredential:
        if credential_id is not None:
            return self.credentials[credential_id]
        allowed = [from_b64url(item["id"]) for item in options.get("allowCredentials") or []]
        for wanted in allowed:
            if wanted in self.credentials:
                return self.credentials[wanted]
        if not allowed:  # discoverable: any credential for this relying party
            for credential in self.credentials.values():
                if credential.rp_id == options["rpId"]:
                    return credential
        raise LookupError("this authenticator holds none of the allowed credentials")

    def _authenticator_data(
        self, rp_id: str, sign_count: int, *, extra_flags: int = 0, user_present: bool = True
    ) -> bytes:
        flags = (
            extra_flags | (FLAG_UP if user_present else 0) | (FLAG_UV if self.user_verified else 0)
        )
        return (
            hashlib.sha256(rp_id.encode()).digest() + bytes([flags]) + struct.pack(">I", sign_count)
        )

    def _client_data(self, kind: str, challenge: str, origin: str | None) -> bytes:
        return json.dumps(
            {
                "type": kind,
                "challenge": challenge,
                "origin": origin or self.origin,
                "crossOrigin": False,
            }
        ).encode()


class WebAuthnDriver(ModuleDriver):
    """A person with security keys, for the conformance suite.

    Enrolling again means registering another key: the first key is in the options'
    ``excludeCredentials``, so (as a real browser would refuse) the driver takes a new
    one. At login, the key holding an allowed credential answers.
    """

    name = "webauthn"

    def __init__(self, origin: str = "http://localhost:8000", **settings: Any) -> None:
        self.origin = origin
        self._settings = settings
        self.keys: list[SoftAuthenticator] = []
        self.stranger = SoftAuthenticator(origin)
        """Somebody else's key, never registered here."""

    def settings(self) -> dict[str, Any]:
        return dict(self._settings)

    def answer_setup(self, prompt: Prompt, user: User) -> dict[str, str]:
        assert prompt.ceremony is not None and prompt.ceremony.kind == "webauthn.create"
        for key in self.keys:
            try:
                response = key.create(prompt.ceremony.options_json)
            except CredentialExcluded:
                continue
            break
        else:
            key = SoftAuthenticator(self.origin)
            self.keys.append(key)
            response = key.create(prompt.ceremony.options_json)
        return {"name": f"Key {len(self.keys)}", prompt.ceremony.answer_field: response}

    def answer_challenge(self, prompt: Prompt, user: User) -> dict[str, str]:
        assert prompt.ceremony is not None and prompt.ceremony.kind == "webauthn.get"
        options = prompt.ceremony.options_json
        key = next(key for key in self.keys if key.holds_any(options))
        return {prompt.ceremony.answer_field: key.get(options)}

    def wrong_answer(self, prompt: Prompt, user: User) -> dict[str, str]:
        assert prompt.ceremony is not None
        options = prompt.ceremony.options_json
        if prompt.ceremony.kind == "webauthn.create":
            # A phishing page's registration: the right challenge, seen at another origin.
            return {
                "name": "Phished",
                prompt.ceremony.answer_field: SoftAuthenticator("https://evil.example").create(
                    options
                ),
            }
        # Somebody else's key answering this person's challenge.
        if not self.stranger.credentials:
            self.stranger.create(
                json.dumps(
                    {
                        "rp": {"id": json.loads(options)["rpId"]},
                        "user": {"id": b64url(b"stranger")},
                        "challenge": b64url(b"x"),
                        "pubKeyCredParams": [{"alg": COSE_ES256, "type": "public-key"}],
                    }
                )
            )
        stranger_id = next(iter(self.stranger.credentials))
        return {prompt.ceremony.answer_field: self.stranger.get(options, credential_id=stranger_id)}

    def secrets(self) -> Iterable[str]:
        # The private keys never leave the authenticator; their PEM is what must not appear.
        from cryptography.hazmat.primitives import serialization

        return [
            credential.private_key.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).hex()
            for key in self.keys
            for credential in key.credentials.values()
        ]
