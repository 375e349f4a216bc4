"""Backup codes: WHMCS's way in without the device, done with a CSPRNG and slow hashes.

A code is 16 lowercase hex characters shown as four groups of four (WHMCS's format),
drawn from ``secrets``; only a salted scrypt hash is stored. Checking follows WHMCS:
lower-case the input and drop everything that is not a letter or digit.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

__all__ = ["format_code", "hash_code", "matches", "new_code", "normalise"]

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}  # about 40 ms: slow for a guesser, fine once a login
_NON_ALNUM = re.compile(r"[^a-z0-9]")


def new_code() -> str:
    return secrets.token_hex(8)


def format_code(code: str) -> str:
    """``abcd1234ef567890`` → ``abcd 1234 ef56 7890``."""
    return " ".join(code[i : i + 4] for i in range(0, len(code), 4))


def normalise(text: str) -> str:
    return _NON_ALNUM.sub("", text.lower())


def hash_code(code: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(normalise(code).encode(), salt=salt, dklen=32, **_SCRYPT)
    return "scrypt$" + base64.b64encode(salt + digest).decode()


def matches(candidate: str, stored: str) -> bool:
    scheme, _, body = stored.partition("$")
    if scheme != "scrypt":
        return False
    raw = base64.b64decode(body)
    digest = hashlib.scrypt(normalise(candidate).encode(), salt=raw[:16], dklen=32, **_SCRYPT)
    return hmac.compare_digest(digest, raw[16:])
