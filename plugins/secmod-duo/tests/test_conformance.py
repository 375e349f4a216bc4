"""secmod-duo passes the conformance suite, against the fake Duo (tests/conftest.py)."""

import pytest

from secmod.testing import ModuleContract
from secmod_duo.testing.fake import FakeDuo
from secmod_duo.testing import DuoDriver


class TestDuoConformance(ModuleContract):
    @pytest.fixture
    def driver(self, fake: FakeDuo) -> DuoDriver:
        return DuoDriver(fake)
