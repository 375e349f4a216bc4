"""The web host keeps an open challenge (no new one per page view or wrong code) and renders
any module's recovery method from the prompt it declares (TOTP: resync)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyotp
import pytest

from secmod.hookspecs import hookimpl
from secmod.host.web import create_app

from .conftest import enable_totp, log_in, log_out, post, sign_up, text, totp_code


class ChallengeCounter:
    """A non-module plugin that counts the challenges modules are asked to start."""

    def __init__(self) -> None:
        self.calls = 0

    @hookimpl(wrapper=True)
    def challenge(self, request: Any) -> Any:
        self.calls += 1
        return (yield)


@pytest.fixture
def counter() -> ChallengeCounter:
    return ChallengeCounter()


@pytest.fixture
def app(config_file: Path, fake_clock: Any, counter: ChallengeCounter, pin_module: Any) -> Any:
    # The PIN module (tests/support.py) keeps pending data: its challenges are one-shot.
    application = create_app(
        config_file, host_kwargs={"clock": fake_clock, "plugins": [counter], "modules": {"pin": pin_module}}
    )
    yield application
    application.state.web.close()


def test_page_views_and_wrong_codes_keep_the_open_challenge(client: Any, fake_clock: Any, counter: Any) -> None:
    sign_up(client)
    secret, _ = enable_totp(client, fake_clock)
    log_out(client)
    log_in(client)
    assert counter.calls == 1
    for _ in range(3):
        assert 'name="code"' in client.get("/login/2fa").text
    wrong = post(client, "/login/2fa", {"code": "000000" if totp_code(secret, fake_clock) != "000000" else "111111"},
                 page="/login/2fa")
    assert wrong.status_code == 401 and 'name="code"' in wrong.text
    assert counter.calls == 1, "a page view or a wrong TOTP code started a new challenge"
    fake_clock.advance(30)
    page = post(client, "/login/2fa", {"code": totp_code(secret, fake_clock)}, page="/login/2fa")
    assert page.url.path == "/clientarea"
    assert counter.calls == 1


def test_a_one_shot_challenge_is_replaced_only_when_the_person_asks(client: Any, counter: Any) -> None:
    sign_up(client)
    post(client, "/account/security/setup", {"module": "pin"}, page="/account/security")
    log_out(client)
    log_in(client)
    assert counter.calls == 1
    wrong = post(client, "/login/2fa", {"pin": "0000"}, page="/login/2fa")
    assert wrong.status_code == 401
    assert 'name="pin"' not in wrong.text and 'href="/login/2fa">Try again<' in wrong.text
    assert counter.calls == 1, "a rejection started a new challenge by itself"
    again = client.get("/login/2fa")
    assert 'name="pin"' in again.text and counter.calls == 2


def test_an_expired_challenge_is_replaced_at_the_next_page_view(client: Any, fake_clock: Any, counter: Any) -> None:
    sign_up(client)
    secret, _ = enable_totp(client, fake_clock)
    log_out(client)
    log_in(client)
    fake_clock.advance(3600)
    assert 'name="code"' in client.get("/login/2fa").text
    assert counter.calls == 2
    page = post(client, "/login/2fa", {"code": totp_code(secret, fake_clock)}, page="/login/2fa")
    assert page.url.path == "/clientarea"


def test_resync_has_a_page_rendered_from_the_modules_prompt(client: Any, fake_clock: Any) -> None:
    sign_up(client)
    secret, _ = enable_totp(client, fake_clock)
    log_out(client)
    log_in(client)
    second_factor = text(client.get("/login/2fa"))
    assert "Resynchronise your authenticator" in second_factor and "/login/recover/resync" in second_factor
    page = client.get("/login/recover/resync")
    assert page.status_code == 200
    assert "Enter two consecutive codes from your authenticator app" in text(page)
    assert 'name="code"' in page.text and 'name="next_code"' in page.text
    # A phone six minutes fast: two consecutive codes from its clock.
    phone = pyotp.TOTP(secret)
    refused = post(client, "/login/recover/resync", {"code": "000000", "next_code": "000001"},
                   page="/login/recover/resync")
    assert refused.status_code == 401 and 'name="next_code"' in refused.text
    done = post(client, "/login/recover/resync", {"code": phone.at(fake_clock() + 360),
                                                  "next_code": phone.at(fake_clock() + 390)},
                page="/login/recover/resync")
    assert done.url.path == "/clientarea"


def test_an_unknown_recovery_method_is_not_found(client: Any, fake_clock: Any) -> None:
    sign_up(client)
    enable_totp(client, fake_clock)
    log_out(client)
    log_in(client)
    assert client.get("/login/recover/dance").status_code == 404
    # The backup code has its own page.
    assert client.get("/login/recover/backup_code").status_code == 404


def test_recovery_pages_need_the_password_step_first(client: Any) -> None:
    page = client.get("/login/recover/resync", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login"
