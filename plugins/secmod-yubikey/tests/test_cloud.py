"""Cloud mode end to end: a real Host, the real yubico_client, the fake YubiCloud."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from secmod.hookspecs import (
    Audience,
    ModuleError,
    ProviderUnavailable,
    SetupRequest,
    User,
    VerifyRequest,
    messages,
)
from secmod.host import Enrolled, LoginStep, ModuleUnavailable, Outcome
from secmod_yubikey.testing.soft_yubikey import SoftYubiKey
from secmod.testing.tls import LocalCA
from secmod_yubikey.testing.yubicloud_fake import FakeYubiCloud, KeyStore
import secmod_yubikey
from secmod_yubikey import YubikeySettings


def enrol(host: Any, user: User, key: SoftYubiKey) -> Enrolled:
    step = host.begin_setup(user, "yubikey")
    done = host.continue_setup(user, step.setup_id, {"otp": key.press()})
    assert isinstance(done, Enrolled), getattr(done, "error", done)
    return done


def login(host: Any, user: User, otp: str) -> Any:
    started = host.begin_challenge(user)
    return host.verify(user, {"otp": otp}, challenge_id=started.challenge_id)


def reasons(host: Any, user: User) -> list[str]:
    return [e.reason for e in host.audit_events(user=user) if e.event == "verify"]


def test_enrol_and_log_in(cloud: FakeYubiCloud, yubikey_host: Any, ada: User) -> None:
    host = yubikey_host(cloud.settings())
    key = cloud.new_key()
    step = host.begin_setup(ada, "yubikey")
    (field,) = step.prompt.fields
    assert (field.name, field.kind) == ("otp", "password")
    done = host.continue_setup(ada, step.setup_id, {"otp": key.press()})
    assert isinstance(done, Enrolled) and done.message == messages.YUBICO_SAVED and done.backup_codes
    assert host.login_state(ada).step is LoginStep.CHALLENGE
    started = host.begin_challenge(ada)
    assert started.prompt.fields[0].placeholder == "Yubico Key"
    assert started.prompt.fields[0].kind == "password"
    result = host.verify(ada, {"otp": key.press()}, challenge_id=started.challenge_id)
    assert result.outcome is Outcome.ACCEPTED, result
    assert reasons(host, ada) == ["ok"]


def test_a_wrong_setup_otp_keeps_the_step_for_a_retry(cloud: FakeYubiCloud, yubikey_host: Any, ada: User) -> None:
    host = yubikey_host(cloud.settings())
    stranger = SoftYubiKey()  # YubiCloud has never heard of it: BAD_OTP
    step = host.begin_setup(ada, "yubikey")
    refused = host.continue_setup(ada, step.setup_id, {"otp": stranger.press()})
    assert not isinstance(refused, Enrolled)
    assert refused.error == messages.YUBICO_INVALID
    assert host.status(ada) is None
    done = host.continue_setup(ada, refused.setup_id, {"otp": cloud.new_key().press()})
    assert isinstance(done, Enrolled)


def test_replayed_otp_is_refused_and_counts(cloud: FakeYubiCloud, yubikey_host: Any, ada: User) -> None:
    host = yubikey_host(cloud.settings())
    key = cloud.new_key()
    enrol(host, ada, key)
    older = key.press()
    otp = key.press()
    assert login(host, ada, otp).accepted
    again = login(host, ada, otp)
    assert (again.outcome, again.reason, again.attempts_left) == (Outcome.REJECTED, "replayed", 4)
    assert "4 attempts remaining" in again.message  # WHMCS's wording, from the host
    # An OTP typed before the last accepted one never reached the server: also a replay.
    assert login(host, ada, older).reason == "replayed"
    assert login(host, ada, key.press()).accepted


def test_a_key_bound_to_someone_else_is_refused_without_asking(
    cloud: FakeYubiCloud, yubikey_host: Any, ada: User, bob: User
) -> None:
    host = yubikey_host(cloud.settings())
    ada_key, bob_key = cloud.new_key(), cloud.new_key()
    enrol(host, ada, ada_key)
    enrol(host, bob, bob_key)
    hits = cloud.hits
    result = login(host, bob, ada_key.press())
    assert (result.outcome, result.reason) == (Outcome.REJECTED, "unknown_key")
    assert cloud.hits == hits, "another person's OTP is not spent at the validation server"
    assert login(host, ada, ada_key.press()).accepted
    assert login(host, bob, bob_key.press()).accepted


@pytest.mark.parametrize(
    ("status", "reason", "counts"),
    [
        ("BAD_OTP", "invalid_or_unavailable", True),
        ("REPLAYED_OTP", "replayed", True),
        ("REPLAYED_REQUEST", "invalid_or_unavailable", True),
        ("BAD_SIGNATURE", "invalid_or_unavailable", False),
        # ykval's early errors, signed with the empty key: an outage, never counted.
        ("NO_SUCH_CLIENT", "unsigned_error", False),
        ("MISSING_PARAMETER", "unsigned_error", False),
        ("OPERATION_NOT_ALLOWED", "invalid_or_unavailable", False),
        # The service says it cannot judge now: an outage too.
        ("BACKEND_ERROR", "unavailable", False),
        ("NOT_ENOUGH_ANSWERS", "unavailable", False),
    ],
)
def test_every_failure_status(
    cloud: FakeYubiCloud, yubikey_host: Any, ada: User, status: str, reason: str, counts: bool
) -> None:
    host = yubikey_host(cloud.settings())
    key = cloud.new_key()
    enrol(host, ada, key)
    cloud.force_status = status
    result = login(host, ada, key.press())
    assert (result.outcome, result.reason) == (Outcome.REJECTED, reason)
    if counts:  # the person's OTP is wrong: WHMCS's message and one attempt fewer
        assert result.attempts_left == 4 and "attempts remaining" in result.message
    else:  # the service or our settings are wrong: not held against the person
        assert result.attempts_left is None and result.message == messages.YUBICO_INVALID
    events = [e for e in host.audit_events(user=ada) if e.event == "verify"]
    assert [(e.outcome, e.reason) for e in events] == [("fail", reason)]
    cloud.force_status = None
    assert login(host, ada, key.press()).accepted


@pytest.mark.parametrize("switch", ["bad_signature", "wrong_echo"])
def test_a_response_that_does_not_check_out_is_refused(
    cloud: FakeYubiCloud, yubikey_host: Any, ada: User, switch: str
) -> None:
    host = yubikey_host(cloud.settings())
    key = cloud.new_key()
    enrol(host, ada, key)
    setattr(cloud, switch, True)
    result = login(host, ada, key.press())
    assert (result.outcome, result.reason, result.attempts_left) == (Outcome.REJECTED, "bad_response", None)
    assert result.message == messages.YUBICO_INVALID


def test_an_ok_without_the_nonce_echoed_is_refused(cloud: FakeYubiCloud, yubikey_host: Any, ada: User) -> None:
    """As Yubico's own C client: an OK that does not echo our nonce may be an old answer
    replayed to us (yubico_client checks the nonce only when it is there)."""
    host = yubikey_host(cloud.settings())
    key = cloud.new_key()
    enrol(host, ada, key)
    cloud.omit_nonce = True
    result = login(host, ada, key.press())
    assert (result.outcome, result.reason, result.attempts_left) == (Outcome.REJECTED, "bad_response", None)
    cloud.omit_nonce = False
    assert login(host, ada, key.press()).accepted


@pytest.mark.parametrize("status", ["BAD_OTP", "REPLAYED_OTP", "NO_SUCH_CLIENT", "MISSING_PARAMETER"])
def test_an_error_signed_with_the_empty_key_is_an_outage_never_counted(
    cloud: FakeYubiCloud, yubikey_host: Any, ada: User, status: str
) -> None:
    """Attack: anyone on the path can sign with the empty key (ykval does so for its
    early errors); such an answer must never burn the person's attempts or lock them."""
    host = yubikey_host(cloud.settings())
    key = cloud.new_key()
    enrol(host, ada, key)
    cloud.forge_unsigned = status
    for _ in range(8):
        result = login(host, ada, key.press())
        assert (result.outcome, result.reason, result.attempts_left) == (Outcome.REJECTED, "unsigned_error", None)
    cloud.forge_unsigned = None
    assert login(host, ada, key.press()).accepted


