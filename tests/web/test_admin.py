"""The admin area: login, the Two-Factor Authentication page, module settings, users, audit."""

from __future__ import annotations

import tomllib
from typing import Any, Literal

import pytest
from pydantic import SecretStr
from secmod.hookspecs import (
    Accepted,
    Activation,
    Challenge,
    Field,
    ModuleError,
    ModuleInfo,
    ModuleSettings,
    Prompt,
    SetupComplete,
    hookimpl,
)
from secmod.host.web import ensure_first_admin

from .conftest import PASSWORD, enable_totp, log_in, log_out, post, sign_up, text


class PagerSettings(ModuleSettings):
    api_key: SecretStr | None = None
    endpoint: str = "https://pager.example"
    timeout: int = 10
    tone: Literal[1, 2] = 1
    loud: bool = False


class PagerModule:
    """A module with a secret setting whose ``activate`` only accepts one key."""

    @hookimpl
    def configure(self) -> ModuleInfo:
        return ModuleInfo(name="pager", friendly_name="Pager", short_description="Codes on your pager.",
                          settings_model=PagerSettings)

    @hookimpl
    def activate(self, request: Any) -> Activation:
        key = request.settings.api_key
        if key is None or key.get_secret_value() != "good-key":
            raise ModuleError("The pager service refused the API key.")
        return Activation(message="pager reachable")

    @hookimpl
    def setup_user(self, request: Any) -> SetupComplete:
        return SetupComplete()

    @hookimpl
    def challenge(self, request: Any) -> Challenge:
        return Challenge(prompt=Prompt(message="Enter the pager code", fields=(Field(name="code", label="Code"),)))

    @hookimpl
    def verify(self, request: Any) -> Accepted:
        return Accepted()


@pytest.fixture
def app(config_file: Any, fake_clock: Any) -> Any:
    from secmod.host.web import create_app

    application = create_app(config_file, host_kwargs={"clock": fake_clock, "modules": {"pager": PagerModule()}})
    yield application
    application.state.web.close()


@pytest.fixture
def admin(make_client: Any, admin_password: str) -> Any:
    browser = make_client()
    page = log_in(browser, "root@example.com", admin_password, admin=True)
    assert page.url.path == "/admin/2fa", page.text
    return browser


def test_first_admin_is_created_once_with_a_printed_password(web: Any) -> None:
    printed: list[str] = []
    assert ensure_first_admin(web.accounts, environ={}, echo=printed.append)
    assert not ensure_first_admin(web.accounts, environ={}, echo=printed.append)
    [line] = printed
    password = line.rsplit(": ", 1)[1]
    assert web.accounts.authenticate("admin", "admin@localhost", password) is not None


def test_first_admin_password_from_the_environment_is_not_printed(web: Any) -> None:
    printed: list[str] = []
    ensure_first_admin(web.accounts, environ={"SECMOD_ADMIN_PASSWORD": "from-the-env-123"}, echo=printed.append)
    assert "from-the-env-123" not in printed[0]
    assert web.accounts.authenticate("admin", "admin@localhost", "from-the-env-123") is not None


def test_a_client_cannot_log_in_to_the_admin_area(client: Any, admin_password: str) -> None:
    sign_up(client)
    assert client.get("/admin/2fa").url.path == "/admin/login"
    assert log_in(client, "ada@example.com", PASSWORD, admin=True).status_code == 401


def test_admin_page_lists_modules_and_server_time(admin: Any, web: Any) -> None:
    page = text(admin.get("/admin/2fa"))
    assert "Server time: " in page and web.server_time().strftime("%Y-%m-%d %H:%M:%S UTC") in page
    for expected in ("Time Based Tokens", "Get codes from an app like Google Authenticator or Duo.",
                     "secmod-totp", "Pager", "(in-process)", "Activate", "Configure",
                     "Force Client Users to enable Two Factor Authentication on Next Login",
                     "Force Administrative Users to enable Two Factor Authentication on Next Login"):
        assert expected in page


def test_activating_checks_the_secret_seals_it_and_keeps_comments(admin: Any, web: Any) -> None:
    form = admin.get("/admin/2fa/pager")
    assert "Enable for use by Clients" in form.text and "Enable for use by Administrative Users" in form.text
    refused = post(admin, "/admin/2fa/pager", {"clients": "on", "api_key": "bad-key", "timeout": "5"},
                   page="/admin/2fa/pager")
    assert refused.status_code == 400
    assert "The pager service refused the API key." in text(refused)
    assert "bad-key" not in refused.text
    assert "[modules.pager]" not in web.config_file.read_text()  # nothing written

    saved = post(admin, "/admin/2fa/pager", {"clients": "on", "api_key": "good-key", "timeout": "5", "tone": "2"},
                 page="/admin/2fa/pager")
    assert "Pager saved and activated." in text(saved)
    written = web.config_file.read_text()
    assert "this comment must survive" in written
    assert "good-key" not in written
    table = tomllib.loads(written)["modules"]["pager"]
    assert table["api_key"].startswith("sealed:")
    assert (table["clients"], table["admins"], table["timeout"], table["tone"]) == (True, False, 5, 2)
    settings = web.host.module_settings["pager"]  # the reloaded host
    assert settings.clients and settings.api_key.get_secret_value() == "good-key"

    again = admin.get("/admin/2fa/pager")
    assert "good-key" not in again.text and table["api_key"] not in again.text
    assert "Saved: leave blank to keep it" in again.text
    # Blank keeps the stored secret (and activate still sees it).
    kept = post(admin, "/admin/2fa/pager", {"clients": "on", "admins": "on", "api_key": "", "timeout": "7"},
                page="/admin/2fa/pager")
    assert "Pager saved and activated." in text(kept)
    assert tomllib.loads(web.config_file.read_text())["modules"]["pager"]["api_key"] == table["api_key"]


