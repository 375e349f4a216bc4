"""Shared pieces of the host tests: people, a small in-process module, enrolment.

Importable as ``support`` (pytest ``pythonpath`` has ``tests``)."""

from __future__ import annotations

import hmac

import pyotp

from secmod.hookspecs import (
    Accepted,
    Audience,
    Challenge,
    Field,
    ModuleInfo,
    ModuleSettings,
    Prompt,
    Rejected,
    SetupComplete,
    User,
    hookimpl,
)

ALICE = User(id="alice", audience=Audience.CLIENT, email="alice@example.com")
BOB = User(id="bob", audience=Audience.CLIENT, email="bob@example.com")
ADMIN = User(id="root", audience=Audience.ADMIN, email="root@example.com")


class PinSettings(ModuleSettings):
    clients: bool = True
    admins: bool = True


class PinModule:
    """A module with server-side challenge data: the answer must echo the nonce and the PIN.

    It stands in for Duo-like modules in host tests; ``explode`` makes verify crash.
    """

    def __init__(self) -> None:
        self.explode = False
        self.forgotten: list[str] = []
        self.seen_pending: list[object] = []

    @hookimpl
    def configure(self):
        return ModuleInfo(name="pin", friendly_name="PIN", short_description="A PIN and a nonce.",
                          settings_model=PinSettings)

    @hookimpl
    def setup_user(self, request):
        return SetupComplete(state={"pin": "4711"}, message="PIN set")

    @hookimpl
    def challenge(self, request):
        return Challenge(prompt=Prompt(message="PIN", fields=(Field(name="pin", label="PIN"),)),
                         pending={"nonce": "n-" + request.user.id}, expires_in=60)

    @hookimpl
    def verify(self, request):
        if self.explode:
            raise RuntimeError(f"boom with {request.answer.get('pin')}")
        self.seen_pending.append(request.pending)
        if request.pending is None:
            return Rejected(reason="no_challenge", counts=False)
        if request.answer.get("nonce") != request.pending["nonce"]:
            return Rejected(reason="wrong_nonce")
        if hmac.compare_digest(request.answer.get("pin", ""), request.state["pin"]):
            return Accepted()
        return Rejected(reason="wrong_pin")

    @hookimpl
    def forget_user(self, request):
        self.forgotten.append(request.user.id)


def enrol_totp(host, user, clock):
    """Enrol ``user`` with TOTP; returns (pyotp.TOTP, backup codes). Leaves the clock a step on."""
    started = host.begin_setup(user, "totp")
    totp = pyotp.TOTP(started.prompt.provisioning.secret)
    enrolled = host.continue_setup(user, started.setup_id, {"code": totp.at(clock.now)})
    clock.advance(30)
    return totp, enrolled.backup_codes


class GuessModule:
    """A static PIN, judged by counting: stands in for any code a brute-forcer guesses.

    ``judged`` records every answer the host let the module see, in order, so a test can
    tell how many guesses were actually judged, whatever the host answered.
    """

    def __init__(self, pin: str = "4711") -> None:
        import threading

        self.pin = pin
        self.judged: list[str] = []
        self._lock = threading.Lock()

    @hookimpl
    def configure(self):
        return ModuleInfo(name="guess", friendly_name="Guess", short_description="A static PIN.",
                          settings_model=PinSettings)

    @hookimpl
    def setup_user(self, request):
        return SetupComplete(state={"pin": self.pin})

    @hookimpl
    def challenge(self, request):
        return Challenge(prompt=Prompt(message="PIN", fields=(Field(name="pin", label="PIN"),)))

    @hookimpl
    def verify(self, request):
        with self._lock:
            self.judged.append(request.answer.get("pin", ""))
        if hmac.compare_digest(request.answer.get("pin", ""), request.state["pin"]):
            return Accepted()
        return Rejected(reason="wrong_pin")
