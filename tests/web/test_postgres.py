"""The web host on PostgreSQL: secmod's tables and the web host's own in one database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import tomlkit
from secmod.host.web import create_app

from .conftest import (
    API_TOKEN,
    CONFIG,
    TestClient,
    enable_totp,
    log_in,
    log_out,
    post,
    sign_up,
    totp_code,
)

pytestmark = pytest.mark.postgres


def test_sign_up_enrol_and_log_in_on_postgresql(tmp_path: Path, postgres_url: str, fake_clock: Any) -> None:
    document = tomlkit.parse(CONFIG.format(api_token=API_TOKEN))
    document["database_url"] = postgres_url
    config = tmp_path / "secmod.toml"
    config.write_text(tomlkit.dumps(document))
    app = create_app(config, host_kwargs={"clock": fake_clock})
    try:
        with TestClient(app) as client:
            sign_up(client)
            secret, _ = enable_totp(client, fake_clock)
            log_out(client)
            assert log_in(client).url.path == "/login/2fa"
            fake_clock.advance(30)
            page = post(client, "/login/2fa", {"code": totp_code(secret, fake_clock)}, page="/login/2fa")
            assert page.url.path == "/clientarea"
        assert app.state.web.accounts_engine.dialect.name == "postgresql"
    finally:
        app.state.web.close()
