"""Helpers for testing secmod and security modules.

``secmod.testing.plugin`` is a pytest plugin (loaded automatically once secmod is
installed) with fixtures: ``fake_clock``, ``make_host``, ``postgres_url``. The
conformance suite every module must pass is :class:`ModuleContract`, driven by a
:class:`ModuleDriver` (``secmod.testing.contract``); drivers for the built-in modules
are in ``secmod.testing.drivers``. The fake providers live beside them:
``secmod.testing.duo_fake``, ``secmod.testing.yubicloud_fake``,
``secmod.testing.soft_yubikey``.
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
        from . import contract

        return getattr(contract, name)
    raise AttributeError(f"module 'secmod.testing' has no attribute {name!r}")
