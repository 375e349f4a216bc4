"""secmod-webauthn passes the conformance suite every security module must pass."""

import pytest

from secmod.testing import ModuleContract
from secmod_webauthn.testing import WebAuthnDriver


class TestWebAuthnConformance(ModuleContract):
    @pytest.fixture
    def driver(self) -> WebAuthnDriver:
        return WebAuthnDriver()


class TestWebAuthnConformanceOnPostgres(TestWebAuthnConformance):
    """The same suite on PostgreSQL (skipped unless $SECMOD_TEST_DATABASE_URL is set, as in CI)."""

    @pytest.fixture
    def host_settings(self, postgres_url: str) -> dict:
        return {"database_url": postgres_url}
