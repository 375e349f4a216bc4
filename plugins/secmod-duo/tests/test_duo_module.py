"""The Duo module through a real Host and the real duo_universal client, against the fake.

Nothing in duo_universal is patched: the module's DuoClient runs the library's own
methods with a timeout of its own, and the library module is checked to stay as it is.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
import warnings
from importlib import metadata

import duo_universal.client
import pytest
import requests

import secmod_duo
import jwt
from secmod.hookspecs import (
    ActivateRequest,
    Audience,
    ChallengeRequest,
    ModuleError,
    ProviderUnavailable,
    User,
    VerifyRequest,
    messages,
)
from secmod.host import Enrolled, LoginStep, ModuleUnavailable, Outcome
from secmod_duo.testing.fake import closed_port

ALICE = User(id="1", audience=Audience.CLIENT, email="alice@example.com")
BOB = User(id="2", audience=Audience.CLIENT, email="bob@example.com")
WRONG_CLIENT = messages.WRONG_FACTOR_CLIENT


def enrol(host, user=ALICE):
    assert isinstance(host.begin_setup(user, "duo"), Enrolled)


def login(host, fake, user=ALICE):
    """Start a challenge and come back from Duo: the challenge id and the callback query."""
    started = host.begin_challenge(user)
    return started.challenge_id, fake.come_back(started.prompt.redirect_url)


def audit(host, user=ALICE):
    return [(e.event, e.outcome, e.reason) for e in reversed(host.audit_events(user=user))]


def test_the_package_registers_the_duo_entry_point():
    (entry,) = [ep for ep in metadata.entry_points(group="secmod.modules") if ep.name == "duo"]
    assert entry.value == "secmod_duo"
    info = secmod_duo.configure()
    assert (info.name, info.friendly_name, info.redirects) == ("duo", "Duo Security", True)
    assert info.short_description == "Get codes via Duo Push, SMS or Phone Callback."


# -- activate -----------------------------------------------------------------------

def test_activate_runs_the_health_check(duo_host, fake):
    host = duo_host()
    assert "health check passed" in host.activate("duo").message
    assert fake.calls["health_check"] == 1


@pytest.mark.parametrize(
    ("mode", "words"),
    [
        ("fail", "reported a problem: fake Duo says it is unhealthy"),
        ("invalid_client", "refused the Client ID or Client Secret (invalid_client"),
        ("html_500", "error page that is not Duo's JSON"),
        ("drop", "could not connect"),
    ],
)
def test_activate_refuses_when_the_health_check_fails(duo_host, fake, mode, words):
    host = duo_host()
    fake.health = mode
    with pytest.raises(ModuleUnavailable) as caught:
        host.activate("duo")
    message = str(caught.value)
    assert message.startswith("Duo Security: health check failed: ")
    assert words in message
    assert fake.client_secret not in message


def test_activate_with_a_wrong_secret_says_duo_refused_it(duo_host, fake):
    host = duo_host(client_secret="W" * 40)
    with pytest.raises(ModuleUnavailable, match=r"refused the Client ID or Client Secret \(invalid_client"):
        host.activate("duo")


def test_activate_when_duo_is_down(duo_host, fake):
    host = duo_host(api_hostname=f"127.0.0.1:{closed_port()}")
    with pytest.raises(ModuleUnavailable, match=r"could not connect to 127\.0\.0\.1:\d+"):
        host.activate("duo")


def test_activate_with_duos_pinned_cas_refuses_the_test_certificate(duo_host, fake):
    # Without ca_file the client trusts only Duo's own CAs (protocols.md §0.5).
    host = duo_host(ca_file=None)
    with pytest.raises(ModuleUnavailable, match="TLS certificate of .* could not be verified"):
        host.activate("duo")


def test_activate_when_not_configured():
    with pytest.raises(ModuleError, match="not configured"):
        secmod_duo.activate(request=ActivateRequest(settings=secmod_duo.DuoSettings(), now=time.time()))


# -- the full flow ------------------------------------------------------------------

def test_enrol_challenge_redirect_verify(duo_host, fake):
    host = duo_host()
    host.activate("duo")
    enrolled = host.begin_setup(ALICE, "duo")
    assert isinstance(enrolled, Enrolled)
    assert enrolled.message == messages.DUO_SETUP_NEXT_LOGIN
    assert host.login_state(ALICE).step is LoginStep.CHALLENGE

    started = host.begin_challenge(ALICE)
    assert started.module == "duo"
    assert started.prompt.redirect_url.startswith(f"https://{fake.api_hostname}/oauth/v1/authorize?")
    callback = fake.come_back(started.prompt.redirect_url)
    assert set(callback) == {"duo_code", "state"}

    result = host.verify(ALICE, callback, challenge_id=started.challenge_id)
    assert result.outcome is Outcome.ACCEPTED, result
    assert result.reason == "ok"
    assert fake.calls["token"] == 1
    assert fake.token_bodies == [b""]  # the client sends its parameters in the query string
    assert audit(host) == [("enrol", "ok", "ok"), ("verify", "ok", "ok")]


def test_the_duo_username_is_the_email_bound_at_enrolment(duo_host, fake):
    host = duo_host()
    enrol(host)
    moved = type(ALICE)(id=ALICE.id, audience=ALICE.audience, email="alice@elsewhere.example")
    challenge_id, callback = login(host, fake, moved)
    result = host.verify(moved, callback, challenge_id=challenge_id)
    assert result.accepted
    assert fake.usernames == ["alice@example.com"]


def test_username_id_mode_sends_the_user_id(duo_host, fake):
    host = duo_host(username="id")
    enrol(host)
    challenge_id, callback = login(host, fake)
    assert host.verify(ALICE, callback, challenge_id=challenge_id).accepted
    assert fake.usernames == [ALICE.id]


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("deny", "deny"),
        ("bad_signature", "bad_signature"),
        ("wrong_nonce", "nonce_mismatch"),
        ("wrong_user", "username_mismatch"),
    ],
)
def test_refusals_count_towards_the_lockout(duo_host, fake, mode, reason):
    host = duo_host()
    enrol(host)
    challenge_id, callback = login(host, fake)
    fake.token = mode
    result = host.verify(ALICE, callback, challenge_id=challenge_id)
    assert (result.outcome, result.reason) == (Outcome.REJECTED, reason)
    assert result.attempts_left == 4
    assert result.message == WRONG_CLIENT.format(attempts=4)
    assert ("verify", "fail", reason) in audit(host)


@pytest.mark.parametrize(
    ("mode", "reason", "message"),
    [
        ("expired", "token_expired", messages.DUO_DISRUPTION),
        ("html_500", "provider_error", messages.DUO_DISRUPTION),
        ("json_503", "provider_error", messages.DUO_DISRUPTION),
        ("drop", "unavailable", messages.DUO_DISRUPTION),
        ("no_id_token", "invalid_response", messages.DUO_DISRUPTION),
    ],
)
def test_provider_failures_do_not_count(duo_host, fake, mode, reason, message):
    host = duo_host()
    enrol(host)
    challenge_id, callback = login(host, fake)
    fake.token = mode
    result = host.verify(ALICE, callback, challenge_id=challenge_id)
    assert (result.outcome, result.reason, result.message) == (Outcome.REJECTED, reason, message)
    assert result.attempts_left is None  # not counted
    assert ("verify", "fail", reason) in audit(host)


def test_duo_down_at_verify(duo_host, fake):
    host = duo_host()
    enrol(host)
    challenge_id, callback = login(host, fake)
    fake.stop()  # connections are refused from now on
    result = host.verify(ALICE, callback, challenge_id=challenge_id)
    assert (result.outcome, result.reason, result.message) == (Outcome.REJECTED, "unavailable", messages.DUO_DISRUPTION)


def test_duo_down_at_challenge_says_log_in_with_the_backup_code(duo_host, fake):
    host = duo_host()
    enrol(host)
    fake.health = "fail"
    with pytest.raises(ModuleUnavailable) as caught:
        host.begin_challenge(ALICE)
    assert str(caught.value) == messages.DUO_DISRUPTION
    assert ("challenge", "fail", "provider_error") in audit(host)
    assert fake.calls["authorize"] == 0


def test_a_hanging_duo_times_out_and_the_library_is_left_as_it_was(duo_host, fake):
    host = duo_host(http_timeout=0.5)
    enrol(host)
    challenge_id, callback = login(host, fake)
    fake.token = "hang"
    started = time.monotonic()
    result = host.verify(ALICE, callback, challenge_id=challenge_id)
    elapsed = time.monotonic() - started
    assert (result.reason, result.message) == ("timeout", messages.DUO_DISRUPTION)
    assert 0.4 < elapsed < 5
    assert duo_universal.client.requests is requests


def test_a_hanging_health_check_times_out_at_challenge(duo_host, fake):
    host = duo_host(http_timeout=0.5)
    enrol(host)
    fake.health = "hang"
    started = time.monotonic()
    with pytest.raises(ModuleUnavailable, match="service disruption"):
        host.begin_challenge(ALICE)
    assert time.monotonic() - started < 5
    assert ("challenge", "fail", "timeout") in audit(host)


# -- state, replay, other people ----------------------------------------------------

def test_a_state_used_twice_is_refused(duo_host, fake):
    host = duo_host()
    enrol(host)
    challenge_id, callback = login(host, fake)
    assert host.verify(ALICE, callback, challenge_id=challenge_id).accepted
    again = host.verify(ALICE, callback, challenge_id=challenge_id)
    assert (again.outcome, again.reason) == (Outcome.REJECTED, "no_challenge")
    # Replayed into a fresh login attempt, the old state does not match the new one.
    fresh = host.begin_challenge(ALICE)
    replay = host.verify(ALICE, callback, challenge_id=fresh.challenge_id)
    assert replay.reason == "state_mismatch"
    assert fake.calls["token"] == 1  # neither replay reached Duo


def test_an_answer_with_no_open_challenge_is_never_counted(duo_host, fake):
    """A callback nobody is waiting for (a cross-site link, a stale tab) judges nothing:
    it must not eat into the person's attempts, however often it comes."""
    host = duo_host()
    enrol(host)
    for _ in range(7):
        stray = host.verify(ALICE, {"duo_code": "x" * 20, "state": "y" * 36})
        assert (stray.outcome, stray.reason, stray.attempts_left) == (Outcome.REJECTED, "no_challenge", None)
    challenge_id, callback = login(host, fake)
    assert host.verify(ALICE, callback, challenge_id=challenge_id).accepted
    assert fake.calls["token"] == 1


