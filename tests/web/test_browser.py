"""The web host in a real browser: Debian's headless Chromium driven by Playwright.

Each test runs the app with uvicorn on 127.0.0.1 (an ephemeral port) over a temporary
secmod.toml (browsed as http://localhost:PORT where WebAuthn needs a domain name), and
saves a screenshot of where it ended under ``test-artifacts/``.
The host's clock is a fake one the test moves, so a TOTP code used at enrolment is never
mistaken for the next login's.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyotp
import pytest
from secmod.hookspecs import messages
from secmod.host.web import create_app, ensure_first_admin

from .conftest import serve_in_thread

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PASSWORD = "correct horse battery"
ADMIN_PASSWORD = "admin password 123"  # one-time: replaced by ADMIN_CHOSEN at the first login
ADMIN_CHOSEN = "the admin's own password"


@dataclass
class LiveHost:
    url: str
    web: Any
    config_file: Path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: apt-get install chromium (the CI script does)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    # The fake Duo serves HTTPS with a throwaway CA the browser does not know.
    context = browser.new_context(ignore_https_errors=True)
    context.set_default_timeout(10_000)
    tab = context.new_page()
    yield tab
    ARTIFACTS.mkdir(exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


@pytest.fixture
def start_host(tmp_path: Path, fake_clock: Any) -> Iterator[Callable[..., LiveHost]]:
    """Run the web host; ``extra_toml`` is appended to its secmod.toml."""
    running: list[tuple[Callable[[], None], Any]] = []
    fake_clock.now = float(int(time.time()) // 30 * 30)  # near real time: the browser's cookies expire by it

    def start(extra_toml: str = "", *, before_start: Callable[[str], str] | None = None,
              hostname: str = "127.0.0.1") -> LiveHost:
        # hostname="localhost" for WebAuthn, which refuses an IP address as the site's name.
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        url = f"http://{hostname}:{listener.getsockname()[1]}"
        if before_start is not None:
            extra_toml += before_start(url)
        config = tmp_path / "secmod.toml"
        config.write_text(
            f'database_url = "sqlite:///secmod.db"\n\n[sealing]\nkey_file = "secmod.keys"\n\n'
            f'[web]\nbase_url = "{url}"\nsession_secret = "browser-tests"\n\n{extra_toml}'
        )
        app = create_app(config, host_kwargs={"clock": fake_clock})
        ensure_first_admin(app.state.web.accounts, environ={"SECMOD_ADMIN_PASSWORD": ADMIN_PASSWORD}, echo=lambda _: None)
        running.append((serve_in_thread(app, listener), app))
        return LiveHost(url=url, web=app.state.web, config_file=config)

    yield start
    for stop, app in running:
        stop()
        app.state.web.close()


def shot(page: Any, name: str) -> None:
    """A screenshot of a page worth looking at (the README's tour uses the same names)."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"page-{name}.png"), full_page=True)


def sign_up(page: Any, host: LiveHost, email: str) -> None:
    page.goto(f"{host.url}/register")
    page.fill("#name", email.split("@")[0].capitalize())
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.fill("#password_confirm", PASSWORD)
    page.click("button:has-text('Register')")
    page.wait_for_url(re.compile(r"/login$"))
    log_in(page, host, email)


def log_in(page: Any, host: LiveHost, email: str, *, admin: bool = False) -> None:
    page.goto(f"{host.url}{'/admin' if admin else ''}/login")
    page.fill("#email", email)
    page.fill("#password", ADMIN_CHOSEN if admin else PASSWORD)
    page.click("button:has-text('Login')")


def first_admin_login(page: Any, host: LiveHost) -> None:
    """The first administrator's one-time password, replaced at once by ADMIN_CHOSEN."""
    page.goto(f"{host.url}/admin/login")
    page.fill("#email", "admin@localhost")
    page.fill("#password", ADMIN_PASSWORD)
    page.click("button:has-text('Login')")
    page.wait_for_url(re.compile(r"/admin/account/security$"))  # a one-time password: replace it first
    page.fill("#new_password", ADMIN_CHOSEN)
    page.fill("#new_password_confirm", ADMIN_CHOSEN)
    page.click("button:has-text('Change Password')")
    page.wait_for_url(re.compile(r"/admin/2fa$"))


def log_out(page: Any) -> None:
    page.click("button:has-text('Logout')")
    page.wait_for_url(re.compile(r"/login$"))


def enable_totp(page: Any, host: LiveHost, clock: Any) -> tuple[str, str]:
    """From the security page: choose Time Based Tokens, read the secret, confirm a code."""
    page.goto(f"{host.url}/account/security")
    page.click("li:has-text('Time Based Tokens') button:has-text('Get Started')")
    assert page.locator(".qr svg").is_visible()
    secret = page.inner_text("#setup-secret").strip()
    shot(page, "setup-totp")
    page.fill("#field-code", pyotp.TOTP(secret).at(clock()))
    page.click("button:has-text('Submit')")
    assert page.locator("h1").inner_text() == messages.ENABLED
    shot(page, "enrolled")
    return secret, page.inner_text(".backup-code").strip()


def test_client_enables_totp_and_logs_back_in_with_a_code(page: Any, start_host: Any, fake_clock: Any) -> None:
    host = start_host()
    sign_up(page, host, "ada@example.com")
    page.wait_for_url(re.compile(r"/clientarea$"))
    secret, _ = enable_totp(page, host, fake_clock)
    page.click("a:has-text('Continue')")
    log_out(page)

    log_in(page, host, "ada@example.com")
    page.wait_for_url(re.compile(r"/login/2fa$"))
    assert messages.SECOND_FACTOR_REQUIRED_CLIENT in page.inner_text("main")
    shot(page, "second-factor")
    fake_clock.advance(30)
    page.fill("#field-code", pyotp.TOTP(secret).at(fake_clock()))
    page.click("button:has-text('Login')")
    page.wait_for_url(re.compile(r"/clientarea$"))
    assert page.inner_text("#two-factor-status") == "enabled"
    shot(page, "clientarea")


def test_wrong_code_shows_attempts_remaining(page: Any, start_host: Any, fake_clock: Any) -> None:
    host = start_host()
    sign_up(page, host, "grace@example.com")
    enable_totp(page, host, fake_clock)
    page.goto(f"{host.url}/clientarea")
    log_out(page)
    log_in(page, host, "grace@example.com")
    page.fill("#field-code", "000000")
    page.click("button:has-text('Login')")
    assert messages.WRONG_FACTOR_CLIENT.format(attempts=4) in page.inner_text(".alert.error")
    shot(page, "wrong-code")


def test_backup_code_login_shows_a_new_code(page: Any, start_host: Any, fake_clock: Any) -> None:
    host = start_host()
    sign_up(page, host, "hedy@example.com")
    _, backup = enable_totp(page, host, fake_clock)
    page.goto(f"{host.url}/clientarea")
    log_out(page)
    log_in(page, host, "hedy@example.com")
    page.click(f"a:has-text('{messages.LOGIN_USING_BACKUP_CODE}')")
    page.fill("#code", backup)
    page.click("button:has-text('Login')")
    fresh = page.inner_text("#new-backup-code").strip()
    assert fresh and fresh != backup
    assert messages.BACKUP_LOGIN_OK in page.inner_text("main")
    shot(page, "backup-code")
    page.click("a:has-text('Continue')")
    page.wait_for_url(re.compile(r"/clientarea$"))


def test_admin_activates_a_module_and_forces_clients_to_set_up(page: Any, start_host: Any, fake_clock: Any) -> None:
    from secmod_yubikey.testing.yubicloud_fake import FakeYubiCloud

    with FakeYubiCloud() as cloud:
        host = start_host()
        first_admin_login(page, host)
        assert "Server time:" in page.inner_text("header")
        shot(page, "admin-two-factor")
        page.click("#module-yubikey a:has-text('Activate')")
        page.check("input[name=clients]")
        page.fill("#setting-client_id", cloud.client_id)
        page.fill("#setting-secret_key", cloud.api_key)
        page.fill("#setting-api_urls", cloud.url)
        shot(page, "admin-module")
        page.click("button:has-text('Save Changes')")
        page.wait_for_url(re.compile(r"/admin/2fa$"))
        assert page.inner_text("#module-yubikey").count("On") == 1
        page.check("input[name=force_clients]")
        page.click("form[action='/admin/2fa/global'] button")
        assert "Global Two-Factor Authentication Settings saved." in page.inner_text("main")
        assert cloud.api_key not in host.config_file.read_text()
        log_out(page)

        sign_up(page, host, "katherine@example.com")
        page.wait_for_url(re.compile(r"/account/security$"))
        assert messages.FORCED_CLIENT in page.inner_text("main")
        assert "YubiKey" in page.inner_text("ul.choices") and "Time Based Tokens" in page.inner_text("ul.choices")
        shot(page, "forced-setup")
        page.goto(f"{host.url}/clientarea")
        page.wait_for_url(re.compile(r"/account/security$"))  # nothing else until set up
        enable_totp(page, host, fake_clock)
        page.click("a:has-text('Continue')")
        page.wait_for_url(re.compile(r"/clientarea$"))

        log_in(page, host, "admin@localhost", admin=True)  # the same browser: each area has its own login
        page.goto(f"{host.url}/admin/users")
        assert "totp" in page.inner_text("tr:has-text('katherine@example.com')")
        shot(page, "admin-users")
        page.goto(f"{host.url}/admin/audit")
        assert "katherine@example.com" in page.inner_text("table") and "enrol" in page.inner_text("table")
        shot(page, "admin-audit")


def _modules_toml(name: str, settings: dict[str, Any]) -> str:
    import tomlkit

    return tomlkit.dumps({"modules": {name: settings}})


def test_duo_login_goes_to_duo_and_back(page: Any, start_host: Any) -> None:
    from secmod_duo.testing.fake import FakeDuo

    with FakeDuo(interactive=True) as duo:
        host = start_host(before_start=lambda url: _modules_toml(
            "duo", duo.settings(f"{url}/login/duo/callback", clients=True)))
        sign_up(page, host, "mary@example.com")
        page.goto(f"{host.url}/account/security")
        page.click("li:has-text('Duo Security') button:has-text('Get Started')")
        assert messages.DUO_SETUP_NEXT_LOGIN in page.inner_text("main")
        page.click("a:has-text('Continue')")
        log_out(page)

        log_in(page, host, "mary@example.com")
        page.wait_for_url(re.compile(rf"^https://{re.escape(duo.api_hostname)}/oauth/v1/authorize"))
        assert "mary@example.com" in page.inner_text("body")
        shot(page, "duo-prompt")
        page.click("button:has-text('Approve')")
        page.wait_for_url(re.compile(rf"^{re.escape(host.url)}/clientarea$"))
        assert page.inner_text("#two-factor-status") == "enabled"
        assert duo.calls["token"] == 1  # the code was exchanged, not just the state trusted


def test_yubikey_login_with_the_software_key(page: Any, start_host: Any) -> None:
    from secmod_yubikey.testing.yubicloud_fake import FakeYubiCloud

    with FakeYubiCloud() as cloud:
        key = cloud.new_key()
        host = start_host(_modules_toml("yubikey", cloud.settings(clients=True)))
        sign_up(page, host, "radia@example.com")
        page.goto(f"{host.url}/account/security")
        page.click("li:has-text('YubiKey') button:has-text('Get Started')")
        page.fill("#field-otp", key.press())
        page.click("button:has-text('Submit')")
        assert messages.YUBICO_SAVED in page.inner_text("main")
        page.click("a:has-text('Continue')")
        log_out(page)

        log_in(page, host, "radia@example.com")
        page.wait_for_url(re.compile(r"/login/2fa$"))
        page.fill("#field-otp", key.press())
        shot(page, "yubikey-challenge")
        page.click("button:has-text('Login')")
        page.wait_for_url(re.compile(r"/clientarea$"))
        assert page.inner_text("#two-factor-status") == "enabled"


def test_first_run_walk(page: Any, start_host: Any, fake_clock: Any) -> None:
    """Issue 9's walk: enrol, log in at once ("already used"), the next code, a backup code
    during a lockout, then an admin form with a validation error. Screenshots: first-run-*."""
    host = start_host()
    sign_up(page, host, "grace@example.com")
    secret, backup = enable_totp(page, host, fake_clock)
    page.goto(f"{host.url}/clientarea")
    log_out(page)

    # The code just typed at enrolment, again in the same 30 seconds: said plainly.
    log_in(page, host, "grace@example.com")
    page.wait_for_url(re.compile(r"/login/2fa$"))
    page.fill("#field-code", pyotp.TOTP(secret).at(fake_clock()))
    page.click("button:has-text('Login')")
    assert messages.CODE_ALREADY_USED in page.inner_text("[role=alert]")
    shot(page, "first-run-already-used")

    fake_clock.advance(30)  # the app shows the next code
    page.fill("#field-code", pyotp.TOTP(secret).at(fake_clock()))
    page.click("button:has-text('Login')")
    page.wait_for_url(re.compile(r"/clientarea$"))
    shot(page, "first-run-next-code")
    log_out(page)

    # Five wrong codes lock codes; the backup code still gets in.
    log_in(page, host, "grace@example.com")
    for _ in range(5):
        page.fill("#field-code", "000000")
        page.click("button:has-text('Login')")
    assert "Login Attempts Exceeded" in page.inner_text("main")
    assert messages.BACKUP_WORKS_WHILE_LOCKED in page.inner_text("main")
    shot(page, "first-run-locked")
    page.click(f"a:has-text('{messages.LOGIN_USING_BACKUP_CODE}')")
    page.fill("#code", backup)
    page.click("button:has-text('Login')")
    assert messages.BACKUP_LOGIN_OK in page.inner_text("main")
    shot(page, "first-run-backup-during-lockout")

    # The admin form: labels and help from the settings model, an error in the operator's words.
    first_admin_login(page, host)
    page.goto(f"{host.url}/admin/2fa/yubikey")
    assert page.locator("label[for=setting-api_urls]").inner_text() == "Validation server URLs"
    save, cancel = page.locator(".form-actions button"), page.locator(".form-actions a:has-text('Cancel')")
    gap = cancel.bounding_box()["x"] - (save.bounding_box()["x"] + save.bounding_box()["width"])
    assert gap >= 8, f"Save Changes and Cancel are {gap}px apart"
    page.check("input[name=clients]")
    page.fill("#setting-client_id", "12345")
    page.fill("#setting-secret_key", "not base64 !")
    page.click("button:has-text('Save Changes')")
    alert = page.inner_text("[role=alert]")
    assert "Secret Key:" in alert and "Secret Key was not kept: type it again" in alert
    assert "(top level)" not in alert and "Value error" not in alert
    assert page.input_value("#setting-client_id") == "12345" and page.input_value("#setting-secret_key") == ""
    shot(page, "first-run-admin-validation-error")


def add_virtual_authenticator(page: Any) -> tuple[Any, str]:
    """A platform authenticator in Chromium itself (DevTools WebAuthn domain): a passkey
    with user verification, touched automatically whenever the page asks."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    added = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
        "isUserVerified": True, "automaticPresenceSimulation": True,
    }})
    return cdp, added["authenticatorId"]


def step_up_with_security_key(page: Any, host: LiveHost) -> None:
    page.goto(f"{host.url}/account/security")
    page.fill("#step-up-password", PASSWORD)
    page.click("button:has-text('Continue')")
    page.wait_for_selector(".ceremony-start", state="visible")
    page.click("button:has-text('Confirm with your security key')")
    page.wait_for_selector("button:has-text('Change or add a device')")


def test_security_key_registers_logs_in_and_is_replaced_by_a_second_one(
    page: Any, start_host: Any
) -> None:
    host = start_host("[modules.webauthn]\nclients = true\n", hostname="localhost")
    cdp, laptop = add_virtual_authenticator(page)
    sign_up(page, host, "ada@example.com")
    page.wait_for_url(re.compile(r"/clientarea$"))

    page.goto(f"{host.url}/account/security")
    page.click("li:has-text('Security Key / Passkey') button:has-text('Get Started')")
    page.wait_for_url(re.compile(r"/account/security/setup$"))
    page.wait_for_selector(".ceremony-start", state="visible")  # shown by ceremony.js once it runs
    assert page.locator("noscript").count() == 1
    page.fill("#field-name", "Laptop")
    shot(page, "webauthn-setup")
    page.click("button:has-text('Register your security key')")
    page.wait_for_selector(f"h1:has-text('{messages.ENABLED}')")
    assert "Your security key is registered." in page.inner_text("main")
    assert len(cdp.send("WebAuthn.getCredentials", {"authenticatorId": laptop})["credentials"]) == 1
    page.click("a:has-text('Continue')")
    log_out(page)

    log_in(page, host, "ada@example.com")
    page.wait_for_url(re.compile(r"/login/2fa$"))
    shot(page, "webauthn-challenge")
    page.click("button:has-text('Use your security key')")
    page.wait_for_url(re.compile(r"/clientarea$"))
    assert page.inner_text("#two-factor-status") == "enabled"
    [credential] = cdp.send("WebAuthn.getCredentials", {"authenticatorId": laptop})["credentials"]
    assert credential["signCount"] >= 1

    # Changing the second factor needs a step-up: the password, then a touch of the key.
    step_up_with_security_key(page, host)
    shot(page, "webauthn-step-up")
    # A spare key: the laptop's authenticator is unplugged, another one plugged in.
    cdp.send("WebAuthn.removeVirtualAuthenticator", {"authenticatorId": laptop})
    _, spare = add_virtual_authenticator(page)
    page.goto(f"{host.url}/account/security")
    page.click("button:has-text('Change or add a device')")
    page.wait_for_url(re.compile(r"/account/security/setup$"))
    assert "Laptop (added" in page.inner_text("main")
    page.fill("#field-name", "Spare key")
    page.click("button:has-text('Register your security key')")
    page.wait_for_selector(f"h1:has-text('{messages.ENABLED}')")
    assert "You now have 2 keys" in page.inner_text("main")
    assert "Your backup code is unchanged." in page.inner_text("main")

    step_up_with_security_key(page, host)  # one proof, one change
    page.goto(f"{host.url}/account/security")
    page.click("button:has-text('Change or add a device')")
    page.wait_for_url(re.compile(r"/account/security/setup$"))
    page.fill("#field-remove", "Laptop")
    shot(page, "webauthn-remove")
    page.click("button:has-text('Submit')")
    page.wait_for_selector(f"h1:has-text('{messages.ENABLED}')")
    assert "The key was removed. You have 1 left." in page.inner_text("main")
    page.click("a:has-text('Continue')")
    log_out(page)

    log_in(page, host, "ada@example.com")
    page.wait_for_url(re.compile(r"/login/2fa$"))
    page.click("button:has-text('Use your security key')")
    page.wait_for_url(re.compile(r"/clientarea$"))
    assert page.inner_text("#two-factor-status") == "enabled"
    assert len(cdp.send("WebAuthn.getCredentials", {"authenticatorId": spare})["credentials"]) == 1
    shot(page, "webauthn-logged-in")


def test_security_key_page_without_javascript_says_what_is_needed(browser: Any, start_host: Any,
                                                                  request: pytest.FixtureRequest) -> None:
    host = start_host("[modules.webauthn]\nclients = true\n", hostname="localhost")
    context = browser.new_context(java_script_enabled=False)
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        sign_up(page, host, "grace@example.com")
        page.wait_for_url(re.compile(r"/clientarea$"))
        page.goto(f"{host.url}/account/security")
        page.click("li:has-text('Security Key / Passkey') button:has-text('Get Started')")
        page.wait_for_url(re.compile(r"/account/security/setup$"))
        page.wait_for_load_state()
        assert "This step needs JavaScript" in page.inner_text("main")
        assert not page.locator(".ceremony-start").is_visible()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    finally:
        context.close()
