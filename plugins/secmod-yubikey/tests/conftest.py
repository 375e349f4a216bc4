"""Fixtures: a fake YubiCloud on 127.0.0.1, soft YubiKeys, and hosts running the module."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from secmod.hookspecs import Audience, User
from secmod_yubikey.testing.yubicloud_fake import FakeYubiCloud


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # The fake listens on loopback; a proxy from the environment must not stand between.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def cloud() -> Iterator[FakeYubiCloud]:
    with FakeYubiCloud() as fake:
        yield fake
    assert not fake.errors, fake.errors


@pytest.fixture
def ada() -> User:
    return User(id="client-1", audience=Audience.CLIENT, email="ada@example.test")


@pytest.fixture
def bob() -> User:
    return User(id="client-2", audience=Audience.CLIENT, email="bob@example.test")


@pytest.fixture
def yubikey_host(make_host: Callable[..., Any]) -> Callable[..., Any]:
    """A Host with only the installed yubikey module, on for clients and admins."""

    def start(table: dict[str, Any], **settings: Any) -> Any:
        return make_host(
            {"yubikey": {"clients": True, "admins": True, **table}}, loading={"allow": ["yubikey"]}, **settings
        )

    return start
