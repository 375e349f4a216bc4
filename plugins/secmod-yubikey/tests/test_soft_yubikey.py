"""The software YubiKey and both OTP decoders against the published test vectors.

secmod_yubikey.testing.soft_yubikey (used by the fake server) and secmod_yubikey.otp (used by
local mode) are separate implementations; each must agree with the vectors of
docs/protocols.md §3, so neither can be "right" only by agreeing with the other.
"""

from __future__ import annotations

import pytest

from secmod_yubikey.testing.soft_yubikey import (
    DVORAK,
    MODHEX,
    CRC_RESIDUE,
    SoftYubiKey,
    TokenError,
    crc16,
    decode_otp,
    encode_token,
    modhex_decode,
    modhex_encode,
    to_dvorak,
)
from secmod_yubikey.otp import OtpError, decrypt_token, otp_candidates

# (AES key, OTP, public id hex, uid hex, usage, timestamp, session, random, crc)
VECTORS = [
    ("ecde18dbe76fbd0c33330f1c354871db", "dteffujehknhfjbrjnlnldnhcujvddbikngjrtgh",
     "2d344e83", "8792ebfe26cc", 19, 0x00C230, 17, 0x9FC8, 0xC823),
    ("e6cdae77f55ac1db4acd3b7fd8151334", "khdnrutkdendbrbghdjcidkhveuhbrcuublkdjfttcrk",
     "962bced923b2", "4e8308389518", 7, 1768874, 0, 199, 50219),
    (b"0123456789abcdef".hex(), "cclngiuvttkhthcilurtkerbjnnkljfkjccklkhl",
     None, "0123456789ab", 5, 0x0153F8, 0, 0x1234, None),
    ("00" * 16, "cbcdcecfcgchkgnhckifdncgiflkcediddgrldhuubth",
     "010203040506", "0708090a0b0c", 1, None, 1, None, None),
]


@pytest.mark.parametrize(("key", "otp", "public_hex", "uid", "usage", "tstp", "session", "rnd", "crc"), VECTORS)
def test_decode_matches_the_vectors(key, otp, public_hex, uid, usage, tstp, session, rnd, crc) -> None:
    token = decode_otp(otp, bytes.fromhex(key))
    assert token.private_id.hex() == uid
    assert (token.usage, token.session) == (usage, session)
    if public_hex is not None:
        assert modhex_decode(token.public_id).hex() == public_hex
    for expected, actual in ((tstp, token.timestamp), (rnd, token.random), (crc, token.crc)):
        if expected is not None:
            assert actual == expected


@pytest.mark.parametrize(("key", "otp", "public_hex", "uid", "usage", "tstp", "session", "rnd", "crc"), VECTORS)
def test_encode_reproduces_the_vectors(key, otp, public_hex, uid, usage, tstp, session, rnd, crc) -> None:
    decoded = decode_otp(otp, bytes.fromhex(key))
    token = encode_token(bytes.fromhex(key), bytes.fromhex(uid), usage, decoded.timestamp, session, decoded.random)
    assert decoded.public_id + modhex_encode(token) == otp


@pytest.mark.parametrize(("key", "otp", "public_hex", "uid", "usage", "tstp", "session", "rnd", "crc"), VECTORS)
def test_module_decoder_matches_the_vectors(key, otp, public_hex, uid, usage, tstp, session, rnd, crc) -> None:
    token = decrypt_token(otp, bytes.fromhex(key), bytes.fromhex(uid))
    assert token.counters == (usage, session)
    if tstp is not None:
        assert token.timestamp == tstp
    with pytest.raises(OtpError):
        decrypt_token(otp, bytes.fromhex(key), bytes(6))  # another private id
    with pytest.raises(OtpError):
        decrypt_token(otp, bytes(range(16)) if key != "00" * 16 else b"\x01" * 16, bytes.fromhex(uid))


def test_modhex_and_crc_basics() -> None:
    assert modhex_encode(bytes.fromhex("2d344e83")) == "dteffuje"
    assert modhex_decode("dteffuje") == bytes.fromhex("2d344e83")
    with pytest.raises(TokenError):
        modhex_decode("abc1")
    body = bytes(range(14))
    whole = body + (~crc16(body) & 0xFFFF).to_bytes(2, "little")
    assert crc16(whole) == CRC_RESIDUE


def test_a_wrong_key_or_a_typo_does_not_decode() -> None:
    key = SoftYubiKey()
    otp = key.press()
    with pytest.raises(TokenError):
        decode_otp(otp, bytes(16))
    typo = otp[:-1] + ("c" if otp[-1] != "c" else "b")
    with pytest.raises(TokenError):
        decode_otp(typo, key.aes_key)
    with pytest.raises(TokenError):
        decode_otp(otp, key.aes_key, private_id=bytes(6))


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_press_and_plug_in_move_the_counters_as_a_yubikey_does() -> None:
    clock = _Clock()
    key = SoftYubiKey(usage=41, clock=clock)
    first = decode_otp(key.press(), key.aes_key, private_id=key.private_id)
    assert (first.usage, first.session) == (42, 0)  # the first press plugs it in
    clock.now += 2.0
    second = decode_otp(key.press(), key.aes_key)
    assert (second.usage, second.session) == (42, 1)
    assert (second.timestamp - first.timestamp) % (1 << 24) == 16  # 8 Hz
    key.plug_in()
    third = decode_otp(key.press(), key.aes_key)
    assert (third.usage, third.session) == (43, 0)
    assert first.counters < second.counters < third.counters


def test_session_counter_wraps_into_the_usage_counter() -> None:
    key = SoftYubiKey(usage=0x7FFE)
    key.plug_in()
    key.session = 0xFF
    assert decode_otp(key.press(), key.aes_key).counters == (0x7FFF, 0xFF)
    # usage stops at 0x7FFF; the session starts again
    assert decode_otp(key.press(), key.aes_key).counters == (0x7FFF, 0)


def test_dvorak_output_maps_back_to_the_same_otp() -> None:
    key = SoftYubiKey(dvorak=True)
    typed = key.press()
    assert set(typed) <= set(DVORAK)
    otp = typed.translate(str.maketrans(DVORAK, MODHEX))
    assert to_dvorak(otp) == typed
    assert decode_otp(otp, key.aes_key).counters == (1, 0)
    # Caps lock on, too. An OTP that does not use all 16 keys can read as modhex under
    # more than one layout; the real one is always among the readings.
    assert otp in otp_candidates(typed.upper())


def test_public_id_is_validated() -> None:
    with pytest.raises(TokenError):
        SoftYubiKey(public_id="vvxyz")
    with pytest.raises(ValueError):
        SoftYubiKey(public_id="v" * 18)
