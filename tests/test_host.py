"""The host's guarantees, whatever the module: policies, throttling, backup codes, audit."""

from __future__ import annotations

import logging
import re
import sqlite3

import pyotp
import pytest
from support import ADMIN, ALICE, BOB, enrol_totp

from secmod.hookspecs import messages
from secmod.host import (
    LoginStep,
    ModuleUnavailable,
    NotEnrolled,
    Outcome,
    SetupExpired,
    UnknownModule,
    UserLocked,
)


def test_login_state_follows_whmcs_policies(make_host, fake_clock):
    host = make_host(force_clients=True)
    assert host.login_state(ALICE).step is LoginStep.MUST_SET_UP
    assert host.login_state(ALICE).message == messages.FORCED_CLIENT
    assert host.login_state(ADMIN).step is LoginStep.NOT_REQUIRED  # force_admins is off
    enrol_totp(host, ALICE, fake_clock)
    state = host.login_state(ALICE)
    assert (state.step, state.module, state.message) == (LoginStep.CHALLENGE, "totp", messages.SECOND_FACTOR_REQUIRED_CLIENT)


def test_forcing_needs_a_module_enabled_for_that_audience(make_host):
    host = make_host({"totp": {"admins": False}}, force_admins=True, force_clients=True)
    assert host.login_state(ADMIN).step is LoginStep.NOT_REQUIRED
    assert host.login_state(ALICE).choices == ("totp",)
    with pytest.raises(UnknownModule, match="not enabled for admins"):
        host.begin_setup(ADMIN, "totp")


def test_switching_a_module_off_keeps_challenging_its_users(make_host, fake_clock, tmp_path):
    """WHMCS silently drops 2FA for the users of a module switched off; secmod does not."""
    host = make_host()
    totp, _ = enrol_totp(host, ALICE, fake_clock)
    off = make_host({"totp": {"clients": False, "admins": False}})
    assert off.login_state(ALICE).step is LoginStep.CHALLENGE
    assert off.verify(ALICE, {"code": totp.at(fake_clock.now)}).accepted
    with pytest.raises(UnknownModule):
        off.begin_setup(BOB, "totp")


def test_an_uninstalled_module_fails_closed_but_the_backup_code_works(make_host, fake_clock):
    host = make_host()
    totp, codes = enrol_totp(host, ALICE, fake_clock)
    gone = make_host(loading={"block": ["totp"]})
    assert gone.login_state(ALICE).step is LoginStep.CHALLENGE
    with pytest.raises(ModuleUnavailable, match=re.escape(messages.MODULE_LOAD_ERROR)):
        gone.begin_challenge(ALICE)
    result = gone.verify(ALICE, {"code": totp.at(fake_clock.now)})
    assert (result.outcome, result.reason) == (Outcome.REJECTED, "module_unavailable")
    assert gone.recover(ALICE, {"code": codes[0]}).accepted


def test_only_a_declared_outage_may_be_let_through_and_only_when_the_operator_chose_it(make_host):
    from secmod.hookspecs import ProviderUnavailable, hookimpl
    from support import PinModule

    class ProviderDown(PinModule):
        @hookimpl
        def challenge(self, request):
            raise ProviderUnavailable("The provider is down.")

        @hookimpl
        def verify(self, request):
            raise ProviderUnavailable("The provider is down.")

    pin_module = ProviderDown()
    closed = make_host(host_kwargs={"modules": {"pin": pin_module}})
    closed.begin_setup(ALICE, "pin")
    result = closed.verify(ALICE, {"pin": "0000"})
    assert (result.outcome, result.reason, result.attempts_left) == (Outcome.REJECTED, "unavailable", None)
    with pytest.raises(ModuleUnavailable, match="The provider is down."):
        closed.begin_challenge(ALICE)
    lenient = make_host({"pin": {"fail_mode": "open"}}, host_kwargs={"modules": {"pin": pin_module}})
    assert lenient.verify(ALICE, {"pin": "0000"}).reason == "fail_open"
    assert lenient.audit_events(limit=1)[0].reason == "fail_open"
    admitted = lenient.begin_challenge(ALICE)
    assert admitted.accepted and admitted.reason == "fail_open"  # the second factor is settled already


