"""secmod-duo passes the conformance suite, against the fake Duo (tests/conftest.py)."""

import pytest

from secmod.testing import ModuleContract
from secmod.testing.duo_fake import FakeDuo
from secmod.testing.drivers import DuoDriver


class TestDuoConformance(ModuleContract):
    @pytest.fixture
    def driver(self, fake: FakeDuo) -> DuoDriver:
        return DuoDriver(fake)
