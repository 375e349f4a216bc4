"""Zero server errors under hostile input (issue 12 point 6), on SQLite and PostgreSQL.

Targeted regressions for the causes found (whitespace-only ids, NUL bytes, lone
surrogates, integers beyond 64 bits in a URL, over-long strings), then two bounded,
deterministic fuzzers: schemathesis over /openapi.json and hypothesis over the forms.
``SECMOD_FUZZ_EXAMPLES`` raises the number of examples for a longer run.
"""

from __future__ import annotations

import json
import os
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import tomlkit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from secmod.host.web import create_app

from .conftest import (
    API_TOKEN,
    CONFIG,
    PASSWORD,
    TestClient,
    csrf_token,
    enable_totp,
    log_in,
    sign_up,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import schemathesis

EXAMPLES = int(os.environ.get("SECMOD_FUZZ_EXAMPLES", "25"))
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
HOSTILE = ["", " ", "\t \n", "\x00", "a\x00b", "\ud800", "x\udfffy", "9" * 30, "-1", "x" * 5000, "é€😀", "null"]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def hostile_app(request: Any, tmp_path: Path, fake_clock: Any) -> Any:
    document = tomlkit.parse(CONFIG.format(api_token=API_TOKEN))
    if request.param == "postgresql":
        document["database_url"] = request.getfixturevalue("postgres_url")
    config = tmp_path / "secmod.toml"
    config.write_text(tomlkit.dumps(document))
    app = create_app(config, host_kwargs={"clock": fake_clock})
    yield app
    app.state.web.close()


def _rows(app: Any) -> dict[str, int]:
    web = app.state.web
    counts = {}
    for engine in (web.host.engine, web.accounts_engine):
        inspector = sa.inspect(engine)
        with engine.connect() as conn:
            for table in inspector.get_table_names():
                if table != "alembic_version":
                    counts[table] = conn.execute(sa.text(f'SELECT count(*) FROM "{table}"')).scalar_one()
    return counts


def _api(client: TestClient, path: str, body: Any) -> Any:
    return client.post(f"/api/v1{path}", content=json.dumps(body), headers={**AUTH, "Content-Type": "application/json"})


def test_hostile_ids_are_a_4xx_with_the_api_error_shape_and_nothing_is_written(hostile_app: Any) -> None:
    with TestClient(hostile_app) as client:
        for value in HOSTILE:
            before = _rows(hostile_app)
            for path, body in (
                ("/setup", {"user": {"id": value}, "module": "totp"}),
                ("/setup", {"user": {"id": "ok", "email": value}, "module": value}),
                ("/verify", {"user": {"id": value}, "answer": {"code": value}, "challenge_id": value}),
                ("/recover", {"user": {"id": "ok"}, "answer": {value: value}, "method": value}),
                ("/disable", {"user": {"id": "ok"}, "actor": value}),
                ("/setup/continue", {"user": {"id": "ok"}, "setup_id": value, "answer": {}}),
            ):
                response = _api(client, path, body)
                assert response.status_code < 500, (path, body, response.text)
                if response.status_code >= 400:
                    assert set(response.json()["error"]) >= {"code", "message"}
            if value not in ("-1", "null", "é€😀", "9" * 30):  # valid ids: a setup may start
                assert _rows(hostile_app) == before, repr(value)


def test_integers_beyond_64_bits_in_a_url(hostile_app: Any, web_admin: Any) -> None:
    with TestClient(hostile_app) as client:
        web_admin(client)
        for number in ("9" * 30, str(2**63), str(-(2**63) - 1), "0"):
            for path in (f"/admin/users/{number}/disable-2fa",):
                assert client.get(path).status_code == 404, path
                token = csrf_token(client, "/admin/users")
                assert client.post(path, data={"csrf_token": token, "confirm": "yes"}).status_code == 404


@pytest.fixture
def web_admin() -> Any:
    def log_in_admin(client: TestClient) -> None:
        client.app.state.web.accounts.create("admin", "root@example.com", PASSWORD)
        assert log_in(client, "root@example.com", PASSWORD, admin=True).url.path == "/admin/2fa"

    return log_in_admin


def test_an_over_long_path_setting_is_a_form_error(hostile_app: Any, web_admin: Any) -> None:
    with TestClient(hostile_app) as client:
        web_admin(client)
        for ca_file in ("/" + "c" * 255, "c" * 5000, "/" + "d/" * 3000, "ca\x00file"):
            token = csrf_token(client, "/admin/2fa/duo")
            response = client.post("/admin/2fa/duo", data={
                "csrf_token": token, "clients": "on", "client_id": "DIXXXXXXXXXXXXXXXXXX",
                "client_secret": "s" * 40, "api_hostname": "api-x.duosecurity.com", "ca_file": ca_file,
                "http_timeout": "10"})
            assert response.status_code == 400, ca_file[:20]
            assert "CA bundle" in response.text
            token = csrf_token(client, "/admin/2fa/yubikey")
            response = client.post("/admin/2fa/yubikey", data={"csrf_token": token, "ca_file": ca_file})
            assert response.status_code == 400, ca_file[:20]
            assert "ca_file" in response.text


# -- the fuzzers -------------------------------------------------------------------


def test_schemathesis_finds_no_server_error_in_the_json_api(hostile_app: Any) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", hostile_app)
    tried: Counter[str] = Counter()
    failures: list[str] = []
    with TestClient(hostile_app) as client:
        for result in schema.get_all_operations():
            operation = result.ok()
            for mode in schemathesis.GenerationMode:

                @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                          suppress_health_check=list(HealthCheck))
                @given(case=operation.as_strategy(generation_mode=mode))
                def fuzz(case: Any) -> None:
                    kwargs = case.as_transport_kwargs(base_url="http://testserver")
                    kwargs["headers"] = {**(kwargs.get("headers") or {}), **AUTH}
                    for unused in ("base_url", "cookies"):  # the API reads no cookie
                        kwargs.pop(unused, None)
                    if isinstance(kwargs.get("data"), bytes | str):  # requests' spelling; httpx says content
                        kwargs["content"] = kwargs.pop("data")
                    method, url = kwargs.pop("method"), kwargs.pop("url")
                    response = client.request(method, url, **kwargs)
                    tried[f"{response.status_code // 100}xx"] += 1
                    if response.status_code >= 500 or "error" not in response.json() and response.status_code >= 400:
                        failures.append(f"{method} {url} {kwargs.get('json')!r}: {response.status_code} {response.text[:200]}")

                fuzz()
    print(f"schemathesis: {sum(tried.values())} requests, {dict(tried)}")
    assert sum(tried.values()) >= 100
    assert failures == []


