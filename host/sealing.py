"""Sealing: authenticated encryption of module state and secret settings at rest.

A key ring holds named 256-bit keys and says which one seals new data. Every sealed
value starts with the id of the key that sealed it, so a ring can gain a new key and
re-seal row by row while every process still reads what the old key sealed
(``secmod keys rotate``). AES-256-GCM binds each value to where it is stored (the
associated data), so a sealed blob copied to another person's row does not open.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["SEALED_PREFIX", "KeyRing", "SealError"]

SEALED_PREFIX = "sealed:"
"""How a sealed setting value starts in ``secmod.toml``."""
_NONCE_BYTES = 12


class SealError(Exception):
    """A sealed value cannot be opened (unknown key, tampered, or another row's)."""


@dataclass(slots=True)
class KeyRing:
    """Named AES-256-GCM keys kept in one JSON file with mode 0600."""

    path: Path
    primary: str = ""
    _keys: dict[str, AESGCM] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __repr__(self) -> str:
        return f"KeyRing(path={str(self.path)!r}, primary={self.primary!r}, keys={sorted(self._keys)!r})"

    @classmethod
    def open(cls, path: Path, *, create: bool = True) -> KeyRing:
        """Load the ring at ``path``, creating it with one fresh key if it does not exist."""
        ring = cls(path=Path(path))
        if not ring.path.exists():
            if not create:
                raise SealError(f"{ring.path}: key file not found")
            ring._write({"primary": "", "keys": []}, new=True)
            ring.add_key()
        ring.reload()
        return ring

    def reload(self) -> None:
        """Read the file again (another process may have rotated)."""
        try:
            data = json.loads(self.path.read_text())
            keys = {item["id"]: AESGCM(base64.b64decode(item["key"])) for item in data["keys"]}
            primary = data["primary"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise SealError(f"{self.path}: unreadable key file ({type(error).__name__})") from None
        if primary not in keys:
            raise SealError(f"{self.path}: primary key {primary!r} is not in the file")
        with self._lock:
            self._keys, self.primary = keys, primary

    def add_key(self) -> str:
        """Add a fresh key, make it primary, and save; returns its id."""
        data = json.loads(self.path.read_text())
        key_id = datetime.now(UTC).strftime("k%Y%m%d%H%M%S") + secrets.token_hex(2)
        data["keys"].append({"id": key_id, "key": base64.b64encode(AESGCM.generate_key(256)).decode()})
        data["primary"] = key_id
        self._write(data)
        self.reload()
        return key_id

    def _write(self, data: dict, *, new: bool = False) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        # Created 0600 from the start: the key is never readable by others, not even briefly.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        if new and self.path.exists():
            tmp.unlink()
            return
        os.replace(tmp, self.path)

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def seal(self, plaintext: bytes, *, context: str) -> str:
        """Encrypt ``plaintext`` under the primary key, bound to ``context``."""
        nonce = os.urandom(_NONCE_BYTES)
        blob = self._keys[self.primary].encrypt(nonce, plaintext, context.encode())
        return f"{self.primary}${base64.urlsafe_b64encode(nonce + blob).decode()}"

    def unseal(self, sealed: str, *, context: str) -> bytes:
        """Decrypt a value made by :meth:`seal` with the same ``context``."""
        key_id, sep, body = sealed.partition("$")
        if not sep:
            raise SealError("not a sealed value")
        if key_id not in self._keys:
            self.reload()
        key = self._keys.get(key_id)
        if key is None:
            raise SealError(f"sealed with unknown key {key_id!r}")
        raw = base64.urlsafe_b64decode(body)
        try:
            return key.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context.encode())
        except InvalidTag:
            raise SealError("sealed value does not open: tampered, or sealed for another place") from None

    def key_of(self, sealed: str) -> str:
        return sealed.partition("$")[0]

    def seal_json(self, value: object, *, context: str) -> str:
        return self.seal(json.dumps(value, separators=(",", ":")).encode(), context=context)

    def unseal_json(self, sealed: str, *, context: str) -> object:
        return json.loads(self.unseal(sealed, context=context))

    # Secret settings in secmod.toml: "sealed:<key id>$<blob>", bound to the setting's name.
    def seal_setting(self, module: str, key: str, value: str) -> str:
        return SEALED_PREFIX + self.seal(value.encode(), context=f"setting:{module}.{key}")

    def unseal_setting(self, module: str, key: str, value: str) -> str:
        return self.unseal(value.removeprefix(SEALED_PREFIX), context=f"setting:{module}.{key}").decode()
