"""The installed module works in secmod's reference web host, untouched: over its JSON API."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the web host needs secmod[web]")
with warnings.catch_warnings():
    # Starlette asks for the httpx2 package at import time; httpx (the test extra) works.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from secmod.host.web import create_app  # noqa: E402

TOKEN = "example-api-token-0123456789"
ADA = {"id": "ada", "audience": "client", "email": "ada@example.test"}


def test_enrol_and_log_in_through_the_web_hosts_api(tmp_path: Path, smtp_server: Any) -> None:
    config = tmp_path / "secmod.toml"
    config.write_text(
        '[loading]\nallow = ["email"]\n'
        f'[web]\napi_token = "{TOKEN}"\nsession_secret = "example-session-secret"\n'
        f'[modules.email]\nclients = true\nsmtp_host = "{smtp_server.host}"\nsmtp_port = {smtp_server.port}\n'
    )
    app = create_app(config)

    def call(path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = client.post(f"/api/v1{path}", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200, response.text
        return response.json()

    def newest_code() -> str:
        return re.search(r"Your login code is (\d+)", smtp_server.inbox.last_to(ADA["email"]).get_payload()).group(1)

    with TestClient(app) as client:
        started = call("/setup", {"user": ADA, "module": "email"})
        assert started["prompt"]["fields"][0]["name"] == "code"
        done = call("/setup/continue", {"user": ADA, "setup_id": started["setup_id"], "answer": {"code": newest_code()}})
        assert done["status"] == "enrolled"
        assert call("/login-state", {"user": ADA})["module"] == "email"
        challenge = call("/challenge", {"user": ADA})
        answer = {"user": ADA, "answer": {"code": newest_code()}, "challenge_id": challenge["challenge_id"]}
        assert call("/verify", answer)["outcome"] == "accepted"
        assert call("/verify", answer)["outcome"] == "rejected"