def test_fail_open_lets_the_person_in_only_for_an_outage(cloud: FakeYubiCloud, yubikey_host: Any, ada: User) -> None:
    host = yubikey_host(cloud.settings(fail_mode="open"))
    key = cloud.new_key()
    enrol(host, ada, key)
    cloud.bad_signature = True  # an answer that is not from our key: never an outage
    assert not login(host, ada, key.press()).accepted
    cloud.bad_signature = False
    cloud.force_status = "BAD_OTP"  # signed with our key: the OTP is wrong
    assert not login(host, ada, key.press()).accepted
    cloud.force_status = None
    cloud.stop()
    result = host.verify(ada, {"otp": key.press()})
    assert (result.outcome, result.reason) == (Outcome.ACCEPTED, "fail_open")


def test_the_module_declares_an_outage_with_provider_unavailable(cloud: FakeYubiCloud, ada: User) -> None:
    settings = _settings(cloud)
    key = cloud.new_key()
    state = _setup(settings, ada, key.press()).state
    cloud.forge_unsigned = "BAD_OTP"
    with pytest.raises(ProviderUnavailable) as raised:
        secmod_yubikey.verify(request=VerifyRequest(settings=settings, user=ada, now=2.0, answer={"otp": key.press()},
                                                    state=state))
    assert raised.value.reason == "unsigned_error"
    cloud.forge_unsigned = None
    cloud.stop()
    with pytest.raises(ProviderUnavailable) as raised:
        secmod_yubikey.verify(request=VerifyRequest(settings=settings, user=ada, now=2.0, answer={"otp": key.press()},
                                                    state=state))
    assert raised.value.reason == "unavailable"