def test_a_missing_module_is_never_an_outage(make_host, fake_clock):
    host = make_host()
    enrol_totp(host, ALICE, fake_clock)
    gone = make_host({"totp": {"fail_mode": "open"}}, loading={"block": ["totp"]})
    assert gone.verify(ALICE, {"code": "000000"}).reason == "module_unavailable"


def test_fail_closed_is_gone_with_a_pointer_to_fail_mode(make_host):
    from secmod.settings import SecmodSettings

    with pytest.raises(ValueError, match='fail_mode = "open"'):
        SecmodSettings(fail_closed=False)


def test_a_crashing_module_fails_closed_and_leaks_nothing(make_host, pin_module, caplog):
    host = make_host(host_kwargs={"modules": {"pin": pin_module}})
    host.begin_setup(ALICE, "pin")
    started = host.begin_challenge(ALICE)
    pin_module.explode = True
    with caplog.at_level(logging.DEBUG, logger="secmod"):
        result = host.verify(ALICE, {"pin": "4711", "nonce": "n-alice"}, challenge_id=started.challenge_id)
    assert (result.outcome, result.reason, result.message) == (Outcome.REJECTED, "module_error", messages.MODULE_LOAD_ERROR)
    assert result.attempts_left is None  # a crash is never the person's fault
    assert "4711" not in caplog.text
    assert "support.py" in caplog.text  # the frames are there for debugging
    [crash] = host.audit_events(limit=1)
    assert (crash.event, crash.reason, crash.detail) == ("verify", "module_error", "RuntimeError")


def test_challenge_data_is_used_once_by_its_owner_before_it_expires(make_host, pin_module, fake_clock):
    host = make_host(host_kwargs={"modules": {"pin": pin_module}})
    host.begin_setup(ALICE, "pin")
    host.begin_setup(BOB, "pin")
    first = host.begin_challenge(ALICE)
    assert host.verify(ALICE, {"pin": "4711", "nonce": "n-alice"}, challenge_id=first.challenge_id).accepted
    again = host.verify(ALICE, {"pin": "4711", "nonce": "n-alice"}, challenge_id=first.challenge_id)
    assert again.reason == "no_challenge"
    bobs = host.begin_challenge(BOB)
    assert host.verify(ALICE, {"pin": "4711", "nonce": "n-bob"}, challenge_id=bobs.challenge_id).reason == "no_challenge"
    late = host.begin_challenge(ALICE)
    fake_clock.advance(61)
    assert host.verify(ALICE, {"pin": "4711", "nonce": "n-alice"}, challenge_id=late.challenge_id).reason == "no_challenge"


def test_five_wrong_codes_lock_for_fifteen_minutes(make_host, fake_clock):
    host = make_host()
    totp, _ = enrol_totp(host, ALICE, fake_clock)
    for left in (4, 3, 2, 1):
        result = host.verify(ALICE, {"code": "000000"})
        assert result.attempts_left == left
        assert result.message == messages.WRONG_FACTOR_CLIENT.format(attempts=left)
    locked = host.verify(ALICE, {"code": "000000"})
    assert locked.outcome is Outcome.LOCKED
    assert locked.locked_until.timestamp() == fake_clock.now + 15 * 60
    assert "Login Attempts Exceeded" in locked.message and "UTC" in locked.message
    # Even the right code is not looked at while locked.
    assert host.verify(ALICE, {"code": totp.at(fake_clock.now)}).outcome is Outcome.LOCKED
    with pytest.raises(UserLocked):
        host.begin_challenge(ALICE)
    fake_clock.advance(15 * 60)
    assert host.verify(ALICE, {"code": totp.at(fake_clock.now)}).accepted
    events = [(e.event, e.reason) for e in host.audit_events()]
    assert events.count(("lockout", "code_failures")) == 1


def test_success_resets_the_counter(make_host, fake_clock):
    host = make_host()
    totp, _ = enrol_totp(host, ALICE, fake_clock)
    for _ in range(4):
        host.verify(ALICE, {"code": "000000"})
    assert host.verify(ALICE, {"code": totp.at(fake_clock.now)}).accepted
    assert host.verify(ALICE, {"code": "000000"}).attempts_left == 4


def test_admins_get_the_admin_wording(make_host, fake_clock):
    host = make_host()
    enrol_totp(host, ADMIN, fake_clock)
    result = host.verify(ADMIN, {"code": "000000"})
    assert result.message == messages.WRONG_FACTOR_ADMIN and result.attempts_left == 4


