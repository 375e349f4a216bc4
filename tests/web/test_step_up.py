"""Step-up (issue 12 point 1): a logged-in session alone (a stolen cookie) cannot replace
or remove the second factor, nor change the password. The person proves their password
and a current code (or a backup code) first; the code goes through Host.verify/recover,
so it is throttled and one-use like a login."""

from __future__ import annotations

from typing import Any

import pyotp
from secmod.hookspecs import messages

from .conftest import (
    API_TOKEN,
    PASSWORD,
    enable_totp,
    log_in,
    log_out,
    post,
    secret_on,
    sign_up,
    text,
    totp_code,
)

SECURITY = "/account/security"


def _step_up(client: Any, password: str = PASSWORD, **proof: str) -> Any:
    asked = post(client, f"{SECURITY}/step-up", {"password": password}, page=SECURITY)
    if not proof:
        return asked
    target = f"{SECURITY}/step-up/backup" if "backup_code" in proof else f"{SECURITY}/step-up/verify"
    return post(client, target, proof, page=SECURITY)


def _enrolled(client: Any, fake_clock: Any) -> tuple[str, str]:
    sign_up(client)
    secret, backup = enable_totp(client, fake_clock)
    fake_clock.advance(30)
    return secret, backup


def test_a_stolen_session_cannot_replace_remove_or_change_the_password(client: Any, web: Any, fake_clock: Any) -> None:
    _enrolled(client, fake_clock)
    [ada] = web.accounts.list("client")
    attempts = (
        (f"{SECURITY}/setup", {"module": "totp"}),
        (f"{SECURITY}/disable", {"password": PASSWORD}),
        (f"{SECURITY}/password", {"new_password": "attacker password", "new_password_confirm": "attacker password"}),
    )
    for path, data in attempts:
        refused = post(client, path, data, page=SECURITY)
        assert refused.status_code == 403, path
        assert "Confirm it's you" in text(refused)
    assert web.host.status(ada.as_user()).module == "totp"
    assert web.accounts.check_password(web.accounts.find("client", "ada@example.com"), PASSWORD)
    # The password alone is not enough either when a second factor is enrolled.
    asked = _step_up(client)
    assert asked.status_code == 200 and "Authentication code" in text(asked)
    assert post(client, f"{SECURITY}/disable", {}, page=SECURITY).status_code == 403


def test_replacing_the_authenticator_needs_password_and_a_current_code(client: Any, web: Any, fake_clock: Any) -> None:
    secret, _ = _enrolled(client, fake_clock)
    wrong_password = _step_up(client, "not it")
    assert wrong_password.status_code == 403 and messages.PASSWORD_INCORRECT in text(wrong_password)
    # A code sent without the password step before it proves nothing.
    post(client, f"{SECURITY}/step-up/verify", {"code": totp_code(secret, fake_clock)}, page=SECURITY)
    assert post(client, f"{SECURITY}/setup", {"module": "totp"}, page=SECURITY).status_code == 403
    proved = _step_up(client, code=totp_code(secret, fake_clock))
    assert proved.status_code == 200 and "you can now" in text(proved).lower()
    setup = post(client, f"{SECURITY}/setup", {"module": "totp"}, page=SECURITY)
    assert setup.status_code == 200
    new_secret = secret_on(setup.text)
    done = post(client, f"{SECURITY}/setup/confirm", {"code": totp_code(new_secret, fake_clock)}, page=SECURITY)
    assert messages.ENABLED in text(done)
    # The proof was used up by the replacement.
    assert post(client, f"{SECURITY}/setup", {"module": "totp"}, page=SECURITY).status_code == 403
    events = [(event.event, event.outcome) for event in web.host.audit_events(limit=30)]
    assert ("step_up", "ok") in events


def test_the_code_of_the_login_cannot_be_replayed_for_the_step_up(client: Any, fake_clock: Any) -> None:
    secret, _ = _enrolled(client, fake_clock)
    log_out(client)
    log_in(client)
    code = totp_code(secret, fake_clock)
    assert post(client, "/login/2fa", {"code": code}, page="/login/2fa").url.path == "/clientarea"
    replayed = _step_up(client, code=code)
    assert replayed.status_code == 403
    assert post(client, f"{SECURITY}/disable", {}, page=SECURITY).status_code == 403


