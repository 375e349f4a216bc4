"""secmod's pytest plugin: fixtures for hosts and modules. Opt in to it.

It is not loaded by merely installing secmod, so its fixture names cannot clash with a
host application's own: load it with ``-p secmod.testing.plugin`` (``addopts``) or
``pytest_plugins = ["secmod.testing.plugin"]`` in the top-level ``conftest.py``. A
module's conformance suite (:class:`~secmod.testing.ModuleContract`) needs neither: it
carries ``fake_clock`` and ``make_host`` itself.

- ``fake_clock``: a :class:`~secmod.testing.FakeClock` to pass to hosts.
- ``make_host``: builds :class:`secmod.host.Host` objects on a temporary SQLite file
  (or ``database_url=``), with a key file in ``tmp_path``; closed after the test.
- ``postgres_url``: a fresh schema on ``$SECMOD_TEST_DATABASE_URL``; skips when unset.
- ``scratch_venv``: one throwaway virtual environment per test session, layered over
  the running one, to install a module package for real (entry point and all).

The conformance suite (``secmod.testing.contract.ModuleContract``) builds on these.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Before anything imports them, so the suite's failures show the compared values.
pytest.register_assert_rewrite("secmod.testing.contract", "secmod.testing.drivers")

from .clock import FakeClock  # noqa: E402
from .database import postgres_schema_url  # noqa: E402
from .venv import ScratchVenv  # noqa: E402

POSTGRES_ENV = "SECMOD_TEST_DATABASE_URL"


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"PostgreSQL tests need {POSTGRES_ENV} (CI sets it; e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)")
    with postgres_schema_url(base) as url:
        yield url


@contextlib.contextmanager
def host_factory(tmp_path: Path, clock: Callable[[], float]) -> Iterator[Callable[..., Any]]:
    """What ``make_host`` yields: builds hosts on ``tmp_path``, closes them at the end."""
    from secmod.host import Host
    from secmod.settings import SecmodSettings

    hosts: list[Host] = []

    def factory(modules: dict[str, dict[str, Any]] | None = None, *, database_url: str | None = None,
                clock: Callable[[], float] | None = None, host_kwargs: dict[str, Any] | None = None,
                **settings: Any) -> Host:
        settings.setdefault("database_url", database_url or f"sqlite:///{tmp_path / 'secmod.db'}")
        settings.setdefault("sealing", {"key_file": str(tmp_path / "secmod.keys")})
        host = Host(SecmodSettings(modules=modules or {}, **settings), clock=clock or default_clock,
                    **(host_kwargs or {}))
        hosts.append(host)
        return host

    default_clock = clock
    try:
        yield factory
    finally:
        for host in hosts:
            host.close()


@pytest.fixture
def make_host(tmp_path: Path, fake_clock: FakeClock) -> Iterator[Callable[..., Any]]:
    with host_factory(tmp_path, fake_clock) as factory:
        yield factory


@pytest.fixture(scope="session")
def scratch_venv(tmp_path_factory: pytest.TempPathFactory) -> ScratchVenv:
    # Session-wide: creating one costs a second or two; tests install distinct packages.
    return ScratchVenv.create(tmp_path_factory.mktemp("scratch") / "venv")
