"""secmod-email passes the conformance suite every security module must pass."""

from __future__ import annotations

import re
from typing import Any

import pytest

from secmod.hookspecs import Prompt, User
from secmod.testing import ModuleContract, ModuleDriver

CODE = re.compile(r"Your login code is (\d+)")


class EmailDriver(ModuleDriver):
    """A person reading their mail: the right answer is the code in the newest email."""

    name = "email"

    def __init__(self, smtp_server: Any) -> None:
        self.server = smtp_server

    def settings(self) -> dict[str, Any]:
        return {"smtp_host": self.server.host, "smtp_port": self.server.port, "sender": "secmod@example.test"}

    def _newest_code(self, user: User) -> str:
        body = self.server.inbox.last_to(user.email).get_payload()
        return CODE.search(body).group(1)

    def answer_setup(self, prompt: Prompt, user: User) -> dict[str, str]:
        return {"code": self._newest_code(user)}

    def answer_challenge(self, prompt: Prompt, user: User) -> dict[str, str]:
        return {"code": self._newest_code(user)}

    def wrong_answer(self, prompt: Prompt, user: User) -> dict[str, str]:
        code = self._newest_code(user)
        return {"code": str((int(code) + 1) % 10 ** len(code)).zfill(len(code))}


class TestEmailConformance(ModuleContract):
    @pytest.fixture
    def driver(self, smtp_server: Any) -> EmailDriver:
        return EmailDriver(smtp_server)
