"""What an operator watches: /metrics, /healthz and the JSON-lines log format."""

from __future__ import annotations

import json
import logging
import logging.config
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from secmod.hookspecs import provider_call
from secmod.host.web import create_app
from secmod.host.web.logs import JsonLinesFormatter, log_config
from support import PinModule

from .conftest import API_TOKEN, CONFIG, TestClient

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def person(user_id: str, audience: str = "client") -> dict[str, str]:
    return {"id": user_id, "audience": audience, "email": f"{user_id}@example.com"}


def call(client: Any, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(f"/api/v1{path}", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()


def enrol(client: Any, who: dict[str, str], clock: Any) -> pyotp.TOTP:
    started = call(client, "/setup", {"user": who, "module": "totp"})
    totp = pyotp.TOTP(started["prompt"]["provisioning"]["secret"])
    done = call(
        client,
        "/setup/continue",
        {"user": who, "setup_id": started["setup_id"], "answer": {"code": totp.at(clock())}},
    )
    assert done["status"] == "enrolled"
    clock.advance(30)
    return totp


def samples(client: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def pin_app(config_file: Path, fake_clock: Any) -> Iterator[Any]:
    pin = PinModule()
    application = create_app(
        config_file, host_kwargs={"clock": fake_clock, "modules": {"pin": pin}}
    )
    application.state.pin = pin
    yield application
    application.state.web.close()


def test_metrics_count_verifies_by_module_and_outcome_and_lockouts(
    client: Any, fake_clock: Any
) -> None:
    # The counters are per process and other tests count too: compare before and after.
    before = samples(client)
    who = person("metrics-ada")
    totp = enrol(client, who, fake_clock)
    assert (
        call(client, "/verify", {"user": who, "answer": {"code": totp.at(fake_clock())}})["outcome"]
        == "accepted"
    )
    for _ in range(4):
        assert (
            call(client, "/verify", {"user": who, "answer": {"code": "000000"}})["outcome"]
            == "rejected"
        )
    assert (
        call(client, "/verify", {"user": who, "answer": {"code": "000000"}})["outcome"] == "locked"
    )
    fake_clock.advance(60)  # a refusal while the lock runs is not a new lockout
    assert (
        call(client, "/verify", {"user": who, "answer": {"code": "000000"}})["outcome"] == "locked"
    )
    after = samples(client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("secmod_verifies_total", module="totp", event="verify", outcome="accepted") == 1
    assert grew("secmod_verifies_total", module="totp", event="verify", outcome="rejected") == 4
    assert grew("secmod_verifies_total", module="totp", event="verify", outcome="locked") == 2
    assert grew("secmod_lockouts_total", module="totp") == 1


def test_metrics_count_recoveries(client: Any, fake_clock: Any) -> None:
    before = samples(client)
    who = person("metrics-bob")
    enrol(client, who, fake_clock)
    assert (
        call(client, "/recover", {"user": who, "answer": {"code": "0000-0000-0000-0000"}})[
            "outcome"
        ]
        == "rejected"
    )
    after = samples(client)
    key = {"module": "totp", "event": "recover", "outcome": "rejected"}
    assert (
        value(after, "secmod_verifies_total", **key) - value(before, "secmod_verifies_total", **key)
        == 1
    )


def test_metrics_count_a_module_that_crashes(pin_app: Any, fake_clock: Any) -> None:
    with TestClient(pin_app) as client:
        who = person("metrics-crash")
        assert call(client, "/setup", {"user": who, "module": "pin"})["status"] == "enrolled"
        before = samples(client)
        pin_app.state.pin.explode = True
        result = call(client, "/verify", {"user": who, "answer": {"pin": "4711"}})
        assert result["outcome"] == "rejected"
        after = samples(client)
    key = {"module": "pin", "hook": "verify"}
    assert (
        value(after, "secmod_module_errors_total", **key)
        - value(before, "secmod_module_errors_total", **key)
        == 1
    )


def test_metrics_time_provider_calls_as_a_histogram(client: Any) -> None:
    samples(client)  # the metrics exist, so the observer is registered
    with provider_call("yubicloud", "verify"):
        pass
    with pytest.raises(TimeoutError), provider_call("duo", "health_check"):
        raise TimeoutError
    found = samples(client)
    ok = {"provider": "yubicloud", "operation": "verify", "outcome": "ok"}
    failed = {"provider": "duo", "operation": "health_check", "outcome": "error"}
    assert value(found, "secmod_provider_call_seconds_count", **ok) >= 1
    assert value(found, "secmod_provider_call_seconds_count", **failed) >= 1
    assert value(found, "secmod_provider_call_seconds_bucket", **ok, le="+Inf") >= 1


def test_metrics_hold_no_user_or_code(client: Any, fake_clock: Any) -> None:
    who = person("metrics-secretive")
    totp = enrol(client, who, fake_clock)
    code = totp.at(fake_clock())
    call(client, "/verify", {"user": who, "answer": {"code": code}})
    page = client.get("/metrics").text
    assert "metrics-secretive" not in page and code not in page


def test_healthz_reports_database_and_modules(client: Any) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "modules": {"totp": "ok"}}
    assert "/healthz" not in client.get("/openapi.json").json()["paths"]


def test_healthz_fails_when_the_database_is_unreachable(
    client: Any, web: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Port 9 (discard) on loopback: nothing listens, so connecting is refused at once.
    unreachable = sa.create_engine("postgresql+psycopg://nobody@127.0.0.1:9/none")
    monkeypatch.setattr(web.host.store, "engine", unreachable)
    try:
        response = client.get("/healthz")
    finally:
        unreachable.dispose()
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "failing" and body["database"].startswith("unreachable (")


def test_healthz_fails_when_an_enabled_module_does_not_activate(
    tmp_path: Path, fake_clock: Any
) -> None:
    config = tmp_path / "secmod.toml"
    # Duo switched on for clients, pointing at a port where no Duo answers.
    config.write_text(
        CONFIG.format(api_token=API_TOKEN)
        + """
[modules.duo]
clients = true
client_id = "DIXXXXXXXXXXXXXXXXXX"
client_secret = "0123456789012345678901234567890123456789"
api_hostname = "127.0.0.1:9"
redirect_url = "http://127.0.0.1:8000/login/duo/callback"
http_timeout = 1
"""
    )
    try:
        application = create_app(config, host_kwargs={"clock": fake_clock})
    except Exception as error:  # noqa: BLE001 - the settings model names what it refuses
        pytest.skip(f"Duo settings for an unreachable host are refused at load: {error}")
    try:
        with TestClient(application) as client:
            response = client.get("/healthz")
    finally:
        application.state.web.close()
    assert response.status_code == 503
    body = response.json()
    assert body["database"] == "ok" and body["modules"]["duo"].startswith("failing: ")


def test_json_log_lines_carry_the_message_and_only_an_exception_type() -> None:
    formatter = JsonLinesFormatter()
    record = logging.LogRecord(
        "secmod.host", logging.ERROR, __file__, 1, "module %r failed", ("pin",), None
    )
    try:
        raise ValueError("the code was 123456")
    except ValueError:
        record.exc_info = sys.exc_info()
    line = formatter.format(record)
    assert "\n" not in line and "123456" not in line
    entry = json.loads(line)
    assert entry["level"] == "error" and entry["logger"] == "secmod.host"
    assert entry["message"] == "module 'pin' failed" and entry["exception"] == "ValueError"
    assert entry["time"].endswith("+00:00")


def test_log_config_hides_query_strings_in_both_formats() -> None:
    from secmod.host.web import HideQueryStrings

    for log_format in ("text", "json"):
        config = log_config(log_format)  # type: ignore[arg-type]
        assert config["handlers"]["access"]["filters"] == ["hide_query"]
        # The names dictConfig will import resolve to the real classes.
        configurator = logging.config.BaseConfigurator({})
        assert configurator.resolve(config["filters"]["hide_query"]["()"]) is HideQueryStrings
        for formatter in config["formatters"].values():
            assert issubclass(configurator.resolve(formatter["()"]), logging.Formatter)
