"""Test doubles for the YubiKey module: a fake YubiCloud and a software YubiKey.

- :class:`FakeYubiCloud` (``secmod_yubikey.testing.yubicloud_fake``): a Yubico OTP
  validation server (protocol 2.0) on 127.0.0.1, for the real ``yubico_client``. Run it
  by hand with ``python -m secmod_yubikey.testing.yubicloud_fake --port 8080``.
- :class:`SoftYubiKey` (``secmod_yubikey.testing.soft_yubikey``): a key in software
  that types real OTPs; written apart from the module's own decoder on purpose.
"""

from .soft_yubikey import SoftYubiKey
from .yubicloud_fake import FakeYubiCloud, KeyStore

__all__ = ["FakeYubiCloud", "KeyStore", "SoftYubiKey"]