def test_wrong_secret_key_or_client_id(cloud: FakeYubiCloud, yubikey_host: Any, ada: User) -> None:
    key = cloud.new_key()
    # A key YubiCloud did not issue: it answers BAD_SIGNATURE signed with the real key,
    # which our client cannot verify.
    host = yubikey_host(cloud.settings(secret_key="AAECAwQFBgcICQoLDA0ODxAREhM="))
    step = host.begin_setup(ada, "yubikey")
    refused = host.continue_setup(ada, step.setup_id, {"otp": key.press()})
    assert refused.error == messages.YUBICO_INVALID
    assert host.audit_events(user=ada)[0].reason == "bad_response"
    host.close()
    # An id YubiCloud does not know: NO_SUCH_CLIENT, signed with an empty key, which
    # anyone could forge: reported as an outage (the operator's log names client_id).
    host = yubikey_host(cloud.settings(client_id="99"))
    step = host.begin_setup(ada, "yubikey")
    host.continue_setup(ada, step.setup_id, {"otp": key.press()})
    assert host.audit_events(user=ada)[0].reason == "unsigned_error"


@pytest.mark.parametrize("how", ["stopped", "drops", "http_503", "slow"])
def test_server_down_does_not_count(cloud: FakeYubiCloud, yubikey_host: Any, ada: User, how: str) -> None:
    host = yubikey_host(cloud.settings(timeout=1))
    key = cloud.new_key()
    enrol(host, ada, key)
    if how == "stopped":
        cloud.stop()
    elif how == "drops":
        cloud.down = True
    elif how == "http_503":
        cloud.http_status = 503
    else:
        # Longer than timeout=1: yubico_client gives up after 1 s. Its request thread is
        # not a daemon and lives until requests' own 1 s timeout, so keep both short.
        cloud.delay = 1.5
    for _ in range(6):  # more than the lockout allows: none of it is the person's fault
        result = login(host, ada, key.press())
        assert (result.outcome, result.reason, result.attempts_left) == (Outcome.REJECTED, "unavailable", None)
        assert result.message == messages.YUBICO_INVALID and "backup code" in result.detail
        if how == "slow":
            break
    # The backup code is the way in meanwhile.
    assert host.status(ada).locked_until is None


