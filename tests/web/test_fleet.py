"""Several hosts on one database: settings fingerprints, the warning, read-only settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from secmod.host.fleet import disagreeing_hosts, record_fingerprint, settings_fingerprint
from secmod.host.storage import open_engine
from secmod.host.web import create_app
from secmod.settings import SecmodSettings
from typer.testing import CliRunner

from .conftest import API_TOKEN, CONFIG, PASSWORD, TestClient, log_in, post, text


def fingerprint(**settings: Any) -> str:
    return settings_fingerprint(SecmodSettings(**settings), {})


def test_the_fingerprint_covers_what_changes_a_login_and_not_where_a_host_listens() -> None:
    base = fingerprint()
    assert (
        fingerprint(web={"port": 9000, "host": "0.0.0.0"}, sealing={"key_file": "/etc/k"}) == base
    )
    assert fingerprint(web={"api_token": "another-token-123456"}) == base
    assert fingerprint(web={"workers": 4, "log_format": "json", "access_log": True}) == base
    assert fingerprint(throttle={"max_code_failures": 6}) != base
    assert fingerprint(force_clients=True) != base
    assert fingerprint(web={"settings_editable": False}) != base


def test_module_secrets_enter_the_fingerprint_only_as_a_digest() -> None:
    from secmod.host import fleet

    plain = fleet._plain(SecretStr("duo-client-secret-value"))
    assert "duo-client-secret-value" not in plain and plain.startswith("sha256:")


def test_hosts_that_disagree_are_named(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'fleet.db'}")
    try:
        record_fingerprint(engine, "web-1:8000", "aaaa", now=1_000_000)
        record_fingerprint(engine, "web-2:8000", "aaaa", now=1_000_000)
        assert disagreeing_hosts(engine, "aaaa", now=1_000_100) == []
        record_fingerprint(engine, "web-2:8000", "bbbb", now=1_000_050)  # restarted, new file
        [other] = disagreeing_hosts(engine, "aaaa", now=1_000_100)
        assert other.name == "web-2:8000" and other.fingerprint == "bbbb"
        # A machine not started for a month is taken as gone.
        assert disagreeing_hosts(engine, "aaaa", now=1_000_050 + 31 * 86400) == []
    finally:
        engine.dispose()


@pytest.fixture
def two_hosts(
    tmp_path: Path, fake_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Any, Any]]:
    """Two web hosts on one database, each with its own secmod.toml (the second forces clients)."""
    database = tmp_path / "shared.db"
    apps = []
    for index, extra in ((1, ""), (2, "force_clients = true\n")):
        folder = tmp_path / f"host{index}"
        folder.mkdir()
        config = folder / "secmod.toml"
        text_ = extra + CONFIG.format(api_token=API_TOKEN)
        text_ = text_.replace('"sqlite:///secmod.db"', f'"sqlite:///{database}"')
        text_ = text_.replace(
            'key_file = "secmod.keys"', f'key_file = "{tmp_path / "shared.keys"}"'
        )
        config.write_text(text_)
        monkeypatch.setenv("SECMOD_HOST_NAME", f"web-{index}:8000")
        apps.append(create_app(config, host_kwargs={"clock": fake_clock}))
    yield apps[0], apps[1]
    for app in apps:
        app.state.web.close()


def test_the_admin_page_warns_when_hosts_disagree(two_hosts: tuple[Any, Any]) -> None:
    first, _second = two_hosts
    first.state.web.accounts.create(_admin_audience(), "root@example.com", PASSWORD, name="Root")
    with TestClient(first) as client:
        log_in(client, "root@example.com", admin=True)
        page = text(client.get("/admin/2fa"))
    assert (
        "Hosts sharing this database run with different settings than this one (web-1:8000)" in page
    )
    assert "web-2:8000" in page


def test_no_warning_when_hosts_agree(
    tmp_path: Path, fake_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "secmod.toml"
    config.write_text(CONFIG.format(api_token=API_TOKEN))
    apps = []
    try:
        for index in (1, 2):
            monkeypatch.setenv("SECMOD_HOST_NAME", f"web-{index}:8000")
            apps.append(create_app(config, host_kwargs={"clock": fake_clock}))
        assert apps[0].state.web.other_hosts() == [] and apps[1].state.web.other_hosts() == []
    finally:
        for app in apps:
            app.state.web.close()


def test_secmod_check_warns_about_hosts_that_disagree(
    two_hosts: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from secmod.host.cli import app as cli

    first, _second = two_hosts
    monkeypatch.setenv("SECMOD_CONFIG", str(first.state.web.config_file))
    result = CliRunner().invoke(cli, ["check"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "settings fingerprint: " in result.output
    assert "warning: host web-2:8000" in result.output and "different settings" in result.output
    assert "web-1:8000" not in result.output  # its own row agrees with itself


def test_read_only_settings_refuse_changes(tmp_path: Path, fake_clock: Any) -> None:
    config = tmp_path / "secmod.toml"
    config.write_text(CONFIG.format(api_token=API_TOKEN) + "settings_editable = false\n")
    before = config.read_text()
    app = create_app(config, host_kwargs={"clock": fake_clock})
    try:
        app.state.web.accounts.create(_admin_audience(), "root@example.com", PASSWORD, name="Root")
        with TestClient(app) as client:
            log_in(client, "root@example.com", admin=True)
            page = client.get("/admin/2fa")
            assert (
                "read-only here" in text(page) and '<fieldset class="plain" disabled>' in page.text
            )
            assert "read-only here" in text(client.get("/admin/2fa/totp"))
            refused = post(client, "/admin/2fa/global", {"force_clients": "on"}, page="/admin/2fa")
            assert refused.status_code == 403
            refused = post(client, "/admin/2fa/totp", {"clients": "on"}, page="/admin/2fa/totp")
            assert refused.status_code == 403
    finally:
        app.state.web.close()
    assert config.read_text() == before


def _admin_audience() -> Any:
    from secmod.hookspecs import Audience

    return Audience.ADMIN
