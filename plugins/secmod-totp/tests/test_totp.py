"""Time-Based Tokens: RFC vectors, the module's rules as properties, and the host flow."""

from __future__ import annotations

import base64
import hashlib

import pyotp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import secmod_totp
from secmod.hookspecs import (
    Audience,
    ChallengeRequest,
    RecoverRequest,
    SetupRequest,
    User,
    VerifyRequest,
    messages,
)
from secmod.host import Enrolled, Outcome

# RFC 6238 appendix B: each algorithm has its own seed (docs/protocols.md §4.2).
SEEDS = {
    "SHA1": b"12345678901234567890",
    "SHA256": b"12345678901234567890123456789012",
    "SHA512": b"1234567890" * 6 + b"1234",
}
RFC6238 = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]
USER = User(id="42", audience=Audience.CLIENT, email="alice@example.com")


def b32(seed: bytes) -> str:
    return base64.b32encode(seed).decode().rstrip("=")


def settings_for(**overrides) -> secmod_totp.TotpSettings:
    return secmod_totp.TotpSettings(**overrides)


def verify(settings, state, code, now):
    return secmod_totp.verify(
        request=VerifyRequest(settings=settings, user=USER, now=now, answer={"code": code}, state=state)
    )


@pytest.mark.parametrize("algorithm", ["SHA1", "SHA256", "SHA512"])
@pytest.mark.parametrize(("timestamp", "sha1", "sha256", "sha512"), RFC6238)
def test_rfc6238_vectors_are_accepted_at_their_time(algorithm, timestamp, sha1, sha256, sha512):
    expected = {"SHA1": sha1, "SHA256": sha256, "SHA512": sha512}[algorithm]
    settings = settings_for(digits=8, algorithm=algorithm, window=0)
    state = {"secret": b32(SEEDS[algorithm]), "last_step": -1, "drift": 0}
    assert verify(settings, state, expected, timestamp).accepted
    # One step later with no window, the same code is refused.
    assert not verify(settings, state, expected, timestamp + 30).accepted


secrets_ = st.binary(min_size=20, max_size=64).map(b32)
times = st.integers(min_value=10_000, max_value=4_000_000_000)


@settings(max_examples=150, deadline=None)  # pyotp's HMACs vary with the machine's load
@given(secret=secrets_, now=times, skew_steps=st.integers(-4, 4), window=st.integers(0, 3))
def test_accepted_exactly_when_the_device_step_is_within_the_window(secret, now, skew_steps, window):
    settings = settings_for(window=window, skew_search_minutes=0)
    device_time = now + skew_steps * 30
    code = pyotp.TOTP(secret).at(device_time)
    result = verify(settings, {"secret": secret, "last_step": -1, "drift": 0}, code, now)
    within = abs(skew_steps) <= window
    # A neighbouring step can share the code by chance (1 in a million); only then may they differ.
    collides = any(pyotp.TOTP(secret).at(now + k * 30) == code for k in range(-window, window + 1))
    assert result.accepted == (within or collides)


@settings(max_examples=100, deadline=None)
@given(secret=secrets_, now=times, offsets=st.lists(st.integers(-1, 1), min_size=1, max_size=6))
def test_never_accepts_a_step_at_or_before_the_last_accepted(secret, now, offsets):
    settings = settings_for()
    state = {"secret": secret, "last_step": -1, "drift": 0}
    accepted_steps = []
    for offset in offsets:
        code = pyotp.TOTP(secret).at(now + offset * 30)
        result = verify(settings, state, code, now)
        if result.accepted:
            assert result.state["last_step"] > state["last_step"]
            accepted_steps.append(result.state["last_step"])
            state = dict(result.state)
        # Whatever happened, submitting the same code again is refused.
        assert not verify(settings, state, code, now).accepted
    assert accepted_steps == sorted(set(accepted_steps))


@settings(max_examples=60, deadline=None)
@given(secret=secrets_, start=times, moves=st.lists(st.integers(-1, 1), min_size=1, max_size=25))
def test_drift_learning_follows_a_device_whose_clock_wanders(secret, start, moves):
    """A device whose clock wanders a step at a time between logins is always accepted,
    and the learned drift converges on its real offset (up to the configured bound)."""
    settings = settings_for(window=1, max_drift_minutes=10)
    bound = settings.max_drift_minutes * 60 // settings.period
    totp = pyotp.TOTP(secret)
    state = {"secret": secret, "last_step": -1, "drift": 0}
    offset, now = 0, start
    for move in moves:
        offset = max(-bound, min(bound, offset + move))
        now += 60
        result = verify(settings, state, totp.at(now + offset * 30), now)
        assert result.accepted
        state = dict(result.state)
        assert state["drift"] == offset


