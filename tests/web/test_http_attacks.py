"""The throttle over HTTP: a burst of wrong codes against a running ``secmod serve`` app
(uvicorn on loopback, the JSON API) gets exactly the budget judged, never more."""

from __future__ import annotations

import socket
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from secmod.host.web import create_app

from .conftest import API_TOKEN, CONFIG, serve_in_thread

BURST = 50
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
ADA = {"id": "ada", "audience": "client", "email": "ada@example.com"}


@pytest.fixture
def live_api(tmp_path: Path, fake_clock: Any) -> Iterator[str]:
    config = tmp_path / "secmod.toml"
    config.write_text(CONFIG.format(api_token=API_TOKEN))
    app = create_app(config, host_kwargs={"clock": fake_clock})
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    stop = serve_in_thread(app, listener)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop()
    app.state.web.close()


def _post(base: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{base}/api/v1{path}", json=body, headers=AUTH, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def test_fifty_concurrent_wrong_codes_over_http_judge_exactly_the_budget(live_api: str, fake_clock: Any) -> None:
    started = _post(live_api, "/setup", {"user": ADA, "module": "totp"})
    totp = pyotp.TOTP(started["prompt"]["provisioning"]["secret"])
    _post(live_api, "/setup/continue", {"user": ADA, "setup_id": started["setup_id"], "answer": {"code": totp.at(fake_clock.now)}})
    fake_clock.advance(30)
    right = totp.at(fake_clock.now)
    answers = [f"{(int(right) + i) % 10**6:06d}" for i in range(1, BURST + 1)]
    barrier = threading.Barrier(BURST)

    def guess(code: str) -> str:
        barrier.wait(timeout=60)
        body = {"user": ADA, "answer": {"code": code}, "context": {"client_ip": "203.0.113.7"}}
        return str(_post(live_api, "/verify", body)["outcome"])

    with ThreadPoolExecutor(max_workers=BURST) as pool:
        outcomes = Counter(pool.map(guess, answers))
    assert outcomes == {"rejected": 4, "locked": BURST - 4}
    # The lock holds for the right code too: nothing more is judged.
    assert _post(live_api, "/verify", {"user": ADA, "answer": {"code": right}})["outcome"] == "locked"