def test_a_tampered_state_is_refused_before_asking_duo(duo_host, fake):
    host = duo_host()
    enrol(host)
    challenge_id, callback = login(host, fake)
    tampered = {**callback, "state": callback["state"][:-1] + ("A" if callback["state"][-1] != "A" else "B")}
    assert host.verify(ALICE, tampered, challenge_id=challenge_id).reason == "state_mismatch"
    assert fake.calls["token"] == 0


def test_two_users_states_swapped(duo_host, fake):
    host = duo_host()
    enrol(host, ALICE)
    enrol(host, BOB)
    alice_id, alice_back = login(host, fake, ALICE)
    bob_id, bob_back = login(host, fake, BOB)
    # Alice comes back with Bob's callback on her own attempt: the state is not hers.
    assert host.verify(ALICE, bob_back, challenge_id=alice_id).reason == "state_mismatch"
    # Bob presents Alice's attempt: the host does not hand him her pending state.
    assert host.verify(BOB, alice_back, challenge_id=alice_id).reason == "no_challenge"
    assert fake.calls["token"] == 0
    # Bob's own attempt is untouched by all that.
    assert host.verify(BOB, bob_back, challenge_id=bob_id).accepted


def test_another_users_duo_code_with_the_right_state_is_refused_by_username(duo_host, fake):
    host = duo_host()
    enrol(host, ALICE)
    enrol(host, BOB)
    _, alice_back = login(host, fake, ALICE)
    bob_id, bob_back = login(host, fake, BOB)
    # An attacker who got Alice to approve splices her duo_code into Bob's callback.
    spliced = {"duo_code": alice_back["duo_code"], "state": bob_back["state"]}
    result = host.verify(BOB, spliced, challenge_id=bob_id)
    assert (result.outcome, result.reason) == (Outcome.REJECTED, "username_mismatch")


