"""A software YubiKey that types real Yubico OTPs, and the decoder a validator needs.

The layout is the one in docs/protocols.md §3 (shared): a 16-byte token of private id,
usage counter, 8 Hz timestamp, session counter, random and an inverted CRC-16, encrypted
with AES-128-ECB, modhex-encoded and prefixed with the public id. It is written
independently of ``secmod_yubikey`` on purpose: the fake validation server decodes with
this module, the YubiKey module with its own code, and both are checked against the
published test vectors, so a shared mistake cannot hide.

Never use this for anything but tests and demos: it keeps its AES key in memory and
draws its randomness from ``secrets`` only to look like a real key.
"""

from __future__ import annotations

import secrets
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = [
    "DVORAK",
    "MODHEX",
    "DecodedToken",
    "SoftYubiKey",
    "TokenError",
    "crc16",
    "decode_otp",
    "encode_token",
    "modhex_decode",
    "modhex_encode",
    "to_dvorak",
]

HEX = "0123456789abcdef"
MODHEX = "cbdefghijklnrtuv"
# What a modhex key types on a US-Dvorak layout, position by position (ykval's table).
DVORAK = "jxe.uidchtnbpygk"
CRC_RESIDUE = 0xF0B8
MAX_USAGE = 0x7FFF


class TokenError(ValueError):
    """The OTP does not decode: bad modhex, wrong length, CRC or AES key."""


def modhex_encode(data: bytes) -> str:
    return data.hex().translate(str.maketrans(HEX, MODHEX))


def modhex_decode(text: str) -> bytes:
    if len(text) % 2 or any(c not in MODHEX for c in text):
        raise TokenError("not modhex")
    return bytes.fromhex(text.translate(str.maketrans(MODHEX, HEX)))


def to_dvorak(otp: str) -> str:
    """What the same key presses produce when the computer thinks it is a Dvorak keyboard."""
    return otp.translate(str.maketrans(MODHEX, DVORAK))


