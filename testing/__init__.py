"""Helpers for testing secmod and security modules.

``secmod.testing.plugin`` is a pytest plugin (loaded automatically once secmod is
installed) with fixtures: ``fake_clock``, ``make_host``, ``postgres_url``. The fake
providers live beside it: ``secmod.testing.duo_fake``, ``secmod.testing.yubicloud_fake``,
``secmod.testing.soft_yubikey``.
"""

from .clock import FakeClock
from .database import postgres_schema_url

__all__ = ["FakeClock", "postgres_schema_url"]
