import pytest
from support import PinModule


@pytest.fixture
def pin_module() -> PinModule:
    return PinModule()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path) -> str:
    """A database URL: an SQLite file, then a fresh PostgreSQL schema (skipped without one)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'secmod.db'}"
    return str(request.getfixturevalue("postgres_url"))
