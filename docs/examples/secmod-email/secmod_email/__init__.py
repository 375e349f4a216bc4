"""Email one-time codes: an example third-party security module for secmod.

At enrolment and at every login the person is emailed a short code and types it
back. The code itself is never stored: what the host keeps (sealed) between the
two steps is a salted hash of it, and the host hands a login's pending data to
``verify`` once, so a code cannot be used twice.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import smtplib
import ssl
from email.message import EmailMessage
from typing import Protocol

from pydantic import Field as SettingField
from pydantic import SecretStr

from secmod.hookspecs import (
    Accepted,
    Activation,
    ActivateRequest,
    Challenge,
    ChallengeRequest,
    Field,
    ForgetRequest,
    ModuleError,
    ModuleInfo,
    ModuleSettings,
    Prompt,
    Rejected,
    SetupComplete,
    SetupPrompt,
    SetupRequest,
    Verdict,
    VerifyRequest,
    hookimpl,
)

__all__ = ["EmailModule", "EmailSettings", "Mailer", "SmtpMailer", "module"]


class EmailSettings(ModuleSettings):
    """``[modules.email]`` in secmod.toml."""

    smtp_host: str = "localhost"
    smtp_port: int = SettingField(25, ge=1, le=65535)
    smtp_starttls: bool = False
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_timeout_seconds: float = SettingField(10, gt=0, le=60)
    sender: str = SettingField("secmod@localhost", min_length=3)
    subject: str = "Your login code"
    code_digits: int = SettingField(6, ge=6, le=10)
    code_lifetime_seconds: int = SettingField(600, ge=60, le=3600)


class Mailer(Protocol):
    """Sends the module's messages; swap it for an HTTP mail API if you like."""

    def send(self, message: EmailMessage, settings: EmailSettings) -> None: ...

    def check(self, settings: EmailSettings) -> str: ...


class SmtpMailer:
    """The default mailer: one SMTP connection per message, with ``smtplib``."""

    def _connect(self, settings: EmailSettings) -> smtplib.SMTP:
        smtp = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_seconds)
        if settings.smtp_starttls:
            smtp.starttls(context=ssl.create_default_context())
        if settings.smtp_username:
            smtp.login(settings.smtp_username, settings.smtp_password.get_secret_value())
        return smtp

    def send(self, message: EmailMessage, settings: EmailSettings) -> None:
        with self._connect(settings) as smtp:
            smtp.send_message(message)

    def check(self, settings: EmailSettings) -> str:
        with self._connect(settings) as smtp:
            smtp.noop()
        return f"SMTP server {settings.smtp_host}:{settings.smtp_port} answers"


CODE_FIELD = "code"
CANNOT_SEND = "We could not send you an email with your code. Please try again later."
WRONG_CODE = "The code you entered is not the one we emailed you. Please check it and try again."
EXPIRED = "That code has expired. Please start again to get a new one."


def _hash(code: str, salt: str) -> str:
    return hashlib.sha256(f"{salt}:{code}".encode()).hexdigest()


def _matches(answer: str, pending: dict, digits: int) -> bool:
    # Only ASCII digits of the right length count: "１２３４５６" is not a code.
    code = answer.replace(" ", "").strip()
    if len(code) != digits or not (code.isascii() and code.isdigit()):
        return False
    return hmac.compare_digest(_hash(code, pending["salt"]), pending["code_hash"])


