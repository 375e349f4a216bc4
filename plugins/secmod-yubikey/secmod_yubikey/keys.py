"""Local-mode key table: what the operator imports so secmod can validate offline.

Each YubiKey programmed for local validation has a public id (modhex, printed on
every OTP), a 6-byte private id and a 16-byte AES key. Programming tools write these
down once, in one of two layouts, named as the tools name them:

* **Yubico format**, serial number first: what YubiKey Manager writes with
  ``ykman otp yubiotp ... --config-output FILE`` (one line per key, no header) and the
  Personalization Tool's "Yubico format" log::

      90194,vvcccccbhcgd,2f5d71a4915d,fb1b8e4a22d27a5b0f9e0a5cd4d1a6f3,,2026-11-28T09:00:00,

* **Traditional format**, the Personalization Tool's default log: a ``LOGGING START``
  line, then one line per programmed slot, starting with the kind of configuration::

      LOGGING START,11/28/26 9:00 AM
      Yubico OTP,11/28/26 9:01 AM,1,vvcccccbhcgd,2f5d71a4915d,fb1b8e4a22d27a5b0f9e0a5cd4d1a6f3,,,0,0,...
      Static Password,11/28/26 9:02 AM,2,...

  Only ``Yubico OTP`` lines hold keys for this module; the other kinds (static
  password, OATH-HOTP, challenge-response) are skipped, each with a note.

:func:`read_key_export` reads either. In ``secmod.toml`` the table is
``[modules.yubikey.keys.<public id>]`` with ``aes_key`` and ``private_id`` each sealed
on its own (the host opens sealed values at any depth); a table sealed whole by an
older version (``keys = "sealed:..."``) still opens. Nothing here prints a secret.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

__all__ = [
    "KeyExport",
    "KeyImportError",
    "LocalKey",
    "check_public_id",
    "dump_keys",
    "load_key_table",
    "merge_keys",
    "parse_key_export",
    "read_key_export",
]

_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_HEX12 = re.compile(r"^[0-9a-f]{12}$")
_PUBLIC_ID = re.compile(r"^[cbdefghijklnrtuv]{12}$")


class KeyImportError(ValueError):
    """A key line or table is wrong; the message names the line, never a secret."""


class LocalKey(BaseModel):
    """One YubiKey's secrets for local validation.

    :param aes_key: 32 hex characters; sealed at rest, never shown back.
    :param private_id: 12 hex characters (the uid inside every token).
    :param owner: optionally the id of the only user who may bind this key, for
        operators who hand out keys to named people.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    aes_key: SecretStr
    private_id: str
    owner: str | None = None

    @field_validator("aes_key")
    @classmethod
    def _aes_hex(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value().strip().lower()
        if text.startswith("sealed:"):
            raise ValueError("aes_key is still sealed: the host did not open it (wrong key file?)")
        if not _HEX32.match(text):
            raise ValueError("aes_key must be 32 hex characters (16 bytes)")
        return SecretStr(text)

    @field_validator("private_id")
    @classmethod
    def _uid_hex(cls, value: str) -> str:
        text = value.strip().lower()
        if not _HEX12.match(text):
            raise ValueError("private_id must be 12 hex characters (6 bytes)")
        return text

    def aes_bytes(self) -> bytes:
        return bytes.fromhex(self.aes_key.get_secret_value())

    def uid_bytes(self) -> bytes:
        return bytes.fromhex(self.private_id)


def check_public_id(public_id: str) -> str:
    text = str(public_id).strip().lower()
    if not _PUBLIC_ID.match(text):
        raise KeyImportError(f"public id {text[:20]!r} must be 12 modhex characters (cbdefghijklnrtuv)")
    return text


TRADITIONAL_KEY_KIND = "yubico otp"
"""The Traditional format's kind of line that holds a Yubico OTP key."""
_TRADITIONAL_START = "logging start"
# The Personalization Tool's other kinds of configuration: logged, but no key for us.
_TRADITIONAL_OTHER_KINDS = ("static password", "oath-hotp", "challenge-response", "chal-resp", "ndef")


@dataclass(frozen=True, slots=True)
class KeyExport:
    """What an export holds: the keys, and a note per line skipped (never a secret)."""

    keys: dict[str, LocalKey]
    skipped: tuple[str, ...] = ()


def _from_row(row: list[str]) -> tuple[str, LocalKey]:
    fields = [f.strip() for f in row]
    if fields and fields[0].lower() == TRADITIONAL_KEY_KIND:
        # Traditional format: kind, time, slot, public id, private id, aes key, ...
        if len(fields) < 6:
            raise KeyImportError("a Traditional format 'Yubico OTP' line needs 6 fields or more")
        public_id, private_id, aes_key = fields[3], fields[4], fields[5]
    else:
        # Yubico format: serial, public id, private id, aes key, access code, time
        if len(fields) < 4:
            raise KeyImportError("a Yubico format line needs serial,public_id,private_id,aes_key")
        if fields[0] and not fields[0].isdigit():
            raise KeyImportError(
                "not a key line: a Yubico format line starts with the serial number (digits) or is empty "
                "there, a Traditional format line with 'Yubico OTP'"
            )
        public_id, private_id, aes_key = fields[1], fields[2], fields[3]
    public_id = check_public_id(public_id)
    try:
        key = LocalKey.model_validate({"aes_key": aes_key, "private_id": private_id})
    except ValueError as error:
        # pydantic's text quotes the input; say which field only, never the value.
        problems = "; ".join(e["msg"].removeprefix("Value error, ") for e in getattr(error, "errors", lambda: [])())
        raise KeyImportError(f"key {public_id}: {problems or 'invalid'}") from None
    return public_id, key


def read_key_export(text: str) -> KeyExport:
    """Read a Yubico format or Traditional format export into a key table.

    Blank lines, ``#`` comments, a header line and the ``LOGGING START`` line are
    skipped quietly; configurations other than Yubico OTP are skipped with a note. A
    public id that appears twice is an error (two keys cannot share one).

    :raises KeyImportError: naming the line number and the field, never a secret.
    """
    table: dict[str, LocalKey] = {}
    skipped: list[str] = []
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        kind = row[0].strip().lower()
        if kind == _TRADITIONAL_START:
            continue
        if kind.startswith(_TRADITIONAL_OTHER_KINDS):
            skipped.append(f"line {number}: skipped a {row[0].strip()} configuration "
                           "(only Yubico OTP keys are imported)")
            continue
        if any(cell.strip().lower() in {"public_id", "public id"} for cell in row):
            continue  # a header line: no real key has that as its public id
        try:
            public_id, key = _from_row(row)
        except KeyImportError as error:
            raise KeyImportError(f"line {number}: {error}") from None
        if public_id in table:
            raise KeyImportError(f"line {number}: public id {public_id} appears twice")
        table[public_id] = key
    return KeyExport(keys=table, skipped=tuple(skipped))


def parse_key_export(text: str) -> dict[str, LocalKey]:
    """The keys of :func:`read_key_export`, without the notes."""
    return read_key_export(text).keys


def merge_keys(
    current: Mapping[str, LocalKey], new: Mapping[str, LocalKey], *, replace: bool = False
) -> dict[str, LocalKey]:
    """``current`` plus ``new``. A public id already present with other secrets is an
    error unless ``replace`` (the key was reprogrammed), so a typo cannot silently
    swap a working key for a broken one."""
    merged = dict(current)
    for public_id, key in new.items():
        old = merged.get(public_id)
        if old is not None and not replace and (old.aes_bytes(), old.private_id) != (key.aes_bytes(), key.private_id):
            raise KeyImportError(f"public id {public_id} is already imported with other secrets (use replace)")
        merged[public_id] = key
    return merged


def dump_keys(keys: Mapping[str, LocalKey]) -> str:
    """The key table as the JSON text to seal into ``[modules.yubikey] keys``."""
    return json.dumps(
        {
            public_id: {"aes_key": key.aes_key.get_secret_value(), "private_id": key.private_id}
            | ({"owner": key.owner} if key.owner else {})
            for public_id, key in sorted(keys.items())
        },
        separators=(",", ":"),
    )


def load_key_table(value: object) -> dict[str, LocalKey]:
    """The ``keys`` setting as a table: a mapping, the JSON text of :func:`dump_keys`
    (what a sealed value opens to), or CSV export lines pasted as they are."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("sealed:"):
            raise KeyImportError("keys is still sealed: the host did not open it (wrong key file?)")
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except ValueError:
                raise KeyImportError("keys: not valid JSON") from None
        else:
            return parse_key_export(text)
    if not isinstance(value, Mapping):
        raise KeyImportError("keys must be a table public_id -> {aes_key, private_id}")
    table: dict[str, LocalKey] = {}
    for public_id, entry in value.items():
        pid = check_public_id(public_id)
        if isinstance(entry, LocalKey):
            table[pid] = entry
            continue
        try:
            table[pid] = LocalKey.model_validate(entry)
        except ValueError as error:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
                for e in getattr(error, "errors", lambda: [])()
            )
            raise KeyImportError(f"keys.{pid}: {problems or 'invalid'}") from None
    return table

