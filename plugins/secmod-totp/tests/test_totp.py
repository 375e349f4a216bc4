"""Time-Based Tokens: RFC vectors, the module's rules as properties, and the host flow."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pyotp
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import secmod_totp
from secmod.hookspecs import Audience, ChallengeRequest, RecoverRequest, SetupRequest, User, VerifyRequest
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


def test_setup_issues_a_160_bit_secret_and_leaves_the_qr_code_to_the_host():
    step = secmod_totp.setup_user(request=SetupRequest(settings=settings_for(issuer="Example Co"), user=USER, now=1_800_000_000))
    provisioning = step.prompt.provisioning
    assert len(base64.b32decode(provisioning.secret)) == 20 and "=" not in provisioning.secret
    assert provisioning.uri == pyotp.TOTP(provisioning.secret).provisioning_uri(name=USER.email, issuer_name="Example Co")
    assert pyotp.parse_uri(provisioning.uri).secret == provisioning.secret
    assert (provisioning.qr_svg, provisioning.qr_terminal) == ("", "")  # secmod.host.qr draws them
    assert provisioning.secret not in repr(step)


def test_setup_names_the_hosts_issuer_when_the_module_sets_none():
    request = SetupRequest(settings=settings_for(), user=USER, now=1_800_000_000, issuer="Host Co")
    assert pyotp.parse_uri(secmod_totp.setup_user(request=request).prompt.provisioning.uri).issuer == "Host Co"


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
    assert host.verify(USER, {"code": totp.at(fake_clock.now)}).reason == "replayed"
    fake_clock.advance(30)
    assert host.verify(USER, {"code": totp.at(fake_clock.now)}).outcome is Outcome.ACCEPTED
    fake_clock.advance(30)
    result = host.recover(USER, {"code": totp.at(fake_clock.now), "next_code": totp.at(fake_clock.now + 30)}, method="resync")
    assert result.accepted


# -- the clock-skew diagnosis never helps a guesser (issue 11.4) ----------------------
#
# The oracle below is RFC 4226 §5.3 / RFC 6238 §4 written out, so the properties do not
# check pyotp against itself.

HASHES = {"SHA1": "sha1", "SHA256": "sha256", "SHA512": "sha512"}


def oracle_code(key: bytes, step: int, digits: int, algorithm: str) -> str:
    mac = hmac.new(key, step.to_bytes(8, "big"), HASHES[algorithm]).digest()
    offset = mac[-1] & 0x0F
    value = int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def test_a_guess_matching_a_future_step_is_neither_reported_nor_told_apart():
    """Attack: a guess that happens to be a code of the next minutes must look exactly
    like any other wrong code; otherwise the guesser learns when to send it again."""
    secret = pyotp.random_base32()
    now = 1_800_000_000
    state = {"secret": secret, "last_step": -1, "drift": 0}
    future = pyotp.TOTP(secret).at(now + 4 * 60)
    result = verify(settings_for(), state, future, now)
    assert not result.accepted
    assert (result.reason, result.detail) == ("wrong_code", "")
    assert "ahead" not in repr(result)


def test_a_diagnosed_code_is_never_accepted_afterwards():
    secret = pyotp.random_base32()
    now = 1_800_000_000
    state = {"secret": secret, "last_step": -1, "drift": 0}
    behind = pyotp.TOTP(secret).at(now - 3 * 60)
    assert "3 min 0 s behind" in verify(settings_for(), state, behind, now).detail
    for later in range(now, now + 30 * 60, 15):
        assert not verify(settings_for(), state, behind, later).accepted


def test_the_diagnosis_stays_below_the_learned_window():
    """With a learned drift (device 5 min behind), a code 1 step ahead of that window is
    a future code for this device: not diagnosed, since it will be accepted soon."""
    secret = pyotp.random_base32()
    now = 1_800_000_000
    state = {"secret": secret, "last_step": -1, "drift": -10}
    soon = pyotp.TOTP(secret).at(now - 8 * 30)  # window is steps -11..-9
    result = verify(settings_for(window=1), state, soon, now)
    assert (result.accepted, result.detail) == (False, "")
    assert verify(settings_for(window=1), state, soon, now + 30).accepted


@settings(max_examples=120, deadline=None)  # HMACs slow down when the machine is busy
@given(
    data=st.data(),
    digits=st.sampled_from([6, 8]),
    period=st.sampled_from([15, 30, 60, 90, 120]),
    algorithm=st.sampled_from(["SHA1", "SHA256", "SHA512"]),
    window=st.integers(0, 3),
    skew_minutes=st.integers(1, 20),
    drift=st.integers(-6, 6),
    key=st.binary(min_size=20, max_size=64),
    now=times,
)
def test_verify_with_the_skew_search_on_matches_the_rfc_oracle(
    data, digits, period, algorithm, window, skew_minutes, drift, key, now
):
    """Accepted exactly when the code is one of a step inside the window and after the
    last accepted one; a diagnosis only ever names a step that can never be accepted."""
    settings = settings_for(digits=digits, period=period, algorithm=algorithm, window=window,
                            skew_search_minutes=skew_minutes, max_drift_minutes=10)
    radius = skew_minutes * 60 // period
    current = now // period
    device_step = current + data.draw(st.integers(-radius - 3, radius + 3), label="device offset")
    last_step = current + data.draw(st.integers(-radius - 3, 2), label="last accepted offset")
    code = oracle_code(key, device_step, digits, algorithm)
    state = {"secret": b32(key), "last_step": last_step, "drift": drift}

    result = verify(settings, state, code, now)

    center = current + drift
    acceptable = [s for s in range(center - window, center + window + 1) if s > last_step]
    assert result.accepted == any(oracle_code(key, s, digits, algorithm) == code for s in acceptable)
    if result.accepted:
        return
    in_window = any(oracle_code(key, s, digits, algorithm) == code for s in range(center - window, center + window + 1))
    # A diagnosis exactly when the code is of a step below everything verify accepts
    # now, within the search: after the next accepted code last_step is above it.
    below = range(max(current - radius, 0), center - window)
    diagnosed = not in_window and any(oracle_code(key, s, digits, algorithm) == code for s in below)
    assert bool(result.detail) == diagnosed
    if diagnosed:
        for later in range(1, radius + window + 3):
            assert not verify(settings, state, code, now + later * period).accepted


# -- resync, for a clock behind as well as ahead (issue 9.3) ---------------------------


def resync(state, first, second, now, **overrides):
    return secmod_totp.recover(request=RecoverRequest(
        settings=settings_for(**overrides), user=USER, now=now, method="resync",
        answer={"code": first, "next_code": second}, state=state,
    ))


@pytest.mark.parametrize("offset_minutes", [-5, -90, 5, 90])
def test_resync_works_behind_and_ahead_when_the_codes_are_new(offset_minutes):
    secret = pyotp.random_base32()
    now = 1_800_000_000
    totp = pyotp.TOTP(secret)
    device = now + offset_minutes * 60
    state = {"secret": secret, "last_step": now // 30 - 400, "drift": 0}  # last login hours ago
    result = resync(state, totp.at(device), totp.at(device + 30), now)
    assert result.accepted
    assert result.state["last_step"] == device // 30 + 1
    assert result.state["drift"] == offset_minutes * 2 + 1
    # The device's next code then logs in; the resync codes do not.
    after = dict(result.state)
    assert not verify(settings_for(), after, totp.at(device + 30), now + 1).accepted
    assert verify(settings_for(), after, totp.at(device + 60), now + 30).accepted


def test_resync_with_codes_older_than_the_last_accepted_one_says_so():
    """A phone 5 minutes behind, right after enrolling: its codes were all used up by the
    enrolment's code in time order, so they are refused with a reason of their own."""
    secret = pyotp.random_base32()
    now = 1_800_000_000
    totp = pyotp.TOTP(secret)
    state = {"secret": secret, "last_step": now // 30, "drift": 0}  # enrolled just now
    device = now - 5 * 60
    result = resync(state, totp.at(device), totp.at(device + 30), now)
    assert not result.accepted
    assert result.reason == "resync_codes_too_old"
    assert "older than the last code" in result.message
    assert "5 min" in result.message
    assert result.counts is False  # two consecutive right codes: the person holds the device
    # A wrong pair is still just a failed resync, with the host's wording.
    wrong = resync(state, totp.at(device), totp.at(device + 90), now)
    assert (wrong.reason, wrong.message) == ("resync_failed", "")


def test_resync_refuses_a_first_code_that_was_already_used():
    secret = pyotp.random_base32()
    now = 1_800_000_000
    totp = pyotp.TOTP(secret)
    state = {"secret": secret, "last_step": now // 30, "drift": 0}
    result = resync(state, totp.at(now), totp.at(now + 30), now)
    assert (result.accepted, result.reason) == (False, "resync_codes_too_old")
    assert resync(state, totp.at(now + 30), totp.at(now + 60), now).accepted


@settings(max_examples=60, deadline=None)
@given(
    digits=st.sampled_from([6, 8]),
    period=st.sampled_from([15, 30, 60]),
    algorithm=st.sampled_from(["SHA1", "SHA256", "SHA512"]),
    key=st.binary(min_size=20, max_size=40),
    now=times,
    device_offset=st.integers(-200, 200),
    last_offset=st.integers(-250, 5),
)
def test_resync_matches_the_rfc_oracle(digits, period, algorithm, key, now, device_offset, last_offset):
    overrides = {"digits": digits, "period": period, "algorithm": algorithm, "resync_search_minutes": 120}
    current = now // period
    step, last = current + device_offset, current + last_offset
    assume(step >= 0)  # no device shows a code from before 1970
    state = {"secret": b32(key), "last_step": last, "drift": 0}
    first, second = (oracle_code(key, s, digits, algorithm) for s in (step, step + 1))
    result = resync(state, first, second, now, **overrides)
    radius = 120 * 60 // period
    if abs(device_offset) > radius:
        return  # outside the search, so not asserted
    pairs = [p for p in range(max(current - radius, 0), current + radius + 1)
             if oracle_code(key, p, digits, algorithm) == first
             and oracle_code(key, p + 1, digits, algorithm) == second]
    newer = [p for p in pairs if p > last]
    if newer:
        assert result.accepted and result.state["last_step"] - 1 in newer
    else:
        assert (result.accepted, result.reason) == (False, "resync_codes_too_old")


def test_the_secret_is_decoded_once_per_request_not_per_step(monkeypatch):
    """The skew search and resync compute many steps; decoding costs more than the HMAC."""
    decodes = []
    real = base64.b32decode
    monkeypatch.setattr(base64, "b32decode", lambda *a, **k: decodes.append(1) or real(*a, **k))
    secret = pyotp.random_base32()
    now = 1_800_000_000
    state = {"secret": secret, "last_step": -1, "drift": 0}
    assert not verify(settings_for(skew_search_minutes=60), state, "000000", now).accepted
    assert len(decodes) == 1
    decodes.clear()
    assert not resync(state, "000000", "000001", now, resync_search_minutes=60).accepted
    assert len(decodes) == 1


def test_resync_through_the_host_says_why_old_codes_are_refused(make_host, fake_clock):
    """Right after enrolling, a phone 5 minutes behind: the host shows the module's reason
    and message, and the refusal costs no attempt."""
    host = make_host({"totp": {}})
    started = host.begin_setup(USER, "totp")
    totp = pyotp.TOTP(started.prompt.provisioning.secret)
    assert isinstance(host.continue_setup(USER, started.setup_id, {"code": totp.at(fake_clock.now)}), Enrolled)
    behind = fake_clock.now - 5 * 60
    result = host.recover(USER, {"code": totp.at(behind), "next_code": totp.at(behind + 30)}, method="resync")
    assert (result.outcome, result.reason) == (Outcome.REJECTED, "resync_codes_too_old")
    assert "older than the last code accepted" in result.message and result.attempts_left is None
    fake_clock.advance(30)
    ahead = fake_clock.now + 5 * 60
    assert host.recover(USER, {"code": totp.at(ahead), "next_code": totp.at(ahead + 30)}, method="resync").accepted
