"""secmod-webauthn in each host: the web pages (without a browser), the JSON API and the CLI."""

from __future__ import annotations

import contextlib
import html
import json
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from secmod.hookspecs import Audience, User
from secmod.host import Enrolled, Host
from secmod.host.cli import app as cli_app
from secmod.host.web import create_app
from secmod_webauthn.testing import SoftAuthenticator

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette asks for httpx2 at import time; httpx works
    from starlette.testclient import TestClient

ORIGIN = "http://localhost:8000"
TOKEN = "webauthn-api-token-0123456789"
PASSWORD = "correct horse battery"
CONFIG = f"""\
database_url = "sqlite:///secmod.db"

[sealing]
key_file = "secmod.keys"

[web]
api_token = "{TOKEN}"
session_secret = "webauthn-tests"

[modules.webauthn]
clients = true
admins = true
"""
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_CEREMONY = re.compile(
    r'data-ceremony-kind="([^"]+)"\s+data-ceremony-options="([^"]+)"\s+data-ceremony-field="([^"]+)"'
)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "secmod.toml"
    path.write_text(CONFIG)
    return path


@pytest.fixture
def client(config_file: Path, fake_clock: Any) -> Iterator[TestClient]:
    application = create_app(config_file, host_kwargs={"clock": fake_clock})
    with TestClient(application) as test_client:
        yield test_client
    application.state.web.close()


def post(client: TestClient, path: str, data: dict[str, str], *, page: str) -> Any:
    token = _CSRF.search(client.get(page).text)
    assert token, f"no CSRF token on {page}"
    return client.post(path, data={"csrf_token": token.group(1), **data})


def ceremony_on(page: str) -> tuple[str, str, str]:
    found = _CEREMONY.search(page)
    assert found, "the page carries no ceremony"
    kind, options, field = (html.unescape(group) for group in found.groups())
    return kind, options, field


def assert_scripts_are_files_only(page: str) -> None:
    scripts = re.findall(r"<script\b[^>]*>", page, flags=re.IGNORECASE)
    assert scripts == ['<script src="/static/ceremony.js" defer>'], scripts
    assert re.search(r"\son[a-z]+=", page) is None, "an inline event handler"


def register_on_page(client: TestClient, page: Any, key: SoftAuthenticator, name: str) -> Any:
    kind, options, field = ceremony_on(page.text)
    assert (kind, field) == ("webauthn.create", "credential")
    return post(
        client,
        "/account/security/setup/confirm",
        {"name": name, field: key.create(options)},
        page="/account/security",
    )


def log_in_with(
    client: TestClient, key: SoftAuthenticator, credential_id: bytes | None = None
) -> Any:
    challenge = post(
        client, "/login", {"email": "ada@example.com", "password": PASSWORD}, page="/login"
    )
    assert challenge.url.path == "/login/2fa"
    assert_scripts_are_files_only(challenge.text)
    kind, options, field = ceremony_on(challenge.text)
    assert kind == "webauthn.get"
    assert 'type="submit">Login<' not in challenge.text, "only the key can answer: no empty submit"
    # The token from this very page: loading /login/2fa again would start a new challenge.
    token = _CSRF.search(challenge.text)
    assert token
    return client.post(
        "/login/2fa",
        data={"csrf_token": token.group(1), field: key.get(options, credential_id=credential_id)},
    )


def step_up_with(client: TestClient, key: SoftAuthenticator) -> None:
    """Changing the second factor needs the password, then a touch of a registered key."""
    asked = post(client, "/account/security/step-up", {"password": PASSWORD}, page="/account/security")
    kind, options, field = ceremony_on(asked.text)
    assert kind == "webauthn.get"
    token = _CSRF.search(asked.text)
    assert token
    proved = client.post("/account/security/step-up/verify",
                         data={"csrf_token": token.group(1), field: key.get(options)})
    assert "Change or add a device" in proved.text, proved.text


def log_out(client: TestClient) -> None:
    post(client, "/logout", {}, page="/clientarea")