def test_wrong_step_up_codes_count_towards_the_lockout(client: Any, fake_clock: Any) -> None:
    secret, _ = _enrolled(client, fake_clock)
    for _ in range(5):
        _step_up(client, code="000000")
    locked = _step_up(client, code=totp_code(secret, fake_clock))
    assert locked.status_code == 403
    assert "Login Attempts Exceeded" in text(locked)


def test_removing_with_a_backup_code(client: Any, web: Any, fake_clock: Any) -> None:
    _, backup = _enrolled(client, fake_clock)
    proved = _step_up(client, backup_code=backup)
    assert proved.status_code == 200
    removed = post(client, f"{SECURITY}/disable", {}, page=SECURITY)
    assert messages.DISABLED in text(removed)
    [ada] = web.accounts.list("client")
    assert web.host.status(ada.as_user()) is None


def test_changing_the_password(client: Any, web: Any, fake_clock: Any) -> None:
    secret, _ = _enrolled(client, fake_clock)
    _step_up(client, code=totp_code(secret, fake_clock))
    mismatch = post(client, f"{SECURITY}/password", {"new_password": "new password 1", "new_password_confirm": "x"},
                    page=SECURITY)
    assert mismatch.status_code == 400
    changed = post(client, f"{SECURITY}/password", {"new_password": "new password 1",
                                                    "new_password_confirm": "new password 1"}, page=SECURITY)
    assert "Your password has been changed" in text(changed)
    log_out(client)
    assert log_in(client).status_code == 401
    assert log_in(client, password="new password 1").url.path == "/login/2fa"


def test_without_a_second_factor_the_password_is_the_proof(client: Any) -> None:
    sign_up(client)
    assert post(client, f"{SECURITY}/password", {"new_password": "new password 1",
                                                 "new_password_confirm": "new password 1"},
                page=SECURITY).status_code == 403
    assert _step_up(client).status_code == 200
    changed = post(client, f"{SECURITY}/password", {"new_password": "new password 1",
                                                    "new_password_confirm": "new password 1"}, page=SECURITY)
    assert changed.status_code == 200


def test_the_api_asks_for_a_current_code_before_removing_or_replacing(client: Any, fake_clock: Any) -> None:
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    user = {"id": "42", "email": "api@example.com"}
    setup = client.post("/api/v1/setup", json={"user": user, "module": "totp"}, headers=headers).json()
    secret = setup["prompt"]["provisioning"]["secret"]
    done = client.post("/api/v1/setup/continue", headers=headers, json={
        "user": user, "setup_id": setup["setup_id"], "answer": {"code": pyotp.TOTP(secret).at(fake_clock())}})
    assert done.json()["status"] == "enrolled"
    fake_clock.advance(30)
    for path, body in (("/api/v1/disable", {}), ("/api/v1/setup", {"module": "totp"})):
        refused = client.post(path, json={"user": user, **body}, headers=headers)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "step_up_required", path
        wrong = client.post(path, json={"user": user, "step_up": {"answer": {"code": "000000"}}, **body},
                            headers=headers)
        assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "step_up_failed", path
    proof = {"answer": {"code": pyotp.TOTP(secret).at(fake_clock())}}
    removed = client.post("/api/v1/disable", json={"user": user, "step_up": proof}, headers=headers)
    assert removed.json() == {"disabled": True}
    # An administrator's removal (the host application vouches for the admin) needs no code.
    assert client.post("/api/v1/disable", json={"user": user, "actor": "admin:7"}, headers=headers).status_code == 200


def test_the_password_form_is_no_oracle_for_guessing_the_password(client: Any, fake_clock: Any) -> None:
    """Without a step-up, sending the current password as the new one answers like any other."""
    _enrolled(client, fake_clock)
    for guess in (PASSWORD, "not the password"):
        answer = post(client, f"{SECURITY}/password", {"new_password": guess, "new_password_confirm": guess},
                      page=SECURITY)
        assert answer.status_code == 403 and "Confirm it's you" in text(answer)