def test_backup_code_logs_in_once_and_is_replaced(make_host, fake_clock):
    host = make_host()
    _, codes = enrol_totp(host, ALICE, fake_clock)
    assert re.fullmatch(r"[0-9a-f]{4}( [0-9a-f]{4}){3}", codes[0])
    result = host.recover(ALICE, {"code": codes[0].upper().replace(" ", "-")})
    assert result.accepted and result.message == messages.BACKUP_LOGIN_OK
    (new_code,) = result.new_backup_codes
    assert new_code != codes[0]
    assert host.login_state(ALICE).step is LoginStep.CHALLENGE  # 2FA stays on
    assert not host.recover(ALICE, {"code": codes[0]}).accepted
    assert host.recover(ALICE, {"code": new_code}).accepted


def test_three_wrong_backup_codes_lock(make_host, fake_clock):
    host = make_host()
    _, codes = enrol_totp(host, ALICE, fake_clock)
    assert host.recover(ALICE, {"code": "0000 0000 0000 0000"}).attempts_left == 2
    assert host.recover(ALICE, {"code": "nope"}).attempts_left == 1
    assert host.recover(ALICE, {"code": ""}).outcome is Outcome.LOCKED
    assert host.recover(ALICE, {"code": codes[0]}).outcome is Outcome.LOCKED


def test_backup_code_count_is_configurable(make_host, fake_clock):
    host = make_host(backup_codes={"count": 3})
    _, codes = enrol_totp(host, ALICE, fake_clock)
    assert len(set(codes)) == 3
    assert host.recover(ALICE, {"code": codes[1]}).accepted
    assert host.status(ALICE).backup_codes_left == 3


def test_setup_steps_expire_and_belong_to_their_owner(make_host, fake_clock):
    host = make_host()
    started = host.begin_setup(ALICE, "totp")
    code = pyotp.TOTP(started.prompt.provisioning.secret).at(fake_clock.now)
    with pytest.raises(SetupExpired):
        host.continue_setup(BOB, started.setup_id, {"code": code})
    fake_clock.advance(host.settings.setup_ttl_seconds + 1)
    with pytest.raises(SetupExpired):
        host.continue_setup(ALICE, started.setup_id, {"code": code})
    assert host.status(ALICE) is None


def test_a_failed_re_enrolment_keeps_the_old_factor(make_host, fake_clock):
    host = make_host()
    totp, _ = enrol_totp(host, ALICE, fake_clock)
    started = host.begin_setup(ALICE, "totp")
    assert host.continue_setup(ALICE, started.setup_id, {"code": "000000"}).error
    assert host.verify(ALICE, {"code": totp.at(fake_clock.now)}).accepted


def test_disable_removes_everything_and_is_audited(make_host, pin_module):
    host = make_host(host_kwargs={"modules": {"pin": pin_module}})
    host.begin_setup(ALICE, "pin")
    assert host.disable(ALICE, actor="admin:root")
    assert pin_module.forgotten == ["alice"]
    assert host.login_state(ALICE).step is LoginStep.NOT_REQUIRED
    assert not host.disable(ALICE)
    event = host.audit_events(user=ALICE, limit=1)[0]
    assert (event.event, event.reason, event.actor) == ("disable", "by_admin", "admin:root")
    with pytest.raises(NotEnrolled):
        host.begin_challenge(ALICE)


def test_nothing_secret_is_stored_in_the_clear(make_host, fake_clock, tmp_path):
    host = make_host()
    started = host.begin_setup(ALICE, "totp")
    secret = started.prompt.provisioning.secret
    totp = pyotp.TOTP(secret)
    setup_code = totp.at(fake_clock.now)
    enrolled = host.continue_setup(ALICE, started.setup_id, {"code": setup_code})
    fake_clock.advance(30)
    login_code = totp.at(fake_clock.now)
    assert host.verify(ALICE, {"code": login_code}).accepted
    host.verify(ALICE, {"code": "123456"})
    backup_code = enrolled.backup_codes[0]
    host.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("secmod.db*"))
    needles = [secret, secret.lower(), backup_code, backup_code.replace(" ", ""), setup_code, login_code, "123456"]
    for needle in needles:
        assert needle.encode() not in raw, needle
    rows = sqlite3.connect(tmp_path / "secmod.db").execute("select * from secmod_audit").fetchall()
    for row in rows:
        for needle in needles:
            assert needle not in " ".join(map(str, row))