def test_http_5xx_is_retried(cloud: FakeYubiCloud, yubikey_host: Any, ada: User) -> None:
    host = yubikey_host(cloud.settings(max_retries=3))
    key = cloud.new_key()
    enrol(host, ada, key)
    cloud.http_status = 502
    before = cloud.hits
    assert login(host, ada, key.press()).reason == "unavailable"
    assert cloud.hits - before == 3


def test_failover_to_a_second_server(yubikey_host: Any, ada: User) -> None:
    store = KeyStore()
    with FakeYubiCloud(store=store) as first:
        second = FakeYubiCloud(first.clients, store=store).start()
        try:
            host = yubikey_host(first.settings(api_urls=[first.url, second.url]))
            key = first.new_key()
            enrol(host, ada, key)
            first.down = True
            assert login(host, ada, key.press()).accepted
            first.down, second.force_status = False, "BACKEND_ERROR"
            otp = key.press()
            assert login(host, ada, otp).accepted
            # The servers share their counters, as synced ykval servers do.
            second.force_status = None
            first.down = True
            assert login(host, ada, otp).reason == "replayed"
            second.stop()
            result = login(host, ada, key.press())
            assert (result.reason, result.attempts_left) == ("unavailable", None)
        finally:
            second.stop()


def test_input_is_cleaned_like_whmcs(cloud: FakeYubiCloud, yubikey_host: Any, ada: User) -> None:
    host = yubikey_host(cloud.settings(), throttle={"max_code_failures": 100})
    key = cloud.new_key()
    enrol(host, ada, key)
    assert login(host, ada, f'  "{key.press()}"\n').accepted
    assert login(host, ada, f"'{key.press().upper()}'").accepted  # caps lock
    for junk in ("", "   ", "not an otp", key.press()[:-1], key.press() + "c", "x" * 4096):
        assert login(host, ada, junk).reason == "malformed"


def test_dvorak_keyboard(cloud: FakeYubiCloud, yubikey_host: Any, ada: User) -> None:
    host = yubikey_host(cloud.settings())
    key = cloud.new_key(dvorak=True)
    enrol(host, ada, key)
    assert login(host, ada, key.press()).accepted
    key.dvorak = False  # the same key on a US layout later: still the same public id
    assert login(host, ada, key.press()).accepted


def test_https_with_a_local_ca(yubikey_host: Any, ada: User) -> None:
    with LocalCA() as ca, FakeYubiCloud(ssl_context=ca.server_context()) as fake:
        assert fake.url.startswith("https://127.0.0.1:")
        key = fake.new_key()
        host = yubikey_host(fake.settings(ca_file=str(ca.ca_path)))
        enrol(host, ada, key)
        assert login(host, ada, key.press()).accepted
        host.close()
        # Without our CA the system bundle is used and the certificate is refused.
        host = yubikey_host(fake.settings())
        assert login(host, ada, key.press()).reason == "unavailable"


def test_activate_checks_the_client_id_and_key(cloud: FakeYubiCloud, yubikey_host: Any) -> None:
    assert "secret key checks out" in yubikey_host(cloud.settings()).activate("yubikey").message
    with pytest.raises(ModuleUnavailable, match="does not know client id"):
        yubikey_host(cloud.settings(client_id="99")).activate("yubikey")
    with pytest.raises(ModuleUnavailable, match="does not accept the secret key"):
        yubikey_host(cloud.settings(secret_key="AAECAwQFBgcICQoLDA0ODxAREhM=")).activate("yubikey")
    cloud.stop()
    with pytest.raises(ModuleUnavailable, match="No validation server answered"):
        yubikey_host(cloud.settings()).activate("yubikey")


