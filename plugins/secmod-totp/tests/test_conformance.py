"""secmod-totp passes the conformance suite every security module must pass."""

import pytest

from secmod.testing import FakeClock, ModuleContract
from secmod.testing.drivers import TotpDriver


class TestTotpConformance(ModuleContract):
    @pytest.fixture
    def driver(self, fake_clock: FakeClock) -> TotpDriver:
        return TotpDriver(fake_clock)


class TestTotpConformanceOnPostgres(TestTotpConformance):
    """The same suite on PostgreSQL (skipped unless $SECMOD_TEST_DATABASE_URL is set, as in CI)."""

    @pytest.fixture
    def host_settings(self, postgres_url: str) -> dict:
        return {"database_url": postgres_url}
