"""What the conformance suite cannot know about email codes: the mail and the mailer."""

from __future__ import annotations

import re
from email.message import EmailMessage
from typing import Any

import pytest

from secmod.hookspecs import Audience, User
from secmod.host import Enrolled, ModuleUnavailable, Outcome
from secmod_email import CANNOT_SEND, EmailModule, EmailSettings

ADA = User(id="ada", audience=Audience.CLIENT, email="ada@example.test")


def code_in(mail: EmailMessage) -> str:
    return re.search(r"Your login code is (\d+)", mail.get_payload()).group(1)


def _host(make_host: Any, smtp_server: Any, **table: Any) -> Any:
    table = {"clients": True, "smtp_host": smtp_server.host, "smtp_port": smtp_server.port, **table}
    return make_host({"email": table}, loading={"allow": ["email"]})


def test_the_email_says_who_it_is_from_and_how_long_the_code_lasts(make_host: Any, smtp_server: Any) -> None:
    host = _host(make_host, smtp_server, sender="Example Hosting <no-reply@example.test>", code_lifetime_seconds=300)
    step = host.begin_setup(ADA, "email")
    mail = smtp_server.inbox.last_to("ada@example.test")
    assert mail["From"] == "Example Hosting <no-reply@example.test>"
    assert "for 5 minutes" in mail.get_payload()
    assert "a**@example.test" in step.prompt.instructions  # masked, but recognisable


def test_an_expired_code_is_refused(make_host: Any, smtp_server: Any, fake_clock: Any) -> None:
    host = _host(make_host, smtp_server, code_lifetime_seconds=60)
    step = host.begin_setup(ADA, "email")
    code = code_in(smtp_server.inbox.last_to(ADA.email))
    fake_clock.advance(61)
    refused = host.continue_setup(ADA, step.setup_id, {"code": code})
    assert refused.error.startswith("That code has expired")


def test_an_unreachable_mail_server_is_a_clear_message(make_host: Any, smtp_server: Any) -> None:
    host = _host(make_host, smtp_server, smtp_port=1)  # nothing listens on port 1
    with pytest.raises(ModuleUnavailable) as refused:
        host.begin_setup(ADA, "email")
    assert str(refused.value) == CANNOT_SEND
    with pytest.raises(ModuleUnavailable, match="Cannot reach the SMTP server 127.0.0.1:1"):
        host.activate("email")


class Outbox:
    """A mailer that keeps messages in a list: what an HTTP mail API adapter would replace."""

    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []

    def send(self, message: EmailMessage, settings: EmailSettings) -> None:
        self.sent.append(message)

    def check(self, settings: EmailSettings) -> str:
        return "outbox ready"


def test_a_host_application_can_plug_in_its_own_mailer(make_host: Any) -> None:
    outbox = Outbox()
    host = make_host(
        {"email": {"clients": True}}, host_kwargs={"modules": {"email": EmailModule(mailer=outbox)}, "entry_points": False}
    )
    assert host.activate("email").message == "outbox ready"
    step = host.begin_setup(ADA, "email")
    code = code_in(outbox.sent[-1])
    assert isinstance(host.continue_setup(ADA, step.setup_id, {"code": code}), Enrolled)
    started = host.begin_challenge(ADA)
    code = code_in(outbox.sent[-1])
    assert host.verify(ADA, {"code": code}, challenge_id=started.challenge_id).outcome is Outcome.ACCEPTED