def test_results_and_errors_hide_secrets_in_repr(make_host, fake_clock):
    host = make_host()
    started = host.begin_setup(ALICE, "totp")
    secret = started.prompt.provisioning.secret
    assert secret not in repr(started) and started.setup_id not in repr(started)
    enrolled = host.continue_setup(ALICE, started.setup_id, {"code": pyotp.TOTP(secret).at(fake_clock.now)})
    assert enrolled.backup_codes[0] not in repr(enrolled)
    fake_clock.advance(30)
    result = host.recover(ALICE, {"code": enrolled.backup_codes[0]})
    assert result.new_backup_codes[0] not in repr(result)
    assert "secret" not in repr(host.keyring) or "key=" not in repr(host.keyring)


def test_state_sealed_for_one_person_does_not_open_for_another(make_host, fake_clock):
    host = make_host()
    enrol_totp(host, ALICE, fake_clock)
    enrol_totp(host, BOB, fake_clock)
    from secmod.host.storage import Enrolment
    import sqlalchemy as sa

    table = Enrolment.__table__
    with host.engine.begin() as conn:
        alices = conn.execute(sa.select(table.c.state).where(table.c.user_id == "alice")).scalar_one()
        conn.execute(table.update().where(table.c.user_id == "bob").values(state=alices))
    result = host.verify(BOB, {"code": "000000"})
    assert (result.outcome, result.reason, result.attempts_left) == (Outcome.REJECTED, "state_unreadable", None)
    assert host.audit_events(user=BOB)[0].reason == "state_unreadable"


def test_key_rotation_reseals_and_old_processes_keep_reading(make_host, fake_clock):
    host = make_host()
    totp, _ = enrol_totp(host, ALICE, fake_clock)
    still_running = make_host()  # another process, with the ring as it was
    old_key = host.keyring.primary
    new_key = host.keyring.add_key()
    assert host.reseal_all() == 1
    assert old_key != new_key and host.keyring.key_ids == (old_key, new_key)
    assert still_running.verify(ALICE, {"code": totp.at(fake_clock.now)}).accepted
    assert host.store.load(ALICE).state.startswith(new_key + "$")


def test_the_key_file_is_private(make_host, tmp_path):
    make_host()
    assert (tmp_path / "secmod.keys").stat().st_mode & 0o777 == 0o600


def test_a_crash_while_enrolling_leaves_the_old_factor_in_place(make_host, fake_clock, monkeypatch):
    host = make_host()
    totp, codes = enrol_totp(host, ALICE, fake_clock)
    started = host.begin_setup(ALICE, "totp")
    new_code = pyotp.TOTP(started.prompt.provisioning.secret).at(fake_clock.now)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    from secmod.host.store import AuditRow

    monkeypatch.setattr(AuditRow, "values", crash)  # the last write of the enrolment's transaction
    with pytest.raises(OSError):
        host.continue_setup(ALICE, started.setup_id, {"code": new_code})
    monkeypatch.undo()
    assert host.verify(ALICE, {"code": totp.at(fake_clock.now)}).accepted
    assert host.recover(ALICE, {"code": codes[0]}).accepted
    # The step was not consumed: the person can finish the new enrolment.
    fake_clock.advance(30)
    secret = started.prompt.provisioning.secret
    finished = host.continue_setup(ALICE, started.setup_id, {"code": pyotp.TOTP(secret).at(fake_clock.now)})
    assert finished.module == "totp" and finished.backup_codes == ()  # same module: codes kept


def test_re_enrolling_with_the_same_module_keeps_the_backup_codes(make_host, fake_clock):
    host = make_host()
    old_totp, codes = enrol_totp(host, ALICE, fake_clock)
    new_totp, kept = enrol_totp(host, ALICE, fake_clock)  # a new phone
    assert kept == ()
    assert not host.verify(ALICE, {"code": old_totp.at(fake_clock.now)}).accepted
    assert host.verify(ALICE, {"code": new_totp.at(fake_clock.now)}).accepted
    assert host.recover(ALICE, {"code": codes[0]}).accepted
    assert [e.reason for e in host.audit_events() if e.event == "enrol"] == ["updated", "ok"]
