"""The database goes away (issue 12 point 14): a clear "temporarily unavailable" page, a
503 with the API's error shape, never a 500 or a traceback; pages that need no database
keep answering; service resumes without a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import tomlkit
from secmod.host.web import create_app
from secmod.testing.proxy import TcpProxy

from .conftest import API_TOKEN, CONFIG, TestClient, enable_totp, sign_up

pytestmark = pytest.mark.postgres

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
def proxied(tmp_path: Path, postgres_url: str, fake_clock: Any) -> Any:
    url = sa.engine.make_url(postgres_url)
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        document = tomlkit.parse(CONFIG.format(api_token=API_TOKEN))
        document["database_url"] = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        config = tmp_path / "secmod.toml"
        config.write_text(tomlkit.dumps(document))
        app = create_app(config, host_kwargs={"clock": fake_clock})
        try:
            yield app, proxy
        finally:
            proxy.restore()
            app.state.web.close()


def _no_server_error(response: Any) -> Any:
    assert response.status_code != 500, response.text
    assert "Traceback" not in response.text and "sqlalchemy" not in response.text.lower()
    return response


def test_a_database_outage_is_a_clear_503_and_service_comes_back(proxied: Any, fake_clock: Any) -> None:
    app, proxy = proxied
    with TestClient(app, raise_server_exceptions=False) as client:
        sign_up(client)
        enable_totp(client, fake_clock)
        proxy.cut()
        for path in ("/clientarea", "/account/security", "/admin/login"):
            page = _no_server_error(client.get(path))
            assert page.status_code == 503, path
            assert "temporarily unavailable" in page.text.lower()
            assert page.headers["retry-after"]
        api = _no_server_error(client.post("/api/v1/login-state", json={"user": {"id": "7"}}, headers=AUTH))
        assert api.status_code == 503 and api.json()["error"]["code"] == "store_unavailable"
        anonymous = TestClient(app, raise_server_exceptions=False)
        login = _no_server_error(anonymous.post("/login", data={"email": "ada@example.com", "password": "x"}))
        assert login.status_code in (403, 503)  # no form token yet, or the database: never in
        # What needs no database keeps answering.
        assert client.get("/static/site.css").status_code == 200
        assert client.get("/openapi.json").status_code == 200
        proxy.restore()
        assert client.get("/clientarea").status_code == 200