def test_no_otp_or_key_in_logs(
    cloud: FakeYubiCloud, yubikey_host: Any, ada: User, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    host = yubikey_host(cloud.settings())
    key = cloud.new_key()
    otps = [key.press() for _ in range(4)]
    step = host.begin_setup(ada, "yubikey")
    host.continue_setup(ada, step.setup_id, {"otp": otps[0]})
    cloud.bad_signature = True  # yubico_client logs the response parameters
    login(host, ada, otps[1])
    cloud.bad_signature, cloud.down = False, True  # requests' error quotes the URL
    login(host, ada, otps[2])
    cloud.stop()
    login(host, ada, otps[3])
    text = caplog.text + "".join(repr(r.args) for r in caplog.records)
    assert "yubico.client" in {r.name for r in caplog.records}, "the library did log"
    for secret in [*otps, *(o[12:] for o in otps), cloud.api_key, key.aes_key.hex()]:
        assert secret not in text
    assert cloud.api_key not in repr(host.module_settings["yubikey"])


# -- several keys per person: the hooks directly -----------------------------------
# The host does not hand the current state to setup_user yet (SetupRequest.state is
# always None there), so adding a key is exercised at the hook level.


def _settings(cloud: FakeYubiCloud, **extra: Any) -> YubikeySettings:
    return YubikeySettings.model_validate({"clients": True, **cloud.settings(**extra)})


def _setup(settings: YubikeySettings, user: User, otp: str, state: Any = None) -> Any:
    return secmod_yubikey.setup_user(
        request=SetupRequest(settings=settings, user=user, now=1.0, answer={"otp": otp}, pending={"step": "touch"}, state=state)
    )


def test_second_key_up_to_the_limit(cloud: FakeYubiCloud, ada: User) -> None:
    settings = _settings(cloud, max_keys_per_user=2)
    first, second, third = cloud.new_key(), cloud.new_key(), cloud.new_key()
    state = _setup(settings, ada, first.press()).state
    state = _setup(settings, ada, second.press(), state).state
    assert set(state["keys"]) == {first.public_id, second.public_id}
    with pytest.raises(ModuleError) as refused:
        _setup(settings, ada, third.press(), state)
    assert refused.value.reason == "too_many_keys"
    for key in (first, second):
        verdict = secmod_yubikey.verify(
            request=VerifyRequest(settings=settings, user=ada, now=2.0, answer={"otp": key.press()}, state=state)
        )
        assert verdict.accepted, verdict
        state = verdict.state
    # With one key allowed (the default, as WHMCS), a new key replaces the old one.
    single = _settings(cloud)
    replaced = _setup(single, ada, third.press(), state).state
    assert set(replaced["keys"]) == {third.public_id}


def test_settings_are_validated() -> None:
    assert YubikeySettings.model_validate({}).mode == "cloud"  # off: nothing needed yet
    bad = [
        ({"clients": True}, "client_id and secret_key"),
        ({"client_id": "abc"}, "numeric Client ID"),
        ({"client_id": 0}, "numeric Client ID"),
        ({"secret_key": "not base64!"}, "base64"),
        ({"api_urls": ["http://api.example.com/wsapi/2.0/verify"]}, "must use https"),
        ({"api_urls": ["ftp://x/verify"]}, "http"),
        ({"api_urls": []}, "at least 1"),
        ({"ca_file": "/no/such/ca.pem"}, "not a file"),
        ({"timeout": 0}, "greater than or equal to 1"),
        ({"mode": "offline"}, "'cloud' or 'local'"),
        ({"clients": True, "mode": "local"}, "local mode needs keys"),
    ]
    for table, message in bad:
        with pytest.raises(ValueError, match=message):
            YubikeySettings.model_validate(table)
    ok = YubikeySettings.model_validate({"client_id": 42, "api_urls": "http://127.0.0.1:1/wsapi/2.0/verify"})
    assert ok.client_id == "42" and ok.api_urls == ["http://127.0.0.1:1/wsapi/2.0/verify"]


def test_configure() -> None:
    info = secmod_yubikey.configure()
    assert (info.name, info.friendly_name) == ("yubikey", "YubiKey")
    assert info.short_description == "Generate codes using a YubiKey hardware device."
    assert info.settings_model is YubikeySettings


def test_admins_use_it_too(cloud: FakeYubiCloud, yubikey_host: Any) -> None:
    admin = User(id="admin-1", audience=Audience.ADMIN, email="root@example.test")
    host = yubikey_host(cloud.settings())
    key = cloud.new_key()
    enrol(host, admin, key)
    wrong = login(host, admin, SoftYubiKey(public_id=key.public_id).press())  # right id, wrong AES key
    assert (wrong.reason, wrong.message) == ("invalid_or_unavailable", messages.WRONG_FACTOR_ADMIN)
    assert login(host, admin, key.press()).accepted
