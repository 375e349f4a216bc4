"""secmod-totp passes the conformance suite every security module must pass."""

import pytest

from secmod.testing import FakeClock, ModuleContract
from secmod.testing.drivers import TotpDriver


class TestTotpConformance(ModuleContract):
    @pytest.fixture
    def driver(self, fake_clock: FakeClock) -> TotpDriver:
        return TotpDriver(fake_clock)
