"""Growth: the audit log, expired pending steps and used backup codes are purged.

Each purge deletes in batches of ``[retention] batch_size`` rows, one short transaction
per batch, chosen through an index (``secmod_audit.at``, ``secmod_pending.expires_at``,
``secmod_backup_code.used_at``): no login waits behind a long delete, and the tables a
verify writes stay bounded, so its cost stays flat. Several hosts purging at once only
delete the same rows; nothing else depends on who does it.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from secmod.settings import RetentionSettings

from .storage import AuditEvent, BackupCode, PendingStep

__all__ = ["Purged", "purge"]

_audit = AuditEvent.__table__
_pending = PendingStep.__table__
_backup = BackupCode.__table__

DAY = 86400.0


@dataclasses.dataclass(frozen=True, slots=True)
class Purged:
    """How many rows one purge deleted."""

    audit_events: int = 0
    pending_steps: int = 0
    used_backup_codes: int = 0

    @property
    def total(self) -> int:
        return self.audit_events + self.pending_steps + self.used_backup_codes


def _in_batches(
    engine: Engine,
    table: sa.Table,
    key: sa.Column,
    older: sa.ColumnElement[bool],
    order: sa.Column,
    batch: int,
) -> int:
    deleted = 0
    while True:
        chosen = sa.select(key).where(older).order_by(order).limit(batch).scalar_subquery()
        with engine.begin() as conn:
            count = conn.execute(table.delete().where(key.in_(chosen))).rowcount
        deleted += count
        if count < batch:
            return deleted


def purge(engine: Engine, retention: RetentionSettings, *, now: float | None = None) -> Purged:
    """Delete what ``retention`` no longer keeps; expired pending steps always go."""
    stamp = time.time() if now is None else now
    batch = retention.batch_size
    audit = 0
    if retention.audit_days:
        cutoff = datetime.fromtimestamp(stamp - retention.audit_days * DAY, UTC)
        audit = _in_batches(engine, _audit, _audit.c.id, _audit.c.at < cutoff, _audit.c.at, batch)
    pending = _in_batches(
        engine,
        _pending,
        _pending.c.id,
        _pending.c.expires_at <= stamp,
        _pending.c.expires_at,
        batch,
    )
    used = 0
    if retention.used_backup_code_days:
        cutoff_used = stamp - retention.used_backup_code_days * DAY
        used = _in_batches(
            engine, _backup, _backup.c.id, _backup.c.used_at < cutoff_used, _backup.c.used_at, batch
        )
    return Purged(audit_events=audit, pending_steps=pending, used_backup_codes=used)