def test_a_duo_code_is_exchanged_once(duo_host, fake):
    host = duo_host()
    enrol(host)
    challenge_id, callback = login(host, fake)
    assert host.verify(ALICE, callback, challenge_id=challenge_id).accepted
    # The same code with a new, matching state (as if the browser were replayed later).
    started = host.begin_challenge(ALICE)
    fresh = fake.come_back(started.prompt.redirect_url)
    result = host.verify(ALICE, {"duo_code": callback["duo_code"], "state": fresh["state"]},
                         challenge_id=started.challenge_id)
    assert result.reason == "invalid_grant"


def test_an_expired_challenge_is_refused(duo_host, fake, fake_clock):
    fake_clock.now = time.time()
    host = duo_host(clock=fake_clock)
    enrol(host)
    challenge_id, callback = login(host, fake)
    fake_clock.advance(301)
    assert host.verify(ALICE, callback, challenge_id=challenge_id).reason == "no_challenge"


def test_the_module_checks_the_age_of_pending_data_itself(redirect_url):
    settings = secmod_duo.DuoSettings(client_id="DIABCDEFGHIJKLMNOPQR", client_secret="x" * 40,
                                      api_hostname="127.0.0.1:1", redirect_url=redirect_url)
    pending = {"state": "s" * 36, "nonce": "n" * 43, "username": "alice@example.com", "issued_at": 1000.0}
    request = VerifyRequest(settings=settings, user=ALICE, now=1000.0 + 301,
                            answer={"duo_code": "c", "state": "s" * 36}, pending=pending)
    assert secmod_duo.verify(request=request).reason == "expired"


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ({"state": "x" * 36}, "malformed"),
        ({"duo_code": "abc"}, "malformed"),
        ({"error": "access_denied", "error_description": "User cancelled"}, "duo_error:access_denied"),
        ({"error": "<script>"}, "duo_error:other"),
    ],
)
def test_incomplete_or_error_callbacks(duo_host, fake, answer, reason):
    host = duo_host()
    enrol(host)
    started = host.begin_challenge(ALICE)
    result = host.verify(ALICE, answer, challenge_id=started.challenge_id)
    assert (result.outcome, result.reason) == (Outcome.REJECTED, reason)
    assert fake.calls["token"] == 0