def test_web_host_registers_logs_in_adds_and_removes_keys(client: TestClient) -> None:
    signed_up = post(
        client,
        "/register",
        {
            "email": "ada@example.com",
            "name": "Ada",
            "password": PASSWORD,
            "password_confirm": PASSWORD,
        },
        page="/register",
    )
    assert signed_up.url.path == "/login"  # registering does not log in: no account enumeration
    logged_in = post(client, "/login", {"email": "ada@example.com", "password": PASSWORD}, page="/login")
    assert logged_in.url.path == "/clientarea"
    setup = post(
        client, "/account/security/setup", {"module": "webauthn"}, page="/account/security"
    )
    assert setup.status_code == 200
    assert_scripts_are_files_only(setup.text)
    assert "This step needs JavaScript" in setup.text  # the <noscript> text
    laptop, spare = SoftAuthenticator(ORIGIN), SoftAuthenticator(ORIGIN)
    enrolled = register_on_page(client, setup, laptop, "Laptop")
    assert "Two-Factor Authentication is now enabled" in enrolled.text
    assert "Your security key is registered." in enrolled.text
    log_out(client)

    assert log_in_with(client, laptop).url.path == "/clientarea"

    assert "Change or add a device" not in client.get("/account/security").text  # not without a step-up
    step_up_with(client, laptop)
    manage = post(
        client, "/account/security/setup", {"module": "webauthn"}, page="/account/security"
    )
    assert "Laptop (added" in html.unescape(manage.text)
    added = register_on_page(client, manage, spare, "Spare key")
    assert "You now have 2 keys" in added.text and "Your backup code is unchanged." in added.text

    step_up_with(client, spare)  # one proof, one change
    manage = post(
        client, "/account/security/setup", {"module": "webauthn"}, page="/account/security"
    )
    removed = post(
        client,
        "/account/security/setup/confirm",
        {"name": "", "remove": "Laptop", "credential": ""},
        page="/account/security",
    )
    assert "The key was removed. You have 1 left." in removed.text
    log_out(client)

    assert log_in_with(client, spare).url.path == "/clientarea"
    log_out(client)
    # The removed key, answering although it is no longer offered (a browser would not).
    refused = log_in_with(client, laptop, credential_id=next(iter(laptop.credentials)))
    assert refused.status_code == 401 and refused.url.path == "/login/2fa"


def test_the_ceremony_script_is_served_from_the_site(client: TestClient) -> None:
    response = client.get("/static/ceremony.js")
    assert response.status_code == 200
    assert "javascript" in response.headers["content-type"]
    assert (
        "navigator.credentials.create" in response.text
        and "navigator.credentials.get" in response.text
    )
    assert "script-src 'self'" in response.headers["content-security-policy"]