def test_invalid_settings_are_explained_and_not_written(admin: Any, web: Any) -> None:
    before = web.config_file.read_text()
    page = post(admin, "/admin/2fa/totp", {"clients": "on", "period": "5"}, page="/admin/2fa/totp")
    assert page.status_code == 400
    assert "period" in page.text and "greater than or equal to 15" in page.text
    assert web.config_file.read_text() == before


def test_switching_a_module_off_for_clients(admin: Any, web: Any, client: Any) -> None:
    post(admin, "/admin/2fa/totp", {"admins": "on"}, page="/admin/2fa/totp")
    assert not web.host.module_settings["totp"].clients
    sign_up(client)
    assert "Time Based Tokens" not in client.get("/account/security").text


def test_forcing_clients_sends_them_to_setup(admin: Any, web: Any, client: Any) -> None:
    sign_up(client)
    log_out(client)
    saved = post(admin, "/admin/2fa/global", {"force_clients": "on"}, page="/admin/2fa")
    assert "Global Two-Factor Authentication Settings saved." in text(saved)
    assert tomllib.loads(web.config_file.read_text())["force_clients"] is True
    assert log_in(client).url.path == "/account/security"


def test_admin_disables_a_clients_second_factor(admin: Any, web: Any, client: Any, fake_clock: Any) -> None:
    sign_up(client)
    enable_totp(client, fake_clock)
    users = admin.get("/admin/users")
    assert "ada@example.com" in users.text and ">totp<" in users.text
    [ada] = web.accounts.list("client")
    post(admin, f"/admin/users/{ada.id}/disable-2fa", page="/admin/users")
    assert web.host.status(ada.as_user()) is None
    events = admin.get("/admin/audit").text
    [root] = web.accounts.list("admin")
    assert f"admin:{root.id}" in events and "disable" in events and "ada@example.com" in events


def test_admin_is_challenged_with_the_admin_wording(admin: Any, fake_clock: Any) -> None:
    enable_totp(admin, fake_clock, admin=True)
    log_out(admin, admin=True)
    page = log_in(admin, "root@example.com", PASSWORD, admin=True)
    assert page.url.path == "/admin/login/2fa"
    assert "Your second factor is required to complete the login." in page.text
    wrong = post(admin, "/admin/login/2fa", {"code": "000000"}, page="/admin/login/2fa")
    assert "Second factor invalid. Please try again." in wrong.text


def test_settings_the_form_cannot_edit_are_kept_as_written(admin: Any, web: Any) -> None:
    from secmod_yubikey.testing.yubicloud_fake import FakeYubiCloud

    with FakeYubiCloud() as cloud:
        key = cloud.new_key()
        # Local-mode keys: a table the form has no input for, holding an AES key.
        keys = f'[modules.yubikey.keys.{key.public_id}]\naes_key = "{key.aes_key.hex()}"\nprivate_id = "{key.private_id.hex()}"\n'
        web.config_file.write_text(web.config_file.read_text() + "\n" + keys)
        web.reload()
        form = admin.get("/admin/2fa/yubikey")
        assert key.aes_key.hex() not in form.text
        saved = post(admin, "/admin/2fa/yubikey", {"clients": "on", "client_id": cloud.client_id,
                                                   "secret_key": cloud.api_key, "api_urls": cloud.url},
                     page="/admin/2fa/yubikey")
        assert "YubiKey saved and activated." in text(saved), text(saved)
        written = tomllib.loads(web.config_file.read_text())["modules"]["yubikey"]
        assert written["keys"] == {key.public_id: {"aes_key": key.aes_key.hex(), "private_id": key.private_id.hex()}}
        assert written["api_urls"] == [cloud.url] and written["secret_key"].startswith("sealed:")


def test_a_forced_admin_sees_only_their_own_setup(admin: Any, web: Any) -> None:
    post(admin, "/admin/2fa/global", {"force_admins": "on"}, page="/admin/2fa")
    log_out(admin, admin=True)
    page = log_in(admin, "root@example.com", PASSWORD, admin=True)
    assert page.url.path == "/admin/account/security"
    assert "Your administrator has enforced that you must enable Two-Factor Authentication" in text(page)
    for path in ("/admin/2fa", "/admin/users", "/admin/audit"):
        assert admin.get(path, follow_redirects=False).headers["location"] == "/admin/account/security"


def test_a_redirecting_modules_page_shows_the_callback_the_host_builds(admin: Any, web: Any) -> None:
    web.config_file.write_text(web.config_file.read_text().replace(
        "[web]\n", '[web]\nbase_url = "https://portal.example.com/"\n'))
    web.reload()
    page = admin.get("/admin/2fa/duo").text
    assert 'id="redirect-url">https://portal.example.com/login/duo/callback<' in page
    assert web.host.callback_url("duo") == "https://portal.example.com/login/duo/callback"