# -- provider outages: declared, the host decides ----------------------------------

def test_fail_closed_is_the_default(duo_host, fake):
    host = duo_host()
    enrol(host)
    challenge_id, callback = login(host, fake)
    fake.token = "drop"
    result = host.verify(ALICE, callback, challenge_id=challenge_id)
    assert (result.accepted, result.reason, result.attempts_left) == (False, "unavailable", None)


def _verify_request(settings, answer, pending):
    return VerifyRequest(settings=settings, user=ALICE, now=time.time(), answer=answer,
                         state={"username": ALICE.email}, pending=pending)


@pytest.mark.parametrize("mode", ["drop", "html_500", "json_503", "hang"])
def test_an_outage_at_verify_is_raised_as_provider_unavailable(duo_host, fake, mode):
    host = duo_host(http_timeout=0.5)
    settings = host.module_settings["duo"]
    started = secmod_duo.challenge(request=ChallengeRequest(
        settings=settings, user=ALICE, now=time.time(), state={"username": ALICE.email},
        callback_url="https://portal.example.com/login/duo/callback"))
    callback = fake.come_back(started.prompt.redirect_url)
    fake.token = mode
    with pytest.raises(ProviderUnavailable) as raised:
        secmod_duo.verify(request=_verify_request(settings, callback, started.pending))
    assert raised.value.message == messages.DUO_DISRUPTION