def _masked(address: str) -> str:
    """``ada@example.test`` -> ``a**@example.test``: enough to recognise, not to harvest."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}{'*' * max(len(local) - 1, 2)}@{domain}"


class EmailModule:
    """The module object the entry point names; its methods are the hooks.

    :param mailer: how messages leave; SMTP (``smtplib``) when not given.
    """

    def __init__(self, mailer: Mailer | None = None) -> None:
        self.mailer = mailer or SmtpMailer()

    def _send_code(self, settings: EmailSettings, address: str, now: float) -> dict:
        """Email a fresh code to ``address``; return what ``verify`` needs to check it."""
        code = "".join(secrets.choice("0123456789") for _ in range(settings.code_digits))
        minutes = settings.code_lifetime_seconds // 60
        message = EmailMessage()
        message["From"] = settings.sender
        message["To"] = address
        message["Subject"] = settings.subject
        message.set_content(
            f"Your login code is {code}\n\n"
            f"It works once, for {minutes} minutes. If you did not try to log in, "
            "change your password: someone else knows it.\n"
        )
        try:
            self.mailer.send(message, settings)
        except (OSError, smtplib.SMTPException) as error:
            # The error names the mail server problem, never the code or the message.
            raise ModuleError(CANNOT_SEND, reason="mail_unavailable", detail=type(error).__name__) from None
        salt = secrets.token_hex(16)
        return {"code_hash": _hash(code, salt), "salt": salt, "expires_at": now + settings.code_lifetime_seconds}

    def _prompt(self, settings: EmailSettings, address: str, message: str) -> Prompt:
        return Prompt(
            message=message,
            instructions=f"We emailed a {settings.code_digits}-digit code to {_masked(address)}. Enter it below.",
            fields=(Field(name=CODE_FIELD, label="Code from the email", kind="number", max_length=settings.code_digits),),
        )

    @hookimpl
    def configure(self) -> ModuleInfo:
        return ModuleInfo(
            name="email",
            friendly_name="Email Codes",
            short_description="Get a one-time code by email each time you log in.",
            description="A short code is emailed to the address on the account at every login.",
            settings_model=EmailSettings,
            contract=">=1,<2",
        )

    @hookimpl
    def activate(self, request: ActivateRequest[EmailSettings]) -> Activation:
        settings = request.settings
        try:
            return Activation(message=self.mailer.check(settings))
        except (OSError, smtplib.SMTPException) as error:
            raise ModuleError(
                f"Cannot reach the SMTP server {settings.smtp_host}:{settings.smtp_port} ({type(error).__name__}).",
                reason="mail_unavailable",
            ) from None

    @hookimpl
    def setup_user(self, request: SetupRequest[EmailSettings]) -> SetupPrompt | SetupComplete:
        settings = request.settings
        if request.answer is None or request.pending is None:
            address = request.user.email
            if "@" not in address:
                raise ModuleError("Your account has no email address to send codes to.", reason="no_address")
            pending = {"address": address, **self._send_code(settings, address, request.now)}
            return SetupPrompt(prompt=self._prompt(settings, address, "Check your email"), pending=pending)
        if request.now >= request.pending["expires_at"]:
            raise ModuleError(EXPIRED, reason="expired")
        if not _matches(str(request.answer.get(CODE_FIELD, "")), dict(request.pending), settings.code_digits):
            raise ModuleError(WRONG_CODE, reason="wrong_code")
        return SetupComplete(state={"address": request.pending["address"]})

    @hookimpl
    def challenge(self, request: ChallengeRequest[EmailSettings]) -> Challenge:
        settings = request.settings
        address = request.state["address"]
        return Challenge(
            prompt=self._prompt(settings, address, "Enter the code we emailed you"),
            pending=self._send_code(settings, address, request.now),
            expires_in=settings.code_lifetime_seconds,
        )

    @hookimpl
    def verify(self, request: VerifyRequest[EmailSettings]) -> Verdict:
        settings = request.settings
        if request.pending is None:
            # No challenge, an expired one, or one already answered: the host hands
            # pending data over once, which is what makes each code single-use.
            return Rejected(reason="no_challenge")
        if request.now >= request.pending["expires_at"]:
            return Rejected(reason="expired", message=EXPIRED)
        if not _matches(str(request.answer.get(CODE_FIELD, "")), dict(request.pending), settings.code_digits):
            return Rejected(reason="wrong_code")
        return Accepted()

    @hookimpl
    def forget_user(self, request: ForgetRequest[EmailSettings]) -> None:
        """Nothing is kept outside secmod's database, so there is nothing to release."""


module = EmailModule()
"""What the entry point ``email = "secmod_email:module"`` loads."""
