"""Test doubles for the Duo module: a fake Duo server and the conformance driver.

- :class:`FakeDuo` (``secmod_duo.testing.fake``): Duo's Universal Prompt endpoints on
  127.0.0.1 over local HTTPS, for the real ``duo_universal.Client``. Run it by hand with
  ``python -m secmod_duo.testing.fake --port 8443 --interactive``.
- :class:`DuoDriver`: plays the person for :class:`secmod.testing.ModuleContract`.

They need the test tools of secmod (``pip install 'secmod[test]'``).
"""

from .driver import DuoDriver
from .fake import FakeDuo, closed_port

__all__ = ["DuoDriver", "FakeDuo", "closed_port"]
