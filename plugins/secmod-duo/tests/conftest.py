"""Fixtures: one test CA per session, a fresh fake Duo per test, hosts wired to it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import secmod_duo
from secmod_duo.testing.fake import FakeDuo
from secmod.testing.tls import LocalCA

REDIRECT = "https://portal.example.com/login/duo/callback"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests honours proxy variables; the fake is on loopback and nothing may sit between.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture(scope="session")
def local_ca() -> Iterator[LocalCA]:
    with LocalCA() as ca:
        yield ca


@pytest.fixture
def fake(local_ca: LocalCA) -> Iterator[FakeDuo]:
    with FakeDuo(ca=local_ca) as server:
        server.hang_seconds = 10  # a safety net: the module's own timeout must fire first
        yield server
    assert server.errors == [], "the fake Duo hit an internal error"


@pytest.fixture
def redirect_url() -> str:
    return REDIRECT


@pytest.fixture
def duo_host(make_host: Callable[..., Any], fake: FakeDuo, redirect_url: str) -> Callable[..., Any]:
    """A Host with only the Duo module, on the real clock (Duo's JWTs use real time)."""

    def factory(*, clock: Callable[[], float] = time.time, **duo: Any) -> Any:
        table = fake.settings(redirect_url, clients=True, admins=True, **duo)
        return make_host({"duo": table}, clock=clock,
                         host_kwargs={"entry_points": False, "modules": {"duo": secmod_duo}})

    return factory
