"""The conformance driver of the Duo module: a person approving in Duo's prompt (the fake)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from secmod.hookspecs import Prompt, User
from secmod.testing import ModuleDriver

__all__ = ["DuoDriver"]


class DuoDriver(ModuleDriver):
    """A person with the Duo app: Duo's prompt (the fake) approves and sends them back.

    Enrolment needs no answer (Duo enrols people itself), so the suite's setup-answer
    tests skip. The right answer is the query the browser brings back from Duo; a
    wrong one carries the right ``state`` with a code Duo never issued.

    :param fake: a running :class:`secmod_duo.testing.FakeDuo`.
    :param redirect_url: the module's ``redirect_url`` setting.
    """

    name = "duo"

    def __init__(self, fake: Any, redirect_url: str = "https://portal.example.test/login/duo/callback") -> None:
        self.fake = fake
        self.redirect_url = redirect_url

    def settings(self) -> dict[str, Any]:
        return self.fake.settings(self.redirect_url)

    def answer_challenge(self, prompt: Prompt, user: User) -> dict[str, str]:
        assert prompt.redirect_url, "a Duo challenge sends the browser to Duo"
        return self.fake.come_back(prompt.redirect_url)

    def wrong_answer(self, prompt: Prompt, user: User) -> dict[str, str]:
        answer = self.answer_challenge(prompt, user)
        forged = "".join(reversed(answer["duo_code"]))
        return {**answer, "duo_code": forged if forged != answer["duo_code"] else forged + "x"}

    def secrets(self) -> Iterable[str]:
        return [self.fake.client_secret]
