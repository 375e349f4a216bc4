"""Module state and pending steps at rest: sealed with the key ring, bound to their owner.

Each value's context names the person and the module (and the step's kind), so a value
copied into another row does not open.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from secmod.hookspecs import User

from .sealing import KeyRing, SealError
from .store import Store

__all__ = ["SealedValues"]

log = logging.getLogger("secmod.host")


def _state_context(audience: str, user_id: str, module: str) -> str:
    return f"enrolment:{audience}:{user_id}:{module}"


def _pending_context(kind: str, audience: str, user_id: str, module: str) -> str:
    return f"pending:{kind}:{audience}:{user_id}:{module}"


class SealedValues:
    """Seals and opens what the Store keeps for a person."""

    def __init__(self, keyring: KeyRing) -> None:
        self.keyring = keyring

    def seal_state(self, user: User, module: str, state: Mapping[str, Any]) -> str:
        return self.keyring.seal_json(dict(state), context=_state_context(user.audience.value, user.id, module))

    def open_state(self, user: User, module: str, sealed: str) -> dict[str, Any] | None:
        """The person's module state, or ``None`` (logged) when it does not open."""
        try:
            opened = self.keyring.unseal_json(sealed, context=_state_context(user.audience.value, user.id, module))
        except SealError as error:
            log.error("stored state of a %s user with module %r does not open: %s", user.audience.value, module, error)
            return None
        return opened if isinstance(opened, dict) else None

    def seal_pending(self, kind: str, user: User, module: str, data: Mapping[str, Any]) -> str:
        return self.keyring.seal_json(dict(data), context=_pending_context(kind, user.audience.value, user.id, module))

    def open_pending(self, row: Any, user: User) -> dict[str, Any]:
        opened = self.keyring.unseal_json(row.data, context=_pending_context(row.kind, user.audience.value, user.id, row.module))
        return opened if isinstance(opened, dict) else {}

    def reseal_all(self, store: Store) -> int:
        """Re-seal every stored value under the key ring's primary key.

        Each row is rewritten only if it is unchanged since it was read, and keeps its
        version, so logins running meanwhile are neither blocked nor turned away.
        """
        count, primary = 0, self.keyring.primary
        enrolments, pendings = store.sealed_rows()
        for row in enrolments:
            if self.keyring.key_of(row.state) != primary:
                context = _state_context(row.audience, row.user_id, row.module)
                fresh = self.keyring.seal(self.keyring.unseal(row.state, context=context), context=context)
                count += store.reseal_enrolment(row.id, row.state, fresh)
        for row in pendings:
            if self.keyring.key_of(row.data) != primary:
                context = _pending_context(row.kind, row.audience, row.user_id, row.module)
                fresh = self.keyring.seal(self.keyring.unseal(row.data, context=context), context=context)
                count += store.reseal_pending(row.id, row.data, fresh)
        return count
