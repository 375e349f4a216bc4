"""The fake YubiCloud speaks protocol 2.0 as ykval does (protocols.md §2.2, §2.3, §2.6)."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from yubico_client import Yubico

from secmod_yubikey.testing.soft_yubikey import to_dvorak
from secmod_yubikey.testing.yubicloud_fake import FakeYubiCloud, sign

API_KEY = "AAECAwQFBgcICQoLDA0ODxAREhM="  # bytes 0..19, the worked example's key
NONCE = "abcdefghijklmnopqrstuvwxy"


def parse(body: str) -> dict[str, str]:
    assert body.endswith("\r\n\r\n")
    return dict(line.split("=", 1) for line in body.split("\r\n") if line)


def test_signatures_match_the_worked_example() -> None:
    key = base64.b64decode(API_KEY)
    request = {"id": "42", "nonce": NONCE, "otp": "vvccccfiluijbjdrlciudhibfuettfdgjddnevjfknet"}
    assert sign(request, key) == "uTpL/zXapbzpjIpwuAPy3pQZGjg="
    assert Yubico("42", API_KEY).generate_message_signature("id=42&otp=" + request["otp"] + "&nonce=" + NONCE) == (
        "uTpL/zXapbzpjIpwuAPy3pQZGjg="
    )
    response = {"t": "2026-11-28T08:45:58Z0774", "otp": request["otp"], "nonce": NONCE, "sl": "100", "status": "OK"}
    assert sign(response, key) == "L8I7e9eBLFyY4FJk5ApBu4FtkFQ="


@pytest.fixture
def fake() -> Iterator[FakeYubiCloud]:
    # answer() is the protocol without the HTTP server around it (never started, but
    # its listening socket must still be closed).
    server = FakeYubiCloud({"42": base64.b64decode(API_KEY)})
    yield server
    server.stop()


def signed_request(fake: FakeYubiCloud, otp: str, nonce: str = NONCE, **extra: str) -> dict[str, str]:
    params = {"id": "42", "otp": otp, "nonce": nonce, **extra}
    return {**params, "h": sign(params, fake.clients["42"])}


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"nonce": None}, "MISSING_PARAMETER"),
        ({"timeout": "1.5"}, "MISSING_PARAMETER"),
        ({"sl": "0"}, "MISSING_PARAMETER"),
        ({"otp": "vvcc"}, "BAD_OTP"),
        ({"otp": "a" * 44}, "BAD_OTP"),  # "x" would be Dvorak for "b"
        ({"id": "0"}, "MISSING_PARAMETER"),
        ({"id": "12345678901"}, "MISSING_PARAMETER"),
        ({"nonce": "short"}, "MISSING_PARAMETER"),
        ({"nonce": "with spaces and more than 16"}, "MISSING_PARAMETER"),
        ({"id": "7"}, "NO_SUCH_CLIENT"),
    ],
)
def test_early_errors_are_signed_with_an_empty_key(fake: FakeYubiCloud, change: dict, status: str) -> None:
    key = fake.new_key()
    params = {k: v for k, v in {"id": "42", "otp": key.press(), "nonce": NONCE, **change}.items() if v is not None}
    answer = parse(fake.answer(params))
    assert answer["status"] == status
    assert "otp" not in answer and "nonce" not in answer
    assert answer["h"] == sign(answer, b"") != sign(answer, fake.clients["42"])


def test_signed_statuses_and_echoes(fake: FakeYubiCloud) -> None:
    key = fake.new_key()
    client_key = fake.clients["42"]
    otp = key.press()
    forged = {"id": "42", "otp": otp, "nonce": NONCE, "h": "AAAAAAAAAAAAAAAAAAAAAAAAAAA="}
    bad = parse(fake.answer(forged))
    assert bad["status"] == "BAD_SIGNATURE" and bad["h"] == sign(bad, client_key)
    ok = parse(fake.answer(signed_request(fake, otp, timestamp="1")))
    assert ok["status"] == "OK" and ok["h"] == sign(ok, client_key)
    assert (ok["otp"], ok["nonce"], ok["sessioncounter"], ok["sessionuse"]) == (otp, NONCE, "1", "0")
    assert ok["timestamp"].isdigit() and "timestamp" in ok
    assert list(ok)[:2] == ["h", "t"] and list(ok)[-1] == "status"  # ykval's order
    again = parse(fake.answer(signed_request(fake, otp)))
    assert again["status"] == "REPLAYED_REQUEST" and again["otp"] == otp
    other_nonce = parse(fake.answer(signed_request(fake, otp, nonce="B" * 20)))
    assert other_nonce["status"] == "REPLAYED_OTP" and other_nonce["h"] == sign(other_nonce, client_key)
    stranger = parse(fake.answer(signed_request(fake, "cc" + otp[2:])))
    assert stranger["status"] == "BAD_OTP" and "otp" not in stranger
    dvorak = parse(fake.answer(signed_request(fake, to_dvorak(key.press()).upper())))
    assert dvorak["status"] == "OK"
    fake.store.deactivate(key.public_id)
    assert parse(fake.answer(signed_request(fake, key.press())))["status"] == "BAD_OTP"


def test_forced_statuses_sign_as_ykval_does(fake: FakeYubiCloud) -> None:
    key = fake.new_key()
    for status, signing_key in (("NO_SUCH_CLIENT", b""), ("BACKEND_ERROR", fake.clients["42"])):
        fake.force_status = status
        answer = parse(fake.answer(signed_request(fake, key.press())))
        assert answer["status"] == status and answer["h"] == sign(answer, signing_key)
    fake.force_status = None
    fake.bad_signature = True
    answer = parse(fake.answer(signed_request(fake, key.press())))
    assert answer["status"] == "OK" and answer["h"] != sign(answer, fake.clients["42"])
