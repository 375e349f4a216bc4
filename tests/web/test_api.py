"""The JSON API for host applications in other languages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyotp
import pytest

from .conftest import API_TOKEN, CONFIG, TestClient

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
ADA = {"id": "ada-42", "audience": "client", "email": "ada@example.com"}


def call(client: Any, path: str, body: dict[str, Any], *, status: int = 200) -> dict[str, Any]:
    response = client.post(f"/api/v1{path}", json=body, headers=AUTH)
    assert response.status_code == status, response.text
    return response.json()


def enrol(client: Any, clock: Any) -> str:
    started = call(client, "/setup", {"user": ADA, "module": "totp"})
    assert started["status"] == "pending" and started["prompt"]["provisioning"]["qr_svg"].startswith("<svg")
    secret = started["prompt"]["provisioning"]["secret"]
    done = call(client, "/setup/continue", {"user": ADA, "setup_id": started["setup_id"],
                                            "answer": {"code": pyotp.TOTP(secret).at(clock())}})
    assert done["status"] == "enrolled" and len(done["backup_codes"]) == 1
    return secret


def test_full_login_over_the_api(client: Any, fake_clock: Any) -> None:
    assert call(client, "/login-state", {"user": ADA})["step"] == "not_required"
    secret = enrol(client, fake_clock)
    state = call(client, "/login-state", {"user": ADA})
    assert state == {"step": "challenge", "module": "totp", "choices": [],
                     "message": "Your second factor is required to complete login."}
    started = call(client, "/challenge", {"user": ADA})
    assert started["prompt"]["fields"][0]["name"] == "code" and started["prompt"]["provisioning"] is None

    wrong = call(client, "/verify", {"user": ADA, "answer": {"code": "000000"}, "challenge_id": started["challenge_id"]})
    assert (wrong["outcome"], wrong["attempts_left"]) == ("rejected", 4)
    fake_clock.advance(30)
    started = call(client, "/challenge", {"user": ADA})
    right = call(client, "/verify", {"user": ADA, "answer": {"code": pyotp.TOTP(secret).at(fake_clock())},
                                     "challenge_id": started["challenge_id"]})
    assert right["outcome"] == "accepted"


def test_recover_and_disable(client: Any, fake_clock: Any) -> None:
    enrol(client, fake_clock)
    bad = call(client, "/recover", {"user": ADA, "answer": {"code": "0000-0000-0000-0000"}})
    assert bad["outcome"] == "rejected" and bad["new_backup_codes"] == []
    assert call(client, "/disable", {"user": ADA, "actor": "billing-portal"}) == {"disabled": True}
    assert call(client, "/disable", {"user": ADA}) == {"disabled": False}


def test_errors_have_a_stable_code(client: Any, fake_clock: Any) -> None:
    assert call(client, "/challenge", {"user": ADA}, status=409)["error"]["code"] == "not_enrolled"
    assert call(client, "/setup", {"user": ADA, "module": "nope"}, status=404)["error"]["code"] == "unknown_module"
    expired = call(client, "/setup/continue", {"user": ADA, "setup_id": "made-up", "answer": {}}, status=410)
    assert expired["error"]["code"] == "setup_expired"
    invalid = call(client, "/verify", {"user": {"id": ""}}, status=422)["error"]
    assert invalid["code"] == "invalid_request" and "user.id" in invalid["message"]
    assert client.get("/api/v1/nothing-here", headers=AUTH).json()["error"]["code"] == "not_found"

    enrol(client, fake_clock)
    for _ in range(5):
        call(client, "/verify", {"user": ADA, "answer": {"code": "000000"}})
    locked = call(client, "/challenge", {"user": ADA}, status=423)["error"]
    assert locked["code"] == "user_locked" and locked["locked_until"].startswith("20")


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": API_TOKEN}])
def test_the_token_is_required(client: Any, headers: dict[str, str]) -> None:
    response = client.post("/api/v1/login-state", json={"user": ADA}, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "unauthorized"


def test_without_a_token_configured_the_api_is_off(tmp_path: Path) -> None:
    from secmod.host.web import create_app

    config = tmp_path / "secmod.toml"
    config.write_text(CONFIG.replace('api_token = "{api_token}"\n', ""))
    app = create_app(config)
    try:
        with TestClient(app) as client:
            response = client.post("/api/v1/login-state", json={"user": ADA}, headers=AUTH)
    finally:
        app.state.web.close()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "api_disabled"


def test_openapi_describes_the_api_only(client: Any) -> None:
    schema = client.get("/openapi.json").json()
    names = ("login-state", "challenge", "verify", "setup", "setup/continue", "recovery-methods", "recover", "disable")
    assert set(schema["paths"]) == {f"/api/v1/{name}" for name in names}
    assert "ErrorResponse" in schema["components"]["schemas"]


def test_openapi_names_the_bearer_token(client: Any) -> None:
    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert schema["paths"]["/api/v1/verify"]["post"]["security"] == [{"HTTPBearer": []}]


def test_recovery_methods_come_with_the_prompt_to_render(client: Any, fake_clock: Any) -> None:
    assert call(client, "/recovery-methods", {"user": ADA}) == {"methods": []}
    enrol(client, fake_clock)
    methods = call(client, "/recovery-methods", {"user": ADA})["methods"]
    assert [m["name"] for m in methods] == ["backup_code", "resync"]
    resync = methods[1]
    assert resync["label"] == "Resynchronise your authenticator"
    assert [f["name"] for f in resync["prompt"]["fields"]] == ["code", "next_code"]
    assert resync["prompt"]["provisioning"] is None and resync["prompt"]["redirect_url"] is None
