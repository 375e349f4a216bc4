"""The conformance driver of TOTP, which plays an authenticator app.

Drivers of modules with a provider to fake live with their module:
``secmod_duo.testing.DuoDriver``, and the YubiKey driver in that package's tests.

They are written from the protocols, not from the modules' code (the TOTP driver
computes RFC 6238 codes itself), so a mistake shared by a module and its driver
cannot hide.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from typing import Any

from secmod.hookspecs import Prompt, RecoveryMethod, User

from .clock import FakeClock
from .contract import ModuleDriver

__all__ = ["TotpDriver", "totp_code"]


def totp_code(secret: str, at: float, *, digits: int = 6, period: int = 30, digest: str = "sha1") -> str:
    """The RFC 6238 code of base32 ``secret`` at time ``at`` (RFC 4226 §5.3 truncation)."""
    key = base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))
    mac = hmac.new(key, struct.pack(">Q", int(at // period)), getattr(hashlib, digest)).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


class TotpDriver(ModuleDriver):
    """An authenticator app: scans the secret at enrolment, then types the current code.

    Every correct answer waits for the next time step first (by moving the fake
    clock), as a person must: TOTP accepts each step's code once.
    """

    name = "totp"

    def __init__(self, clock: FakeClock, *, period: int = 30, digits: int = 6) -> None:
        self.clock = clock
        self.period = period
        self.digits = digits
        self.secret: str | None = None

    def settings(self) -> dict[str, Any]:
        return {"period": self.period, "digits": self.digits}

    def _code(self, at: float) -> str:
        assert self.secret is not None, "the app has not scanned a secret yet"
        return totp_code(self.secret, at, digits=self.digits, period=self.period)

    def answer_setup(self, prompt: Prompt, user: User) -> dict[str, str]:
        assert prompt.provisioning is not None, "a TOTP enrolment shows the secret"
        self.secret = prompt.provisioning.secret
        return {"code": self._code(self.clock())}

    def answer_challenge(self, prompt: Prompt, user: User) -> dict[str, str]:
        self.clock.advance(self.period)
        return {"code": self._code(self.clock())}

    def wrong_answer(self, prompt: Prompt, user: User) -> dict[str, str]:
        if self.secret is None:  # asked before any enrolment: any code is wrong
            return {"code": "0" * self.digits}
        # Not the code of any step the module might still accept, nor a recent one.
        near = {self._code(self.clock() + step * self.period) for step in range(-30, 31)}
        candidate = int(self._code(self.clock()))
        while str(candidate).zfill(self.digits) in near:
            candidate = (candidate + 1) % 10**self.digits
        return {"code": str(candidate).zfill(self.digits)}

    def answer_recovery(self, method: RecoveryMethod, user: User) -> dict[str, str]:
        """``resync`` as a person does it: the code shown now, then, once the app shows
        the next one, that one; the answer is sent when the second code appears."""
        assert method.name == "resync", f"the TOTP driver knows no recovery method {method.name!r}"
        self.clock.advance(self.period)
        first = self._code(self.clock())
        self.clock.advance(self.period)
        return {"code": first, "next_code": self._code(self.clock())}

    def wrong_recovery_answer(self, method: RecoveryMethod, user: User) -> dict[str, str]:
        wrong = self.wrong_answer(Prompt(message=""), user)["code"]
        # Two different codes, neither near now; a module checking one of them still refuses.
        other = str((int(wrong) + 1) % 10**self.digits).zfill(self.digits)
        near = {self._code(self.clock() + step * self.period) for step in range(-30, 31)}
        while other in near or other == wrong:
            other = str((int(other) + 1) % 10**self.digits).zfill(self.digits)
        return {"code": wrong, "next_code": other}
