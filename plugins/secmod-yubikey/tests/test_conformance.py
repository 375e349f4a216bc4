"""secmod-yubikey passes the conformance suite, in cloud mode and in local mode."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from secmod.hookspecs import Prompt, User
from secmod.testing import ModuleContract, ModuleDriver
from secmod_yubikey.testing.soft_yubikey import SoftYubiKey
from secmod_yubikey.testing.yubicloud_fake import FakeYubiCloud


class _KeyPerPerson(ModuleDriver):
    """Each person has one YubiKey and touches it whenever asked."""

    name = "yubikey"

    def __init__(self) -> None:
        self.keys: dict[tuple[str, str], SoftYubiKey] = {}

    def new_key(self) -> SoftYubiKey:
        raise NotImplementedError

    def key(self, user: User) -> SoftYubiKey:
        who = (user.audience.value, user.id)
        if who not in self.keys:
            self.keys[who] = self.new_key()
        return self.keys[who]

    def answer_setup(self, prompt: Prompt, user: User) -> dict[str, str]:
        assert [f.name for f in prompt.fields] == ["otp"]
        return {"otp": self.key(user).press()}

    def answer_challenge(self, prompt: Prompt, user: User) -> dict[str, str]:
        return {"otp": self.key(user).press()}

    def wrong_answer(self, prompt: Prompt, user: User) -> dict[str, str]:
        # The right public id typed by a key with another AES key: a forgery.
        return {"otp": SoftYubiKey(public_id=self.key(user).public_id).press()}

    def secrets(self) -> Iterable[str]:
        return [k.aes_key.hex() for k in self.keys.values()]


class CloudDriver(_KeyPerPerson):
    def __init__(self, fake: FakeYubiCloud) -> None:
        super().__init__()
        self.fake = fake

    def new_key(self) -> SoftYubiKey:
        return self.fake.new_key()

    def settings(self) -> dict[str, Any]:
        return self.fake.settings()

    def secrets(self) -> Iterable[str]:
        return [*super().secrets(), self.fake.api_key]


class LocalDriver(_KeyPerPerson):
    """Local mode: the operator imported a pool of keys; people take one each."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = [SoftYubiKey() for _ in range(6)]

    def new_key(self) -> SoftYubiKey:
        return self.pool[len(self.keys)]

    def settings(self) -> dict[str, Any]:
        table = {k.public_id: {"aes_key": k.aes_key.hex(), "private_id": k.private_id.hex()} for k in self.pool}
        return {"mode": "local", "keys": table}

    def secrets(self) -> Iterable[str]:
        return [k.aes_key.hex() for k in self.pool]


class TestYubikeyCloudConformance(ModuleContract):
    @pytest.fixture
    def driver(self) -> Iterator[CloudDriver]:
        with FakeYubiCloud() as fake:
            yield CloudDriver(fake)
        assert not fake.errors, fake.errors


class TestYubikeyLocalConformance(ModuleContract):
    @pytest.fixture
    def driver(self) -> LocalDriver:
        return LocalDriver()
