"""Several hosts on one database: each records a fingerprint of its effective settings.

The admin settings page writes the local ``secmod.toml``, which other hosts never see.
So every host (each ``secmod serve`` instance, named ``machine:port``) writes a digest of
the settings it actually runs with into ``secmod_host``; the admin page and
``secmod check`` compare them and name the hosts that disagree.

What is compared: every setting that changes a login decision. Left out: where a host
listens and logs and how many workers it runs (``[web] host``, ``port``, ``workers``,
``log_format``, ``access_log``), file paths (``config_file``, ``[sealing] key_file``,
which may differ per machine) and the web host's own secrets (``api_token``,
``session_secret``). Module secrets (pydantic ``SecretStr``: Duo's client secret,
YubiCloud's key) enter as a SHA-256 of their value, never the value: they are
provider-issued random strings, so the digest reveals nothing usable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import socket
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, SecretStr
from sqlalchemy.engine import Engine

from secmod.hookspecs import ModuleSettings
from secmod.settings import SecmodSettings

from .storage import HostRecord

__all__ = [
    "HostFingerprint",
    "disagreeing_hosts",
    "host_name",
    "record_fingerprint",
    "settings_fingerprint",
]

_hosts = HostRecord.__table__

# A host that has not started for this long is taken as gone (an old machine name).
FORGET_AFTER_DAYS = 30

# Per machine by nature: where it listens and logs, how many workers, file paths, the
# web host's own secrets.
_LOCAL = {
    "config_file": True,
    "sealing": {"key_file"},
    "web": {"host", "port", "api_token", "session_secret", "workers", "log_format", "access_log"},
}


@dataclasses.dataclass(frozen=True, slots=True)
class HostFingerprint:
    """One host's record: its name, its settings digest and when it last started."""

    name: str
    fingerprint: str
    seen_at: datetime


def _plain(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return "sha256:" + hashlib.sha256(value.get_secret_value().encode()).hexdigest()
    if isinstance(value, BaseModel):
        return {key: _plain(getattr(value, key)) for key in type(value).model_fields}
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_plain(item) for item in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def settings_fingerprint(
    settings: SecmodSettings, module_settings: Mapping[str, ModuleSettings]
) -> str:
    """A digest of the effective settings (module tables as validated, secrets hashed)."""
    shared = settings.model_dump(mode="json", exclude=_LOCAL)  # type: ignore[arg-type]
    shared["modules"] = {name: _plain(model) for name, model in sorted(module_settings.items())}
    canonical = json.dumps(shared, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def host_name(port: int | None = None) -> str:
    """``machine:port`` for a web host, ``machine`` otherwise."""
    machine = socket.gethostname()
    return f"{machine}:{port}" if port else machine


def record_fingerprint(
    engine: Engine, name: str, fingerprint: str, *, now: float | None = None
) -> None:
    """Write this host's fingerprint (insert or update: one row per host name)."""
    stamp = time.time() if now is None else now
    with engine.begin() as conn:
        updated = conn.execute(
            _hosts.update()
            .where(_hosts.c.name == name)
            .values(fingerprint=fingerprint, seen_at=stamp)
        ).rowcount
        if not updated:
            conn.execute(_hosts.insert().values(name=name, fingerprint=fingerprint, seen_at=stamp))


def disagreeing_hosts(
    engine: Engine, fingerprint: str, *, now: float | None = None
) -> list[HostFingerprint]:
    """The hosts seen lately whose settings differ from ``fingerprint``, oldest first."""
    since = (time.time() if now is None else now) - FORGET_AFTER_DAYS * 86400
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(_hosts.c.name, _hosts.c.fingerprint, _hosts.c.seen_at)
            .where(_hosts.c.fingerprint != fingerprint, _hosts.c.seen_at >= since)
            .order_by(_hosts.c.seen_at)
        ).all()
    return [
        HostFingerprint(row.name, row.fingerprint, datetime.fromtimestamp(row.seen_at, UTC))
        for row in rows
    ]