def crc16(data: bytes) -> int:
    """CRC-16/X.25 before the final inversion (ISO 13239 reflected, poly 0x8408)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc


def _aes(key: bytes, block: bytes, *, decrypt: bool) -> bytes:
    # ECB is what the YubiKey does: one block, a fresh plaintext every time.
    cipher = Cipher(algorithms.AES(key), modes.ECB())  # noqa: S305 - the Yubico OTP format
    op = cipher.decryptor() if decrypt else cipher.encryptor()
    return op.update(block) + op.finalize()


@dataclass(frozen=True, slots=True)
class DecodedToken:
    """The fields of one decrypted token (docs/protocols.md §3)."""

    public_id: str
    private_id: bytes = field(repr=False)
    usage: int
    timestamp: int
    session: int
    random: int
    crc: int
    caps_lock: bool = False

    @property
    def counters(self) -> tuple[int, int]:
        """What the replay rule compares: (usage, session), lexicographically."""
        return (self.usage, self.session)


def encode_token(
    key: bytes, private_id: bytes, usage: int, timestamp: int, session: int, random: int
) -> bytes:
    """The 16 encrypted bytes for these fields (without the public id)."""
    if len(key) != 16 or len(private_id) != 6:
        raise ValueError("AES key must be 16 bytes and private id 6 bytes")
    body = private_id + struct.pack(
        "<HHBBH", usage & 0xFFFF, timestamp & 0xFFFF, (timestamp >> 16) & 0xFF, session & 0xFF, random & 0xFFFF
    )
    crc = ~crc16(body) & 0xFFFF
    return _aes(key, body + struct.pack("<H", crc), decrypt=False)


def decode_otp(otp: str, key: bytes, *, private_id: bytes | None = None) -> DecodedToken:
    """Decrypt and check one OTP with ``key``; also compare the private id if given.

    :raises TokenError: not modhex, not 32..48 characters, CRC residue wrong (so: the
        wrong AES key, or a mistyped OTP) or another private id.
    """
    otp = otp.strip().lower()
    if not 32 <= len(otp) <= 48:
        raise TokenError("an OTP has 32 to 48 characters")
    public_id, token = otp[:-32], otp[-32:]
    modhex_decode(public_id)
    plain = _aes(key, modhex_decode(token), decrypt=True)
    if crc16(plain) != CRC_RESIDUE:
        raise TokenError("CRC check failed")
    uid = plain[:6]
    usage, low, high, session, rnd, crc = struct.unpack("<HHBBHH", plain[6:])
    if private_id is not None and not secrets.compare_digest(uid, private_id):
        raise TokenError("private id does not match")
    return DecodedToken(
        public_id=public_id, private_id=uid, usage=usage & MAX_USAGE, timestamp=low | high << 16,
        session=session, random=rnd, crc=crc, caps_lock=bool(usage & 0x8000),
    )


class SoftYubiKey:
    """A YubiKey in software: plug it in, press it, get an OTP.

    :param public_id: modhex, 0..16 characters (self-programmed keys start with ``vv``).
    :param private_id: the 6-byte uid inside every token.
    :param aes_key: the 16-byte AES key the validation server also holds.
    :param usage: the non-volatile usage counter *before* the first plug-in.
    :param clock: seconds, for the 8 Hz timestamp (tests pass a fake clock).
    :param dvorak: type as a modhex key does on a Dvorak layout.
    """

    def __init__(
        self,
        public_id: str | None = None,
        private_id: bytes | None = None,
        aes_key: bytes | None = None,
        *,
        usage: int = 0,
        clock: Callable[[], float] = time.monotonic,
        dvorak: bool = False,
    ) -> None:
        self.public_id = public_id if public_id is not None else "vv" + modhex_encode(secrets.token_bytes(5))
        modhex_decode(self.public_id)
        if len(self.public_id) > 16:
            raise ValueError("public id is at most 16 modhex characters")
        self.private_id = private_id if private_id is not None else secrets.token_bytes(6)
        self.aes_key = aes_key if aes_key is not None else secrets.token_bytes(16)
        if len(self.aes_key) != 16 or len(self.private_id) != 6:
            raise ValueError("AES key must be 16 bytes and private id 6 bytes")
        self.usage = usage
        self.session = 0
        self.clock = clock
        self.dvorak = dvorak
        self._tstamp = 0
        self._since: float | None = None

    def __repr__(self) -> str:
        return f"SoftYubiKey(public_id={self.public_id!r}, usage={self.usage}, session={self.session})"

    def plug_in(self) -> SoftYubiKey:
        """Power up: usage + 1 (stops at 0x7FFF), session 0, a random timestamp."""
        self.usage = min(self.usage + 1, MAX_USAGE)
        self.session = 0
        self._tstamp = secrets.randbits(24)
        self._since = self.clock()
        return self

    def press(self) -> str:
        """Touch the key: the next OTP. Plugs the key in first if it never was."""
        if self._since is None:
            self.plug_in()
        assert self._since is not None
        elapsed = max(0.0, self.clock() - self._since)
        timestamp = (self._tstamp + int(elapsed * 8)) & 0xFFFFFF
        token = encode_token(self.aes_key, self.private_id, self.usage, timestamp, self.session, secrets.randbits(16))
        otp = self.public_id + modhex_encode(token)
        # After the press: session + 1, and on wrapping the usage counter moves on.
        self.session += 1
        if self.session > 0xFF:
            self.session = 0
            self.usage = min(self.usage + 1, MAX_USAGE)
        return to_dvorak(otp) if self.dvorak else otp

    def csv_line(self, serial: int | None = None) -> str:
        """This key as YubiKey Manager's ``--config-output`` CSV line."""
        return ",".join(
            [str(serial or ""), self.public_id, self.private_id.hex(), self.aes_key.hex(), "", "2026-11-28T09:00:00", ""]
        )
