"""The second host application, docs/examples/flask-host/app.py, end to end.

It uses only the documented Python API (docs/embedding.md), so a change of that API
that would break host applications breaks this test first.
"""

from __future__ import annotations

import importlib.util
import re
import threading
from pathlib import Path
from typing import Any

import pyotp
import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "flask-host" / "app.py"
PASSWORD = "correct horse battery"
SESSIONS = 8


def _example() -> Any:
    spec = importlib.util.spec_from_file_location("flask_host_example", EXAMPLE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def host(make_host: Any) -> Any:
    return make_host(issuer="Flask Example")


@pytest.fixture
def app(host: Any) -> Any:
    application = _example().create_app(host, {f"user{i}@example.com": PASSWORD for i in range(SESSIONS)})
    application.testing = True
    return application


def log_in(client: Any, email: str = "user0@example.com") -> Any:
    return client.post("/login", data={"email": email, "password": PASSWORD}, follow_redirects=True)


def enrol(client: Any, clock: Any) -> tuple[pyotp.TOTP, str]:
    page = client.get("/setup/totp")
    assert page.status_code == 200
    assert "<svg" in page.text, "the QR code drawn by the host is on the page"
    secret = re.search(r'<code id="secret">([A-Z2-7]+)</code>', page.text).group(1)
    totp = pyotp.TOTP(secret)
    done = client.post("/setup/totp", data={"code": totp.at(clock())})
    assert "Two-Factor Authentication is now enabled" in done.text, done.text
    backup = re.search(r"<code class='backup'>([^<]+)</code>", done.text).group(1)
    clock.advance(30)  # the enrolment code is spent: the next login needs the next one
    return totp, backup


def test_enrol_log_in_backup_code_and_resync(app: Any, fake_clock: Any) -> None:
    client = app.test_client()
    assert "id='two-factor'>off" in log_in(client).text
    totp, backup = enrol(client, fake_clock)
    client.post("/logout")

    # Log in: the second factor, a wrong code first (the same challenge stays open).
    page = log_in(client)
    assert "Resynchronise your authenticator" in page.text
    wrong = client.post("/2fa", data={"code": "000000" if totp.at(fake_clock()) != "000000" else "111111"})
    assert wrong.status_code == 401 and 'name="code"' in wrong.text
    assert "id='two-factor'>on" in client.post("/2fa", data={"code": totp.at(fake_clock())}, follow_redirects=True).text
    client.post("/logout")

    # Lost phone: the backup code, once; a new one is shown.
    log_in(client)
    used = client.post("/backup", data={"code": backup})
    assert "Your New Backup Code is:" in used.text and backup not in used.text
    client.post("/logout")
    log_in(client)
    assert client.post("/backup", data={"code": backup}).status_code == 401
    client.post("/logout")

    # A phone six minutes fast: resync from two consecutive codes of its clock.
    log_in(client)
    form = client.get("/recover/resync")
    assert 'name="code"' in form.text and 'name="next_code"' in form.text
    phone = fake_clock() + 360
    done = client.post("/recover/resync", data={"code": totp.at(phone), "next_code": totp.at(phone + 30)})
    assert done.status_code == 200 and "Logged in" in done.text


def test_eight_racing_sessions_one_code_exactly_one_gets_in(app: Any, host: Any, fake_clock: Any) -> None:
    # Eight browsers, each logged in with the password up to its own challenge, submit
    # the one current code at the same instant.
    owner = app.test_client()
    log_in(owner)
    totp, _ = enrol(owner, fake_clock)
    clients = [app.test_client() for _ in range(SESSIONS)]
    for client in clients:
        assert 'name="code"' in log_in(client).text
    code = totp.at(fake_clock())
    barrier = threading.Barrier(SESSIONS)
    statuses: list[int] = []
    errors: list[BaseException] = []

    def submit(client: Any) -> None:
        try:
            barrier.wait(timeout=30)
            statuses.append(client.post("/2fa", data={"code": code}).status_code)
        except BaseException as error:  # reported below; a thread must not die silently
            errors.append(error)

    threads = [threading.Thread(target=submit, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    # The others are refused: replayed, and past five failures locked (429).
    assert statuses.count(302) == 1 and set(statuses) <= {302, 401, 429}, statuses
    assert len(statuses) == SESSIONS
    accepted = [e for e in host.audit_events(limit=100) if e.event == "verify" and e.outcome == "ok"]
    assert len(accepted) == 1
