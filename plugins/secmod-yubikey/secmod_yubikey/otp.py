"""Yubico OTP input handling and local (offline) validation.

An OTP is a modhex public id (0..16 characters, 12 on every YubiKey we bind) followed
by a 32-character token: AES-128-ECB of private id, usage counter, 8 Hz timestamp,
session counter, random and an inverted CRC-16 (docs/protocols.md §3 in shared).
"""

from __future__ import annotations

import hmac
import re
import struct
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from yubico_client.modhex import translate

__all__ = [
    "MODHEX",
    "PUBLIC_ID_LENGTH",
    "LocalToken",
    "OtpError",
    "otp_candidates",
    "decrypt_token",
    "is_newer",
    "mask_otp",
    "public_id_of",
]

MODHEX = "cbdefghijklnrtuv"
PUBLIC_ID_LENGTH = 12
TOKEN_LENGTH = 32
_TO_HEX = str.maketrans(MODHEX, "0123456789abcdef")
# WHMCS trims spaces and quotes; a YubiKey also "types" a trailing Enter, and a paste
# may carry tabs or a newline, so all whitespace goes.
_NOISE = re.compile(r"[\s'\"`]+")
_MODHEX_RE = re.compile(r"^[cbdefghijklnrtuv]+$")


class OtpError(ValueError):
    """The text is not a Yubico OTP of ours, or it does not decrypt (reason in ``args``)."""


def otp_candidates(raw: object) -> list[str]:
    """The modhex OTPs that ``raw`` can be, most likely first; empty when none.

    Trims whitespace and quotes as WHMCS does and lowercases (caps lock), then maps
    keyboard-layout variants (Dvorak, AZERTY, ...) to modhex with yubico_client's own
    table, so local and cloud mode accept the same input. An OTP that does not use all
    16 characters can read as modhex under several layouts; yubico_client then picks
    one at random, we return them all so the caller can pick the one bound to the user.
    """
    text = _NOISE.sub("", str(raw or "")).lower()
    if len(text) != PUBLIC_ID_LENGTH + TOKEN_LENGTH:
        return []
    if _MODHEX_RE.match(text):
        return [text]  # pure modhex is taken as typed, as yubico_client does
    try:
        readings = translate(text)
    except (KeyError, ValueError):  # a character no keyboard layout in the table has
        return []
    return sorted(r for r in readings if _MODHEX_RE.match(r))


def public_id_of(otp: str) -> str:
    return otp[:PUBLIC_ID_LENGTH]


def mask_otp(otp: str) -> str:
    """What may be logged: the public id (not secret, printed on the key) and no token.

    WHMCS logs the first characters of the OTP; the public id alone is as useful for
    support and cannot be replayed.
    """
    return otp[:PUBLIC_ID_LENGTH] + "…" if otp else ""


@dataclass(frozen=True, slots=True)
class LocalToken:
    """The parts of a decrypted token that validation uses."""

    usage: int
    session: int
    timestamp: int = field(repr=False)

    @property
    def counters(self) -> tuple[int, int]:
        return (self.usage, self.session)


def _crc16(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc


def decrypt_token(otp: str, aes_key: bytes, private_id: bytes) -> LocalToken:
    """Decrypt the token part of a cleaned OTP and check it (ykval steps 9).

    :raises OtpError: the CRC residue is wrong (other AES key, or garbage) or the
        private id differs; both are "BAD_OTP" for a validation server.
    """
    block = bytes.fromhex(otp[-TOKEN_LENGTH:].translate(_TO_HEX))
    decryptor = Cipher(algorithms.AES(aes_key), modes.ECB()).decryptor()  # noqa: S305 - Yubico OTP format
    plain = decryptor.update(block) + decryptor.finalize()
    if _crc16(plain) != 0xF0B8:
        raise OtpError("crc")
    if not hmac.compare_digest(plain[:6], private_id):
        raise OtpError("private_id")
    usage, low, high, session = struct.unpack("<HHBB", plain[6:12])
    # Bit 15 of the usage counter is the caps-lock flag, not part of the count.
    return LocalToken(usage=usage & 0x7FFF, session=session, timestamp=low | high << 16)


def is_newer(new: tuple[int, int], last: tuple[int, int] | None) -> bool:
    """The replay rule: (usage, session) strictly greater than the last accepted pair."""
    return last is None or tuple(new) > tuple(last)