FORM_TEXT = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=300), st.text(alphabet=st.characters(), max_size=20))
FORMS = {
    "/login": ("email", "password", "remember"),
    "/admin/login": ("email", "password"),
    "/register": ("email", "name", "password", "password_confirm"),
    "/login/2fa": ("code",),
    "/login/backup": ("code",),
    "/login/recover/resync": ("code", "next_code"),
    "/account/security/step-up": ("password",),
    "/account/security/step-up/verify": ("code",),
    "/account/security/step-up/backup": ("backup_code",),
    "/account/security/setup": ("module",),
    "/account/security/setup/confirm": ("code",),
    "/account/security/password": ("new_password", "new_password_confirm"),
    "/account/security/disable": ("password",),
    "/admin/2fa/global": ("force_clients", "force_admins"),
    "/admin/2fa/totp": ("clients", "admins", "digits", "period", "window", "issuer"),
    "/admin/2fa/duo": ("clients", "client_id", "client_secret", "api_hostname", "ca_file", "http_timeout"),
    "/admin/2fa/yubikey": ("clients", "client_id", "secret_key", "api_urls", "ca_file"),
    "/admin/users/1/disable-2fa": ("confirm",),
}


def test_hypothesis_finds_no_server_error_in_the_forms(hostile_app: Any, fake_clock: Any, web_admin: Any) -> None:
    tried: Counter[str] = Counter()
    failures: list[str] = []
    with TestClient(hostile_app) as client, TestClient(hostile_app) as admin:
        sign_up(client)
        enable_totp(client, fake_clock)
        web_admin(admin)

        @settings(max_examples=EXAMPLES * 4, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(path=st.sampled_from(sorted(FORMS)), data=st.data())
        def fuzz(path: str, data: st.DataObject) -> None:
            browser = admin if path.startswith("/admin/") and "login" not in path else client
            fields = {name: data.draw(FORM_TEXT, label=name) for name in FORMS[path]}
            page = "/admin/2fa" if browser is admin else "/account/security"
            token = csrf_token(browser, page)
            encoded = {name: value.encode("utf-8", "surrogatepass") for name, value in fields.items()}
            response = browser.post(path, files=None, data=None, content=_urlencode({"csrf_token": token, **encoded}),
                                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                                    follow_redirects=False)
            tried[str(response.status_code)] += 1
            if response.status_code >= 500:
                failures.append(f"POST {path} {fields!r}: {response.status_code} {response.text[:200]}")

        fuzz()
    print(f"forms: {sum(tried.values())} requests, {dict(tried)}")
    assert failures == []


def _urlencode(fields: dict[str, Any]) -> bytes:
    from urllib.parse import quote_from_bytes

    def part(value: Any) -> str:
        raw = value if isinstance(value, bytes) else str(value).encode()
        return quote_from_bytes(raw, safe="")

    return "&".join(f"{part(name)}={part(value)}" for name, value in fields.items()).encode()
