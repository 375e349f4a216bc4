import pytest
from support import PinModule


@pytest.fixture
def pin_module() -> PinModule:
    return PinModule()
