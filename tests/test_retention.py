"""Growth: audit events, expired pending steps and used backup codes are purged, in batches."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from secmod.host.retention import purge
from secmod.host.storage import AuditEvent, BackupCode, PendingStep
from secmod.settings import RetentionSettings
from typer.testing import CliRunner

from support import ALICE, enrol_totp

DAY = 86400


def _rows(host: Any, table: Any) -> int:
    with host.engine.connect() as conn:
        return int(
            conn.execute(sa.select(sa.func.count()).select_from(table.__table__)).scalar_one()
        )


def _add_audit(host: Any, at: float, count: int) -> None:
    with host.engine.begin() as conn:
        conn.execute(
            AuditEvent.__table__.insert(),
            [
                {
                    "at": datetime.fromtimestamp(at, UTC),
                    "audience": "client",
                    "user_id": f"old-{i}",
                    "module": "totp",
                    "event": "verify",
                    "outcome": "fail",
                    "reason": "wrong_code",
                    "actor": "",
                    "detail": "",
                }
                for i in range(count)
            ],
        )


def test_purge_keeps_what_retention_keeps_and_deletes_the_rest(
    make_host: Any, fake_clock: Any
) -> None:
    check_purge(make_host(), fake_clock)


@pytest.mark.postgres
def test_purge_on_postgresql(make_host: Any, fake_clock: Any, postgres_url: str) -> None:
    check_purge(make_host(database_url=postgres_url), fake_clock)


def check_purge(host: Any, fake_clock: Any) -> None:
    now = fake_clock()
    _add_audit(host, now - 400 * DAY, 7)  # past 365 days
    _add_audit(host, now - 300 * DAY, 2)  # kept
    with host.engine.begin() as conn:
        conn.execute(
            PendingStep.__table__.insert(),
            [
                {
                    "id": "expired",
                    "kind": "challenge",
                    "audience": "client",
                    "user_id": "a",
                    "module": "totp",
                    "data": "x",
                    "expires_at": now - 1,
                },
                {
                    "id": "open",
                    "kind": "challenge",
                    "audience": "client",
                    "user_id": "a",
                    "module": "totp",
                    "data": "x",
                    "expires_at": now + 60,
                },
            ],
        )
        conn.execute(
            BackupCode.__table__.insert(),
            [
                {
                    "audience": "client",
                    "user_id": "a",
                    "code_hash": "h1",
                    "created_at": 0,
                    "used_at": now - 400 * DAY,
                },
                {
                    "audience": "client",
                    "user_id": "a",
                    "code_hash": "h2",
                    "created_at": 0,
                    "used_at": now - 10 * DAY,
                },
                {
                    "audience": "client",
                    "user_id": "a",
                    "code_hash": "h3",
                    "created_at": 0,
                    "used_at": None,
                },
            ],
        )
    audit_before = _rows(host, AuditEvent)

    # Batches of 2: the 7 old events take four transactions, and all of them go.
    purged = purge(host.engine, RetentionSettings(batch_size=2), now=now)

    assert (purged.audit_events, purged.pending_steps, purged.used_backup_codes) == (7, 1, 1)
    assert _rows(host, AuditEvent) == audit_before - 7
    with host.engine.connect() as conn:
        assert {r.id for r in conn.execute(sa.select(PendingStep.__table__.c.id))} == {"open"}
        hashes = {r.code_hash for r in conn.execute(sa.select(BackupCode.__table__.c.code_hash))}
    assert hashes == {"h2", "h3"}
    assert purge(host.engine, RetentionSettings(batch_size=2), now=now).total == 0


def test_zero_days_keeps_audit_and_used_codes_forever(make_host: Any, fake_clock: Any) -> None:
    host = make_host()
    _add_audit(host, fake_clock() - 4000 * DAY, 3)
    purged = purge(
        host.engine, RetentionSettings(audit_days=0, used_backup_code_days=0), now=fake_clock()
    )
    assert purged.audit_events == 0 and purged.used_backup_codes == 0


def test_logins_still_work_after_a_purge(make_host: Any, fake_clock: Any) -> None:
    host = make_host()
    totp, _codes = enrol_totp(host, ALICE, fake_clock)
    _add_audit(host, fake_clock() - 400 * DAY, 5)
    purge(host.engine, RetentionSettings(), now=fake_clock())
    assert host.verify(ALICE, {"code": totp.at(fake_clock())}).accepted


def test_retention_settings_are_checked(tmp_path: Any) -> None:
    from secmod.settings import ConfigError, load_settings

    config = tmp_path / "secmod.toml"
    config.write_text("[retention]\naudit_days = -1\n")
    with pytest.raises(ConfigError, match="retention.audit_days"):
        load_settings(config)


def test_secmod_purge_reports_what_it_deleted(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from secmod.host.cli import app

    config = tmp_path / "secmod.toml"
    config.write_text(
        f'database_url = "sqlite:///{tmp_path / "p.db"}"\n[retention]\naudit_days = 30\n'
    )
    monkeypatch.setenv("SECMOD_CONFIG", str(config))
    result = CliRunner().invoke(app, ["purge"], catch_exceptions=False)
    assert result.exit_code == 0
    assert (
        result.output.strip()
        == "purged 0 audit events, 0 expired pending steps, 0 used backup codes"
    )