@pytest.mark.parametrize("mode", ["deny", "bad_signature", "wrong_nonce", "expired"])
def test_a_refusal_or_a_bad_token_is_never_an_outage(duo_host, fake, mode):
    """Only "Duo could not be asked" may be let through by fail_mode = "open"."""
    host = duo_host()
    settings = host.module_settings["duo"]
    started = secmod_duo.challenge(request=ChallengeRequest(
        settings=settings, user=ALICE, now=time.time(), state={"username": ALICE.email},
        callback_url="https://portal.example.com/login/duo/callback"))
    callback = fake.come_back(started.prompt.redirect_url)
    fake.token = mode
    verdict = secmod_duo.verify(request=_verify_request(settings, callback, started.pending))
    assert not verdict.accepted


@pytest.mark.parametrize("mode", ["drop", "json_503", "html_500"])
def test_duo_down_at_the_challenge_raises_provider_unavailable_not_an_empty_prompt(duo_host, fake, mode):
    host = duo_host()
    fake.health = mode
    with pytest.raises(ProviderUnavailable) as raised:
        secmod_duo.challenge(request=ChallengeRequest(
            settings=host.module_settings["duo"], user=ALICE, now=time.time(), state={"username": ALICE.email},
            callback_url="https://portal.example.com/login/duo/callback"))
    assert raised.value.message == messages.DUO_DISRUPTION


def test_a_wrong_secret_at_the_challenge_is_not_an_outage(duo_host, fake):
    host = duo_host(client_secret="W" * 40)
    with pytest.raises(ModuleError) as raised:
        secmod_duo.challenge(request=ChallengeRequest(
            settings=host.module_settings["duo"], user=ALICE, now=time.time(), state={"username": ALICE.email},
            callback_url="https://portal.example.com/login/duo/callback"))
    assert not isinstance(raised.value, ProviderUnavailable)
    assert raised.value.message == messages.DUO_UNAVAILABLE


# The host applies the operator's per-module fail_mode (ModuleSettings) to Duo's
# declared outages; these run the whole way through a real Host.

def test_fail_open_lets_the_person_in_when_duo_breaks_after_the_prompt(duo_host, fake):
    host = duo_host(fail_mode="open")
    enrol(host)
    challenge_id, callback = login(host, fake)
    fake.token = "html_500"
    result = host.verify(ALICE, callback, challenge_id=challenge_id)
    assert (result.outcome, result.reason) == (Outcome.ACCEPTED, "fail_open")
    assert ("verify", "ok", "fail_open") in audit(host)


@pytest.mark.parametrize("mode", ["deny", "bad_signature", "wrong_nonce", "wrong_user", "expired", "no_id_token"])
def test_fail_open_never_overrides_a_refusal_or_a_bad_answer(duo_host, fake, mode):
    host = duo_host(fail_mode="open")
    enrol(host)
    challenge_id, callback = login(host, fake)
    fake.token = mode
    assert not host.verify(ALICE, callback, challenge_id=challenge_id).accepted


def test_fail_open_does_not_apply_to_a_wrong_secret(duo_host, fake):
    host = duo_host(fail_mode="open", client_secret="W" * 40)
    enrol(host)
    with pytest.raises(ModuleUnavailable) as caught:
        host.begin_challenge(ALICE)
    assert str(caught.value) == messages.DUO_UNAVAILABLE


def test_fail_open_when_duo_is_down_at_the_challenge_settles_the_login_there(duo_host, fake):
    host = duo_host(fail_mode="open")
    enrol(host)
    fake.health = "drop"
    started = host.begin_challenge(ALICE)
    assert (started.outcome, started.reason) == (Outcome.ACCEPTED, "fail_open")
    assert ("challenge", "ok", "fail_open") in audit(host)
    assert fake.calls["authorize"] == 0


