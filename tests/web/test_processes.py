"""``secmod serve`` as operators run it: several workers, and several instances on one database.

These start real processes (uvicorn's supervisor and its workers) on loopback ports.
The two-instance tests share one PostgreSQL schema, as two hosts behind a load balancer
share one database: one code is accepted once, the throttle counts across both, and a
lockout set through one is honoured by the other.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
import tomlkit
from prometheus_client.parser import text_string_to_metric_families
from secmod.testing.serve import ServeProcess

from .conftest import API_TOKEN, CONFIG

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
MAX_CODE_FAILURES = 5  # the default [throttle] max_code_failures


def write_config(tmp_path: Path, database_url: str) -> Path:
    document = tomlkit.parse(CONFIG.format(api_token=API_TOKEN))
    document["database_url"] = database_url
    config = tmp_path / "secmod.toml"
    config.write_text(tomlkit.dumps(document))
    return config


def person(user_id: str) -> dict[str, str]:
    return {"id": user_id, "audience": "client", "email": f"{user_id}@example.com"}


def api(base: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    # A new connection each time: the kernel hands it to whichever worker accepts first.
    response = httpx.post(f"{base}/api/v1{path}", json=body, headers=AUTH, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def enrol(base: str, who: dict[str, str]) -> pyotp.TOTP:
    started = api(base, "/setup", {"user": who, "module": "totp"})
    totp = pyotp.TOTP(started["prompt"]["provisioning"]["secret"])
    done = api(
        base,
        "/setup/continue",
        {"user": who, "setup_id": started["setup_id"], "answer": {"code": totp.now()}},
    )
    assert done["status"] == "enrolled"
    return totp


def next_code(totp: pyotp.TOTP) -> str:
    # Enrolment used this step's code; the next step's is inside the ±1 step window.
    return totp.at(time.time() + 30)


def burst(targets: list[str], body: dict[str, Any], count: int) -> list[dict[str, Any]]:
    """``count`` copies of one verify, sent at once, spread over ``targets``."""
    start = threading.Barrier(count, timeout=60)

    def send(index: int) -> dict[str, Any]:
        with httpx.Client(timeout=60) as client:
            start.wait()
            response = client.post(
                f"{targets[index % len(targets)]}/api/v1/verify", json=body, headers=AUTH
            )
        assert response.status_code == 200, response.text
        return response.json()

    with concurrent.futures.ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(send, range(count), timeout=120))


def counter_total(base: str, name: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=30).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    )


def test_workers_share_one_metrics_view(tmp_path: Path) -> None:
    """With two workers, /metrics adds up both, whichever worker answers the scrape."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'secmod.db'}")
    with ServeProcess(
        config, workers=2, env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    ) as server:
        assert len(server.worker_pids()) == 2
        # Answers for people with no second factor are counted too, and never lock anyone.
        sent = 0
        while len(list(metrics_dir.glob("counter_*.db"))) < 2:
            assert sent < 200, "one worker answered every request; the sum cannot be checked"
            result = api(
                server.url,
                "/verify",
                {"user": person(f"nobody-{sent}"), "answer": {"code": "000000"}},
            )
            assert result["reason"] == "not_enrolled"
            sent += 1
        for _ in range(4):  # every scrape sees the sum, whichever worker serves it
            assert counter_total(server.url, "secmod_verifies_total") == sent


def test_serve_logs_json_lines_with_query_strings_hidden(tmp_path: Path) -> None:
    import json

    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'secmod.db'}")
    log_file = tmp_path / "serve.log"
    options = ("--log-format", "json", "--access-log")
    with ServeProcess(config, log_file=log_file, options=options) as server:
        assert (
            httpx.get(f"{server.url}/healthz?duo_code=secret-one-time-code", timeout=30).status_code
            == 200
        )
    entries = [
        json.loads(line) for line in log_file.read_text().splitlines() if line.startswith("{")
    ]
    assert entries and all(
        {"time", "level", "logger", "message", "process"} <= set(e) for e in entries
    )
    access = [e["message"] for e in entries if e["logger"] == "uvicorn.access"]
    assert any("GET /healthz?[query hidden] HTTP/1.1" in message for message in access), access
    assert "secret-one-time-code" not in log_file.read_text()


def test_serve_refuses_a_bad_log_format(tmp_path: Path) -> None:
    import subprocess
    import sys

    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'secmod.db'}")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "secmod.host.cli",
            "--config",
            str(config),
            "serve",
            "--log-format",
            "xml",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1 and "--log-format must be text or json" in done.stderr


# -- two instances on one PostgreSQL ----------------------------------------------------


def judged_failures(database_url: str, user_id: str) -> int:
    """Wrong answers a module judged for this person (audited), not those refused as locked."""
    import sqlalchemy as sa

    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text(
                        "SELECT count(*) FROM secmod_audit WHERE user_id = :user AND event = 'verify'"
                        " AND outcome = 'fail' AND reason <> 'locked'"
                    ),
                    {"user": user_id},
                ).scalar_one()
            )
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def two_instances(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    import os

    from secmod.testing import postgres_schema_url

    base = os.environ.get("SECMOD_TEST_DATABASE_URL")
    if not base:
        pytest.skip("needs SECMOD_TEST_DATABASE_URL")
    tmp_path = tmp_path_factory.mktemp("two-instances")
    with postgres_schema_url(base) as url:
        config = write_config(tmp_path, url)
        first = ServeProcess(config).start()  # migrates the schema before the second starts
        try:
            with ServeProcess(config) as second:
                yield first.url, second.url, url
        finally:
            first.stop()


@pytest.mark.postgres
def test_two_instances_accept_one_code_once(two_instances: tuple[str, str, str]) -> None:
    first, second, _ = two_instances
    who = person("race-once")
    totp = enrol(first, who)
    results = burst([first, second], {"user": who, "answer": {"code": next_code(totp)}}, 16)
    outcomes = [result["outcome"] for result in results]
    print(f"two instances, 16 copies of one code: {outcomes.count('accepted')} accepted")
    assert outcomes.count("accepted") == 1, outcomes


@pytest.mark.postgres
def test_a_lockout_set_on_one_instance_is_honoured_by_the_other(
    two_instances: tuple[str, str, str],
) -> None:
    first, second, _ = two_instances
    who = person("race-lockout")
    totp = enrol(first, who)
    outcomes = [
        api(first, "/verify", {"user": who, "answer": {"code": "000000"}})["outcome"]
        for _ in range(MAX_CODE_FAILURES)
    ]
    assert outcomes == ["rejected"] * (MAX_CODE_FAILURES - 1) + ["locked"]
    right = api(second, "/verify", {"user": who, "answer": {"code": next_code(totp)}})
    assert right["outcome"] == "locked" and right["locked_until"]


@pytest.mark.postgres
def test_two_instances_throttle_exactly(two_instances: tuple[str, str, str]) -> None:
    """50 concurrent wrong codes over both instances: at most the limit is judged
    (Core 2 reserves each attempt before a module judges it)."""
    first, second, database_url = two_instances
    who = person("race-throttle")
    totp = enrol(first, who)
    results = burst([first, second], {"user": who, "answer": {"code": "000000"}}, 50)
    assert {result["outcome"] for result in results} <= {"rejected", "locked"}
    print(
        f"two instances, 50 concurrent wrong codes: {judged_failures(database_url, who['id'])} judged"
    )
    assert judged_failures(database_url, who["id"]) <= MAX_CODE_FAILURES, [
        r["outcome"] for r in results
    ]
    right = api(second, "/verify", {"user": who, "answer": {"code": next_code(totp)}})
    assert right["outcome"] == "locked"
