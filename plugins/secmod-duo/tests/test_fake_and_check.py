"""The fake Duo speaks the protocol as protocols.md §1.8 says; `secmod check` uses it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import duo_universal
import pytest
import requests
from typer.testing import CliRunner

from secmod.host.cli import app
from secmod_duo import DuoClient
from secmod_duo.testing.fake import FakeDuo, closed_port, jwt_decode, jwt_encode

REDIRECT = "https://portal.example.com/login/duo/callback"


def client_for(fake: FakeDuo, **kwargs) -> duo_universal.Client:
    # The module's client: the library's own methods, without PyJWT's key-length warning.
    return DuoClient(fake.client_id, fake.client_secret, fake.api_hostname, REDIRECT,
                     duo_certs=fake.ca_file, timeout=10, **kwargs)


def test_the_certificate_passes_strict_verification(local_ca, fake):
    # VERIFY_X509_STRICT is what urllib3 turns on with Python 3.13 (protocols.md §1.10).
    for name in ("127.0.0.1", "localhost"):
        with socket.create_connection(("127.0.0.1", fake.port), timeout=5) as raw:
            with local_ca.client_context(strict=True).wrap_socket(raw, server_hostname=name) as tls:
                assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_redirect_goes_back_to_the_redirect_uri_with_code_and_state(fake):
    client = client_for(fake)
    state = client.generate_state()
    response = requests.get(client.create_auth_url("alice@example.com", state, "n" * 20),
                            allow_redirects=False, verify=fake.ca_file, timeout=5)
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    query = parse_qs(location.query)
    assert query["state"] == [state] and len(query["duo_code"][0]) >= 20


def test_code_attribute_follows_use_duo_code_attribute(fake):
    client = client_for(fake, use_duo_code_attribute=False)
    back = fake.come_back(client.create_auth_url("alice@example.com", client.generate_state()))
    assert set(back) == {"code", "state"}


def test_token_parameters_travel_in_the_query_and_codes_are_one_time(fake):
    client = client_for(fake)
    back = fake.come_back(client.create_auth_url("alice@example.com", client.generate_state(), "n" * 20))
    claims = client.exchange_authorization_code_for_2fa_result(back["duo_code"], "alice@example.com", "n" * 20)
    assert claims["auth_result"]["status"] == "allow" and claims["nonce"] == "n" * 20
    assert fake.token_bodies == [b""]
    with pytest.raises(duo_universal.DuoException) as caught:
        client.exchange_authorization_code_for_2fa_result(back["duo_code"], "alice@example.com", "n" * 20)
    assert caught.value.args[0]["error"] == "invalid_grant"


def test_a_client_with_the_wrong_secret_is_refused_everywhere(fake):
    impostor = DuoClient(fake.client_id, "Q" * 40, fake.api_hostname, REDIRECT, duo_certs=fake.ca_file, timeout=10)
    with pytest.raises(duo_universal.DuoException) as caught:
        impostor.health_check()
    assert caught.value.args[0].args[0]["message"] == "invalid_client"
    response = requests.get(impostor.create_auth_url("alice@example.com", impostor.generate_state()),
                            allow_redirects=False, verify=fake.ca_file, timeout=5)
    assert response.status_code == 400 and "bad signature" in response.text


def test_the_hs512_helpers_refuse_what_duo_refuses():
    token = jwt_encode({"aud": "a", "iss": "i", "exp": 2000}, "k" * 40)
    assert jwt_decode(token, "k" * 40, audience="a", issuer="i", now=1000)["exp"] == 2000
    for key, audience, issuer, now, words in [
        ("x" * 40, "a", "i", 1000, "bad signature"),
        ("k" * 40, "b", "i", 1000, "wrong audience"),
        ("k" * 40, "a", "j", 1000, "wrong issuer"),
        ("k" * 40, "a", "i", 3000, "expired"),
    ]:
        with pytest.raises(ValueError, match=words):
            jwt_decode(token, key, audience=audience, issuer=issuer, now=now)


def test_a_typo_in_a_switch_is_refused(fake):
    with pytest.raises(ValueError, match="token must be one of"):
        fake.token = "alow"


def test_interactive_prompt_approves_or_denies(fake):
    fake.interactive = True
    client = client_for(fake)
    for decision in ("allow", "deny"):
        url = client.create_auth_url("alice@example.com", client.generate_state(), "n" * 20)
        page = requests.get(url, verify=fake.ca_file, timeout=5)
        assert page.status_code == 200 and "alice@example.com" in page.text
        ticket = page.text.split('name="ticket" value="', 1)[1].split('"', 1)[0]
        back = fake.come_back(fake.url(f"/oauth/v1/authorize/decide?ticket={ticket}&decision={decision}"))
        claims = client.exchange_authorization_code_for_2fa_result(back["duo_code"], "alice@example.com", "n" * 20)
        assert claims["auth_result"]["status"] == decision


def test_closed_port_refuses_connections():
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", closed_port()), timeout=2).close()


def test_running_the_fake_prints_settings_to_paste(tmp_path):
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}
    process = subprocess.Popen(
        [sys.executable, "-m", "secmod_duo.testing.fake", "--port", "0", "--no-prompt"],
        stdout=subprocess.PIPE, text=True, env=env,
    )
    try:
        lines = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if line.startswith("These credentials"):
                break
        text = "".join(lines)
        assert "[modules.duo]" in text
        table = dict(
            (key.strip(), json.loads(value)) for key, value in
            (line.split("=", 1) for line in text.split("[modules.duo]\n", 1)[1].splitlines() if " = " in line)
        )
        client = DuoClient(table["client_id"], table["client_secret"], table["api_hostname"],
                           table["redirect_url"], duo_certs=table["ca_file"], timeout=10)
        assert client.health_check()["stat"] == "OK"
    finally:
        process.terminate()
        process.wait(10)
        process.stdout.close()
    assert process.returncode == 0  # SIGTERM is a clean stop: the CA folder is removed
    ca_folder = Path(table["ca_file"]).parent
    assert not ca_folder.exists()


# -- secmod check -------------------------------------------------------------------

def write_config(tmp_path: Path, table: dict) -> Path:
    lines = [
        f'database_url = "sqlite:///{tmp_path / "secmod.db"}"',
        "[loading]", 'allow = ["duo"]',
        "[sealing]", f'key_file = "{tmp_path / "secmod.keys"}"',
        "[modules.duo]",
        *(f"{key} = {json.dumps(value)}" for key, value in table.items()),
    ]
    path = tmp_path / "secmod.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_secmod_check_passes_with_a_healthy_duo(tmp_path, fake):
    config = write_config(tmp_path, fake.settings(REDIRECT, clients=True))
    result = CliRunner().invoke(app, ["--config", str(config), "check"])
    assert result.exit_code == 0, result.output
    assert "duo: ok (Duo health check passed" in result.output


def test_secmod_check_reports_a_failing_health_check_clearly(tmp_path, fake):
    fake.health = "invalid_client"
    config = write_config(tmp_path, fake.settings(REDIRECT, clients=True))
    result = CliRunner().invoke(app, ["--config", str(config), "check"])
    assert result.exit_code == 1
    output = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert "duo: FAILED: Duo Security: health check failed: Duo refused the Client ID or Client Secret" in output
    assert fake.client_secret not in output