def api(client: TestClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(
        f"/api/v1/{path}", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_json_api_hands_out_the_options_and_takes_the_result(client: TestClient) -> None:
    person = {"id": "42", "audience": "client", "email": "ada@example.com"}
    key = SoftAuthenticator(ORIGIN)
    started = api(client, "setup", {"user": person, "module": "webauthn"})
    ceremony = started["prompt"]["ceremony"]
    assert ceremony["kind"] == "webauthn.create" and ceremony["options"]["rp"]["id"] == "localhost"
    assert {f["name"]: f["required"] for f in started["prompt"]["fields"]} == {
        "name": False,
        "credential": True,
    }
    done = api(
        client,
        "setup/continue",
        {
            "user": person,
            "setup_id": started["setup_id"],
            "answer": {
                "name": "Phone",
                ceremony["answer_field"]: key.create(json.dumps(ceremony["options"])),
            },
        },
    )
    assert done["status"] == "enrolled" and len(done["backup_codes"]) == 1

    challenge = api(client, "challenge", {"user": person})
    ceremony = challenge["prompt"]["ceremony"]
    assert ceremony["kind"] == "webauthn.get" and ceremony["options"]["allowCredentials"]
    answer = {ceremony["answer_field"]: key.get(json.dumps(ceremony["options"]))}
    verdict = api(
        client,
        "verify",
        {"user": person, "answer": answer, "challenge_id": challenge["challenge_id"]},
    )
    assert verdict["outcome"] == "accepted"
    again = api(
        client,
        "verify",
        {"user": person, "answer": answer, "challenge_id": challenge["challenge_id"]},
    )
    assert again["outcome"] == "rejected"


def test_cli_says_the_module_needs_a_browser(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(config_file.parent)
    runner = CliRunner()
    enrol = runner.invoke(
        cli_app, ["--config", str(config_file), "enroll", "ada@example.com", "--module", "webauthn"]
    )
    assert enrol.exit_code == 2
    assert (
        "needs a browser" in enrol.output
        and "secmod serve" in enrol.output
        and "Traceback" not in enrol.output
    )

    with Host.from_config(str(config_file)) as host:
        user = User(id="ada@example.com", audience=Audience.CLIENT, email="ada@example.com")
        step = host.begin_setup(user, "webauthn")
        assert not isinstance(step, Enrolled) and step.prompt.ceremony is not None
        key = SoftAuthenticator(ORIGIN)
        assert isinstance(
            host.continue_setup(
                user, step.setup_id, {"credential": key.create(step.prompt.ceremony.options_json)}
            ),
            Enrolled,
        )
    verify = runner.invoke(cli_app, ["--config", str(config_file), "verify", "ada@example.com"])
    assert verify.exit_code == 2 and "needs a browser" in verify.output

    listed = runner.invoke(cli_app, ["--config", str(config_file), "modules"])
    assert listed.exit_code == 0
    assert re.search(
        r"webauthn\s+Security Key / Passkey\s+secmod-webauthn\s+0\.1\.0\s+on\s+on\s+1",
        listed.output,
    ), listed.output
    header, row = listed.output.splitlines()[0], next(
        line for line in listed.output.splitlines() if line.startswith("webauthn")
    )
    assert header.index("distribution") == row.index("secmod-webauthn"), "columns out of line"


@contextlib.contextmanager
def logged_in_admin(config: Path, fake_clock: Any) -> Iterator[TestClient]:
    """A web host on ``config`` with an administrator logged in."""
    application = create_app(config, host_kwargs={"clock": fake_clock})
    try:
        application.state.web.accounts.create(
            Audience.ADMIN, "root@example.com", PASSWORD, name="Root"
        )
        with TestClient(application) as admin:
            post(
                admin,
                "/admin/login",
                {"email": "root@example.com", "password": PASSWORD},
                page="/admin/login",
            )
            yield admin
    finally:
        application.state.web.close()


def test_admin_switches_it_on_and_the_relying_party_is_not_pinned(
    tmp_path: Path, fake_clock: Any
) -> None:
    import tomllib

    config = tmp_path / "secmod.toml"
    config.write_text(CONFIG.split("[modules.webauthn]")[0])
    with logged_in_admin(config, fake_clock) as admin:
        form = admin.get("/admin/2fa/webauthn")
        assert form.status_code == 200 and "Relying party id" in form.text
        saved = post(
            admin,
            "/admin/2fa/webauthn",
            {"clients": "on", "user_verification": "required"},
            page="/admin/2fa/webauthn",
        )
        assert "Security Key / Passkey saved and activated." in html.unescape(saved.text)
    table = tomllib.loads(config.read_text())["modules"]["webauthn"]
    assert table["clients"] is True and table["user_verification"] == "required"
    assert "rp_id" not in table and "origin" not in table  # still follows [web] base_url


def test_admin_is_told_why_an_ip_address_cannot_work(tmp_path: Path, fake_clock: Any) -> None:
    config = tmp_path / "secmod.toml"
    config.write_text(
        CONFIG.split("[modules.webauthn]")[0].replace(
            "[web]\n", '[web]\nbase_url = "http://127.0.0.1:8000"\n'
        )
    )
    with logged_in_admin(config, fake_clock) as admin:
        refused = post(
            admin, "/admin/2fa/webauthn", {"clients": "on"}, page="/admin/2fa/webauthn"
        )
        assert refused.status_code == 400
        assert "WebAuthn cannot run on an IP address" in html.unescape(refused.text)
    assert "[modules.webauthn]" not in config.read_text()