@pytest.mark.parametrize("period", [30, 60])
def test_period_boundaries(period):
    secret = pyotp.random_base32()
    settings = settings_for(period=period, window=0)
    totp = pyotp.TOTP(secret, interval=period)
    boundary = 1_800_000_000 - (1_800_000_000 % period)
    state = {"secret": secret, "last_step": -1, "drift": 0}
    assert verify(settings, state, totp.at(boundary), boundary).accepted
    assert verify(settings, state, totp.at(boundary), boundary + period - 1).accepted
    assert not verify(settings, state, totp.at(boundary), boundary + period).accepted
    assert not verify(settings, state, totp.at(boundary), boundary - 1).accepted


def test_codes_are_cleaned_but_must_have_the_right_length():
    secret = pyotp.random_base32()
    now = 1_800_000_000
    state = {"secret": secret, "last_step": -1, "drift": 0}
    code = pyotp.TOTP(secret).at(now)
    assert verify(settings_for(), state, f" {code[:3]} {code[3:]} ", now).accepted
    assert verify(settings_for(), state, code[:5], now).reason == "malformed"
    assert verify(settings_for(), state, "１２３４５６", now).reason == "malformed"  # full-width digits


def test_a_wrong_clock_is_diagnosed_but_never_accepted():
    secret = pyotp.random_base32()
    now = 1_800_000_000
    behind = pyotp.TOTP(secret).at(now - 4 * 60 - 30)
    result = verify(settings_for(), {"secret": secret, "last_step": -1, "drift": 0}, behind, now)
    assert not result.accepted
    assert "4 min 30 s behind" in result.detail
    assert "2027-01-15 08:00:00 UTC" in result.detail


def test_setup_issues_a_160_bit_secret_and_a_local_qr_code():
    step = secmod_totp.setup_user(request=SetupRequest(settings=settings_for(issuer="Example Co"), user=USER, now=1_800_000_000))
    provisioning = step.prompt.provisioning
    assert len(base64.b32decode(provisioning.secret)) == 20 and "=" not in provisioning.secret
    assert provisioning.uri == pyotp.TOTP(provisioning.secret).provisioning_uri(name=USER.email, issuer_name="Example Co")
    assert pyotp.parse_uri(provisioning.uri).secret == provisioning.secret
    assert provisioning.qr_svg.startswith("<svg") and provisioning.qr_terminal.count("\n") > 10
    assert provisioning.secret not in repr(step)


def test_resync_finds_two_consecutive_codes_far_away():
    secret = pyotp.random_base32()
    now = 1_800_000_000
    totp = pyotp.TOTP(secret)
    device = now + 3 * 3600  # three hours fast
    request = RecoverRequest(
        settings=settings_for(), user=USER, now=now, method="resync",
        answer={"code": totp.at(device), "next_code": totp.at(device + 30)},
        state={"secret": secret, "last_step": -1, "drift": 0},
    )
    result = secmod_totp.recover(request=request)
    assert result.accepted and result.state["drift"] == 3 * 120 + 1
    assert secmod_totp.recover(request=RecoverRequest(
        settings=settings_for(), user=USER, now=now, method="resync",
        answer={"code": totp.at(device), "next_code": totp.at(device + 90)}, state=request.state,
    )).reason == "resync_failed"


def test_challenge_asks_for_the_code_in_whmcs_words():
    challenge = secmod_totp.challenge(request=ChallengeRequest(settings=settings_for(digits=8), user=USER, now=0))
    assert challenge.prompt.message == "Enter authentication code"
    assert challenge.prompt.fields[0].max_length == 8 and challenge.pending is None


def test_settings_refuse_bad_values():
    with pytest.raises(ValueError, match="digits"):
        settings_for(digits=7)
    with pytest.raises(ValueError, match="period"):
        settings_for(period=300)
    with pytest.raises(ValueError, match="algorithm"):
        settings_for(algorithm="MD5")


def test_full_flow_through_the_host(make_host, fake_clock):
    host = make_host({"totp": {"issuer": "Example Co", "algorithm": "SHA256", "digits": 8}})
    started = host.begin_setup(USER, "totp")
    totp = pyotp.TOTP(started.prompt.provisioning.secret, digits=8, digest=hashlib.sha256)
    wrong = host.continue_setup(USER, started.setup_id, {"code": "00000000"})
    assert wrong.error.startswith("The code you entered did not match what was expected.")
    enrolled = host.continue_setup(USER, started.setup_id, {"code": totp.at(fake_clock.now)})
    assert isinstance(enrolled, Enrolled) and len(enrolled.backup_codes) == 1
    # The enrolment code itself cannot log in (WHMCS records it as used).
    used = host.verify(USER, {"code": totp.at(fake_clock.now)})
    assert (used.reason, used.message) == ("already_used", messages.CODE_ALREADY_USED)
    fake_clock.advance(30)
    assert host.verify(USER, {"code": totp.at(fake_clock.now)}).outcome is Outcome.ACCEPTED
    fake_clock.advance(30)
    result = host.recover(USER, {"code": totp.at(fake_clock.now), "next_code": totp.at(fake_clock.now + 30)}, method="resync")
    assert result.accepted