def test_fail_closed_when_duo_is_down_at_the_challenge_leaves_the_backup_code(duo_host, fake):
    host = duo_host(fail_mode="closed")
    enrol(host)
    fake.health = "json_503"
    with pytest.raises(ModuleUnavailable, match="service disruption"):
        host.begin_challenge(ALICE)
    assert ("challenge", "fail", "provider_error") in audit(host)


def test_duo_has_no_fail_switch_of_its_own():
    # fail_mode belongs to the host's ModuleSettings base: one policy for every module.
    assert "fail_mode" not in vars(secmod_duo.DuoSettings).get("__annotations__", {})


# -- nothing secret leaks -----------------------------------------------------------

def test_audit_and_logs_never_hold_codes_states_or_the_secret(duo_host, fake, caplog):
    caplog.set_level(logging.DEBUG)
    host = duo_host()
    enrol(host)
    seen: list[str] = []
    for mode in ("allow", "deny", "bad_signature", "html_500", "drop", "expired"):
        fake.token = mode
        challenge_id, callback = login(host, fake)
        seen += callback.values()
        host.verify(ALICE, callback, challenge_id=challenge_id)
    rows = host.audit_events(user=ALICE, limit=1000)
    dumped = "\n".join(repr(row.model_dump()) for row in rows) + "\n" + caplog.text
    assert {row.reason for row in rows} >= {"ok", "deny", "bad_signature", "provider_error", "unavailable"}
    for value in [*seen, fake.client_secret]:
        assert value not in dumped
    # urllib3 logs request URLs at DEBUG; the token exchange's query string is cut off.
    assert "/oauth/v1/token?[redacted]" in caplog.text


# -- the client: a timeout of its own, no process-wide side effects -----------------

def test_a_hanging_duo_leaves_the_library_module_untouched_meanwhile(duo_host, fake):
    host = duo_host(http_timeout=2)
    enrol(host)
    challenge_id, callback = login(host, fake)
    fake.token = "hang"
    results = []
    worker = threading.Thread(target=lambda: results.append(host.verify(ALICE, callback, challenge_id=challenge_id)))
    worker.start()
    deadline = time.monotonic() + 5
    while fake.calls["token"] == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    # The exchange is hanging right now: another user of duo_universal sees it as shipped.
    assert duo_universal.client.requests is requests
    assert duo_universal.client.jwt is jwt
    worker.join(10)
    assert [r.reason for r in results] == ["timeout"]


def test_each_client_has_its_own_timeout():
    fast = secmod_duo.DuoClient("D" * 20, "s" * 40, "127.0.0.1:1", "https://x.test/cb", timeout=0.5)
    slow = secmod_duo.DuoClient("D" * 20, "s" * 40, "127.0.0.1:1", "https://x.test/cb", timeout=9)
    assert fast.health_check.__func__.__globals__["requests"]._seconds == 0.5
    assert slow.health_check.__func__.__globals__["requests"]._seconds == 9
    assert duo_universal.Client.health_check.__globals__["requests"] is requests


def test_a_duo_login_raises_no_warning_even_when_warnings_are_errors(duo_host, fake):
    """PyJWT warns on Duo's 40-byte secrets; a host run with -W error must still log in."""
    host = duo_host()
    enrol(host)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        host.activate("duo")
        challenge_id, callback = login(host, fake)
        assert host.verify(ALICE, callback, challenge_id=challenge_id).accepted


def test_padding_the_key_signs_the_same_bytes():
    secret = "x" * 40
    payload = {"sub": "a", "exp": 4_000_000_000}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the unpadded reference call is the one that warns
        reference = jwt.encode(payload, secret, algorithm="HS512")
    assert secmod_duo._JwtWithFullLengthKey().encode(payload, secret, algorithm="HS512") == reference


def test_importing_the_modules_installs_nothing_process_wide():
    code = (
        "import logging, duo_universal.client as c, requests, secmod_duo, secmod_yubikey;"
        "assert c.requests is requests;"
        "assert not logging.getLogger('urllib3.connectionpool').filters;"
        "assert not logging.getLogger('yubico.client').filters;"
        "print('clean')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "clean", out.stderr
