"""Helpers for testing secmod and security modules.

``secmod.testing.plugin`` is a pytest plugin you opt in to (``-p secmod.testing.plugin``)
with fixtures: ``fake_clock``, ``make_host``, ``postgres_url``, ``scratch_venv``. The
conformance suite every module must pass is :class:`ModuleContract`, driven by a
:class:`ModuleDriver` (``secmod.testing.contract``); it brings its own ``fake_clock``
and ``make_host``. The TOTP driver is in ``secmod.testing.drivers``; here too are the
fake clock, local TLS (``secmod.testing.tls``) and scratch virtual environments
(``secmod.testing.venv``). Test doubles of a module live with the module:
``secmod_duo.testing`` (fake Duo, ``DuoDriver``), ``secmod_yubikey.testing`` (fake
YubiCloud, software YubiKey).
"""

from typing import TYPE_CHECKING, Any

from .clock import FakeClock
from .database import postgres_schema_url

if TYPE_CHECKING:
    from .contract import ModuleContract, ModuleDriver

__all__ = ["FakeClock", "ModuleContract", "ModuleDriver", "postgres_schema_url"]


def __getattr__(name: str) -> Any:
    # The suite imports pytest; load it only when asked, so that `import secmod.testing`
    # (the fake clock) works where pytest is not installed.
    if name in {"ModuleContract", "ModuleDriver"}:
        import pytest

        # Before the import, so the suite's failures show the compared values even where
        # the opt-in plugin (which also registers it) is not loaded.
        pytest.register_assert_rewrite("secmod.testing.contract", "secmod.testing.drivers")
        from . import contract

        return getattr(contract, name)
    raise AttributeError(f"module 'secmod.testing' has no attribute {name!r}")
