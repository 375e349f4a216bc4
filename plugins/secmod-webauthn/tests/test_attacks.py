"""Attacks on secmod-webauthn, through a real Host: each answer an attacker could send."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from secmod.hookspecs import Audience, User
from secmod.host import Enrolled, Host, Outcome, SetupStarted
from secmod_webauthn.testing import SoftAuthenticator, b64url, from_b64url

ORIGIN = "http://localhost:8000"
ADA = User(id="client-1", audience=Audience.CLIENT, email="ada@example.test", name="Ada")
BOB = User(id="client-2", audience=Audience.CLIENT, email="bob@example.test", name="Bob")


@pytest.fixture
def start(make_host: Callable[..., Host]) -> Callable[..., Host]:
    def start(throttle: dict[str, Any] | None = None, **settings: Any) -> Host:
        table = {"clients": True, "admins": True, **settings}
        return make_host(
            {"webauthn": table},
            loading={"allow": ["webauthn"]},
            throttle=throttle or {"max_code_failures": 100},
        )

    return start


@pytest.fixture
def host(start: Callable[..., Host]) -> Host:
    return start()


def enrol(host: Host, user: User, key: SoftAuthenticator, name: str = "Laptop") -> Enrolled:
    step = host.begin_setup(user, "webauthn")
    assert isinstance(step, SetupStarted) and step.prompt.ceremony is not None
    done = host.continue_setup(
        user,
        step.setup_id,
        {"name": name, "credential": key.create(step.prompt.ceremony.options_json)},
    )
    assert isinstance(done, Enrolled), done
    return done


def options(started: Any) -> str:
    assert started.prompt.ceremony is not None and started.prompt.ceremony.kind == "webauthn.get"
    return started.prompt.ceremony.options_json


def login(host: Host, user: User, key: SoftAuthenticator, **tamper: Any) -> Any:
    started = host.begin_challenge(user)
    return host.verify(
        user, {"credential": key.get(options(started), **tamper)}, challenge_id=started.challenge_id
    )


def stored_state(host: Host, user: User) -> dict[str, Any]:
    """What the host holds for the person (the same reading re-enrolment gets)."""
    state, _version = host._current_state(user, "webauthn")
    assert state is not None
    return state


# -- login --------------------------------------------------------------------------


def test_login_with_the_registered_key_counts_up(host: Host) -> None:
    key = SoftAuthenticator(ORIGIN)
    enrol(host, ADA, key)
    for expected in (1, 2):
        result = login(host, ADA, key)
        assert result.outcome is Outcome.ACCEPTED, result
        (credential,) = stored_state(host, ADA)["credentials"]
        assert credential["sign_count"] == expected
        assert credential["last_used_at"] == host.clock()


def test_the_options_list_the_persons_keys_and_the_relying_party(host: Host) -> None:
    key = SoftAuthenticator(ORIGIN)
    enrol(host, ADA, key)
    started = host.begin_challenge(ADA)
    sent = json.loads(options(started))
    assert sent["rpId"] == "localhost"
    assert [from_b64url(item["id"]) for item in sent["allowCredentials"]] == list(key.credentials)
    assert sent["userVerification"] == "preferred"
    assert started.prompt.fields[0].name == started.prompt.ceremony.answer_field == "credential"


def test_replayed_assertion_is_refused(host: Host) -> None:
    key = SoftAuthenticator(ORIGIN)
    enrol(host, ADA, key)
    started = host.begin_challenge(ADA)
    answer = {"credential": key.get(options(started))}
    assert host.verify(ADA, answer, challenge_id=started.challenge_id).accepted
    again = host.verify(ADA, answer, challenge_id=started.challenge_id)
    assert (again.outcome, again.reason) == (Outcome.REJECTED, "no_challenge")
    fresh = host.begin_challenge(ADA)
    replay = host.verify(ADA, answer, challenge_id=fresh.challenge_id)
    assert (replay.outcome, replay.reason) == (Outcome.REJECTED, "wrong_challenge")


def test_expired_challenge_is_refused(host: Host, fake_clock: Any) -> None:
    key = SoftAuthenticator(ORIGIN)
    enrol(host, ADA, key)
    started = host.begin_challenge(ADA)
    answer = {"credential": key.get(options(started))}
    fake_clock.advance(301)
    result = host.verify(ADA, answer, challenge_id=started.challenge_id)
    assert (result.outcome, result.reason) == (Outcome.REJECTED, "no_challenge")


@pytest.mark.parametrize("count", [0, 3, 5], ids=["zero", "lower", "equal"])
def test_counter_going_backwards_is_refused_as_a_possible_clone(
    host: Host, count: int, caplog: pytest.LogCaptureFixture
) -> None:
    key = SoftAuthenticator(ORIGIN, counter_step=5)
    enrol(host, ADA, key)
    assert login(host, ADA, key).accepted  # the counter is now 5
    result = login(host, ADA, key, sign_count=count)
    assert (result.outcome, result.reason) == (Outcome.REJECTED, "counter_regressed")
    assert "copied key" in result.message
    assert stored_state(host, ADA)["credentials"][0]["sign_count"] == 5
    newest = host.audit_events(user=ADA, limit=1)[0]
    assert (newest.event, newest.outcome, newest.reason) == ("verify", "fail", "counter_regressed")
    assert "possible cloned key" in caplog.text
    assert login(host, ADA, key).accepted  # the real key, counting on, still works


def test_a_passkey_without_a_counter_logs_in_again_and_again(host: Host) -> None:
    key = SoftAuthenticator(ORIGIN, counter_step=0)
    enrol(host, ADA, key)
    assert [login(host, ADA, key).outcome for _ in range(3)] == [Outcome.ACCEPTED] * 3


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ({"origin": "https://evil.example"}, "wrong_origin"),
        ({"origin": "http://localhost:9000"}, "wrong_origin"),
        (
            {"origin": "https://challenge.signature.evil"},
            "wrong_origin",
        ),  # words in the origin mislead nothing
        ({"rp_id": "evil.example"}, "wrong_rp_id"),
        ({"challenge": b64url(b"an old challenge of 32 bytes....")}, "wrong_challenge"),
        ({"user_present": False}, "user_not_present"),
        ({"user_handle": b"somebody else"}, "wrong_user_handle"),
    ],
    ids=[
        "phishing-origin",
        "other-port",
        "worded-origin",
        "rp-id",
        "challenge",
        "no-presence",
        "user-handle",
    ],
)
def test_tampered_assertion_is_refused(host: Host, tamper: dict[str, Any], reason: str) -> None:
    key = SoftAuthenticator(ORIGIN)
    enrol(host, ADA, key)
    result = login(host, ADA, key, **tamper)
    assert (result.outcome, result.reason) == (Outcome.REJECTED, reason)
    assert host.audit_events(user=ADA, limit=1)[0].reason == reason


def test_tampered_signature_is_refused(host: Host) -> None:
    key = SoftAuthenticator(ORIGIN)
    enrol(host, ADA, key)
    started = host.begin_challenge(ADA)
    credential = json.loads(key.get(options(started)))
    signature = bytearray(from_b64url(credential["response"]["signature"]))
    signature[-1] ^= 0x01
    credential["response"]["signature"] = b64url(bytes(signature))
    result = host.verify(
        ADA, {"credential": json.dumps(credential)}, challenge_id=started.challenge_id
    )
    assert (result.outcome, result.reason) == (Outcome.REJECTED, "bad_signature")


def test_raised_counter_in_signed_data_without_the_key_is_refused(host: Host) -> None:
    # Rewriting authenticatorData (a higher counter, say) breaks the signature over it.
    key = SoftAuthenticator(ORIGIN)
    enrol(host, ADA, key)
    started = host.begin_challenge(ADA)
    credential = json.loads(key.get(options(started)))
    data = bytearray(from_b64url(credential["response"]["authenticatorData"]))
    data[-1] = 0xFF
    credential["response"]["authenticatorData"] = b64url(bytes(data))
    result = host.verify(
        ADA, {"credential": json.dumps(credential)}, challenge_id=started.challenge_id
    )
    assert (result.outcome, result.reason) == (Outcome.REJECTED, "bad_signature")


def test_user_verification_required_refuses_a_key_without_it(start: Callable[..., Host]) -> None:
    host = start(user_verification="required")
    key = SoftAuthenticator(ORIGIN)
    enrol(host, ADA, key)
    key.user_verified = False
    result = login(host, ADA, key)
    assert (result.outcome, result.reason) == (Outcome.REJECTED, "user_not_verified")


def test_another_persons_credential_is_refused(host: Host) -> None:
    ada_key, bob_key = SoftAuthenticator(ORIGIN), SoftAuthenticator(ORIGIN)
    enrol(host, ADA, ada_key)
    enrol(host, BOB, bob_key)
    started = host.begin_challenge(ADA)
    (bob_credential,) = bob_key.credentials
    # Bob's key, signing Ada's challenge perfectly well: still not one of Ada's keys.
    forged = bob_key.get(
        options(started).replace('"allowCredentials"', '"ignored"'), credential_id=bob_credential
    )
    result = host.verify(ADA, {"credential": forged}, challenge_id=started.challenge_id)
    assert (result.outcome, result.reason) == (Outcome.REJECTED, "unknown_credential")


def test_a_challenge_issued_to_another_person_cannot_be_used(host: Host) -> None:
    ada_key, bob_key = SoftAuthenticator(ORIGIN), SoftAuthenticator(ORIGIN)
    enrol(host, ADA, ada_key)
    enrol(host, BOB, bob_key)
    bobs = host.begin_challenge(BOB)
    answer = {"credential": bob_key.get(options(bobs))}
    result = host.verify(ADA, answer, challenge_id=bobs.challenge_id)
    assert result.outcome is Outcome.REJECTED
    assert host.verify(BOB, answer, challenge_id=bobs.challenge_id).accepted


def _hostile_json(parsed: dict[str, Any]) -> list[str]:
    """Broken JSON, and a browser's answer ``parsed`` broken in the fields both ceremonies share."""
    response = parsed["response"]
    deep = "[" * 100_000 + "]" * 100_000
    return [
        "null",
        "[]",
        "{}",
        "42",
        '"text"',
        "{",
        deep[:16_000],
        "x" * 100_000,
        json.dumps({**parsed, "rawId": "!!!not base64!!!"}),
        json.dumps({**parsed, "id": 7}),
        json.dumps({**parsed, "type": "password"}),
        json.dumps({**parsed, "response": "nope"}),
        json.dumps({**parsed, "response": {**response, "clientDataJSON": b64url(b"not json")}}),
        json.dumps({**parsed, "response": {**response, "clientDataJSON": b64url(b"[1, 2]")}}),
    ]


def _hostile_credentials(valid: str) -> list[str]:
    parsed = json.loads(valid)
    response = parsed["response"]
    return [
        "",
        *_hostile_json(parsed),
        json.dumps({**parsed, "response": {**response, "authenticatorData": "AAAA"}}),
        json.dumps({**parsed, "response": {**response, "signature": ""}}),
        json.dumps({**parsed, "response": {**response, "userHandle": 12}}),
        json.dumps({**parsed, "authenticatorAttachment": "\u0000"}),
    ]


def test_hostile_json_at_login_is_refused_without_crashing(host: Host) -> None:
    key = SoftAuthenticator(ORIGIN)
    enrol(host, ADA, key)
    started = host.begin_challenge(ADA)
    valid = key.get(options(started))
    for hostile in _hostile_credentials(valid):
        started = host.begin_challenge(ADA)
        result = host.verify(ADA, {"credential": hostile}, challenge_id=started.challenge_id)
        assert result.outcome is Outcome.REJECTED, hostile[:80]
        assert result.reason not in {"module_error", "module_unavailable"}, hostile[:80]
    assert not [e for e in host.audit_events(limit=1000) if e.reason == "module_error"]


# -- registration -------------------------------------------------------------------


def test_registration_options_follow_the_settings(host: Host) -> None:
    step = host.begin_setup(ADA, "webauthn")
    assert isinstance(step, SetupStarted) and step.prompt.ceremony is not None
    sent = json.loads(step.prompt.ceremony.options_json)
    assert sent["rp"] == {"id": "localhost", "name": "secmod"}
    assert sent["attestation"] == "none"
    assert sent["authenticatorSelection"]["residentKey"] == "preferred"
    assert sent["authenticatorSelection"]["userVerification"] == "preferred"
    assert sent["excludeCredentials"] == []
    handle = from_b64url(sent["user"]["id"])
    assert len(handle) == 32 and ADA.email.encode() not in handle  # opaque, never the email
    assert sent["user"]["name"] == ADA.email
    assert "options_json" not in repr(step) and sent["challenge"] not in repr(step)


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ({"origin": "https://evil.example"}, "wrong_origin"),
        ({"rp_id": "evil.example"}, "wrong_rp_id"),
        ({"challenge": b64url(b"not the challenge that was sent")}, "wrong_challenge"),
    ],
    ids=["origin", "rp-id", "challenge"],
)
def test_tampered_registration_is_refused_and_can_be_retried(
    host: Host, tamper: dict[str, Any], reason: str
) -> None:
    key = SoftAuthenticator(ORIGIN)
    step = host.begin_setup(ADA, "webauthn")
    assert isinstance(step, SetupStarted) and step.prompt.ceremony is not None
    refused = host.continue_setup(
        ADA,
        step.setup_id,
        {"name": "Key", "credential": key.create(step.prompt.ceremony.options_json, **tamper)},
    )
    assert isinstance(refused, SetupStarted) and refused.error
    assert host.status(ADA) is None
    assert host.audit_events(user=ADA, limit=1)[0].reason == reason
    # The same step (the prompt and its ceremony came back sealed) still works.
    assert refused.prompt.ceremony is not None
    assert refused.prompt.ceremony.options_json == step.prompt.ceremony.options_json
    done = host.continue_setup(
        ADA,
        step.setup_id,
        {
            "name": "Key",
            "credential": SoftAuthenticator(ORIGIN).create(refused.prompt.ceremony.options_json),
        },
    )
    assert isinstance(done, Enrolled)


def test_hostile_json_at_registration_is_refused_without_crashing(host: Host) -> None:
    step = host.begin_setup(ADA, "webauthn")
    assert isinstance(step, SetupStarted) and step.prompt.ceremony is not None
    parsed = json.loads(SoftAuthenticator(ORIGIN).create(step.prompt.ceremony.options_json))
    response = parsed["response"]
    hostile = [
        *_hostile_json(parsed),
        json.dumps(
            {**parsed, "response": {**response, "attestationObject": b64url(b"\xff\x00garbage")}}
        ),
        json.dumps({**parsed, "response": {**response, "attestationObject": ""}}),
        json.dumps(
            {**parsed, "response": {**response, "attestationObject": b64url(b"\xa0")}}
        ),  # CBOR {}
    ]
    for text in hostile:
        refused = host.continue_setup(ADA, step.setup_id, {"name": "Key", "credential": text})
        assert isinstance(refused, SetupStarted) and refused.error, text[:80]
    assert not [e for e in host.audit_events(limit=1000) if e.reason == "module_error"]
    assert host.status(ADA) is None
    oversized = host.continue_setup(
        ADA, step.setup_id, {"name": "Key", "credential": "{" + " " * 20_000 + "}"}
    )
    assert isinstance(oversized, SetupStarted) and "could not be registered" in oversized.error
    assert host.audit_events(user=ADA, limit=1)[0].reason == "malformed"


# -- several keys -------------------------------------------------------------------


def manage(
    host: Host, user: User, answer: dict[str, str], key: SoftAuthenticator | None = None
) -> Any:
    step = host.begin_setup(user, "webauthn")
    assert isinstance(step, SetupStarted) and step.prompt.ceremony is not None
    if key is not None:
        answer = {**answer, "credential": key.create(step.prompt.ceremony.options_json)}
    return host.continue_setup(user, step.setup_id, answer)


def test_a_second_key_is_added_and_the_first_removed(host: Host) -> None:
    laptop, spare = SoftAuthenticator(ORIGIN), SoftAuthenticator(ORIGIN)
    first = enrol(host, ADA, laptop, name="Laptop")
    assert first.backup_codes
    step = host.begin_setup(ADA, "webauthn")
    assert isinstance(step, SetupStarted) and step.prompt.ceremony is not None
    assert "Laptop" in step.prompt.instructions
    assert [f.name for f in step.prompt.fields] == ["name", "remove", "credential"]
    excluded = json.loads(step.prompt.ceremony.options_json)["excludeCredentials"]
    assert [from_b64url(item["id"]) for item in excluded] == list(laptop.credentials)

    added = host.continue_setup(
        ADA,
        step.setup_id,
        {"name": "Spare key", "credential": spare.create(step.prompt.ceremony.options_json)},
    )
    assert isinstance(added, Enrolled) and added.backup_codes == ()  # the backup code is kept
    assert "2 keys" in added.message
    assert login(host, ADA, laptop).accepted and login(host, ADA, spare).accepted
    assert host.recover(ADA, {"code": first.backup_codes[0]}).accepted

    removed = manage(host, ADA, {"remove": " laptop "})
    assert isinstance(removed, Enrolled), removed
    assert [c["name"] for c in stored_state(host, ADA)["credentials"]] == ["Spare key"]
    assert login(host, ADA, spare).accepted
    started = host.begin_challenge(ADA)
    assert not laptop.holds_any(options(started))
    (laptop_id,) = laptop.credentials
    result = host.verify(
        ADA,
        {"credential": laptop.get(options(started), credential_id=laptop_id)},
        challenge_id=started.challenge_id,
    )
    assert (result.outcome, result.reason) == (Outcome.REJECTED, "unknown_credential")


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ({"remove": "Laptop"}, "last_key"),
        ({"remove": "Nothing by that name"}, "no_such_key"),
        ({}, "no_credential"),
        ({"name": "x" * 65}, "bad_name"),
        ({"name": "laptop"}, "duplicate_name"),
    ],
)
def test_managing_keys_refuses_what_would_go_wrong(
    host: Host, answer: dict[str, str], reason: str
) -> None:
    laptop = SoftAuthenticator(ORIGIN)
    enrol(host, ADA, laptop, name="Laptop")
    key = SoftAuthenticator(ORIGIN) if "name" in answer else None
    refused = manage(host, ADA, answer, key)
    assert isinstance(refused, SetupStarted) and refused.error
    assert host.audit_events(user=ADA, limit=1)[0].reason == reason
    assert login(host, ADA, laptop).accepted


def test_registering_and_removing_at_once_is_refused(host: Host) -> None:
    enrol(host, ADA, SoftAuthenticator(ORIGIN), name="Laptop")
    enrol(host, ADA, SoftAuthenticator(ORIGIN), name="Spare")
    refused = manage(host, ADA, {"name": "Third", "remove": "Laptop"}, SoftAuthenticator(ORIGIN))
    assert isinstance(refused, SetupStarted) and "not both" in refused.error
    assert len(stored_state(host, ADA)["credentials"]) == 2


def test_the_same_key_cannot_be_registered_twice(host: Host) -> None:
    laptop = SoftAuthenticator(ORIGIN)
    enrol(host, ADA, laptop)
    step = host.begin_setup(ADA, "webauthn")
    assert isinstance(step, SetupStarted) and step.prompt.ceremony is not None
    # A browser that ignored excludeCredentials: the server refuses all the same.
    (laptop_id,) = laptop.credentials
    response = laptop.create(step.prompt.ceremony.options_json, reuse=laptop_id)
    refused = host.continue_setup(ADA, step.setup_id, {"name": "Again", "credential": response})
    assert isinstance(refused, SetupStarted) and "already registered" in refused.error
    assert len(stored_state(host, ADA)["credentials"]) == 1


def test_the_number_of_keys_is_capped(start: Callable[..., Host]) -> None:
    host = start(max_credentials=1)
    enrol(host, ADA, SoftAuthenticator(ORIGIN))
    refused = manage(host, ADA, {"name": "Two"}, SoftAuthenticator(ORIGIN))
    assert isinstance(refused, SetupStarted) and "most allowed" in refused.error


def test_a_registration_response_posted_at_login_is_refused(host: Host) -> None:
    key = SoftAuthenticator(ORIGIN)
    enrol(host, ADA, key)
    started = host.begin_challenge(ADA)
    sent = json.loads(options(started))
    credential = json.loads(key.get(options(started)))
    client_data = json.loads(from_b64url(credential["response"]["clientDataJSON"]))
    client_data["type"] = "webauthn.create"
    credential["response"]["clientDataJSON"] = b64url(json.dumps(client_data).encode())
    result = host.verify(
        ADA, {"credential": json.dumps(credential)}, challenge_id=started.challenge_id
    )
    assert (result.outcome, result.reason) == (Outcome.REJECTED, "wrong_ceremony")
    assert sent["challenge"] == client_data["challenge"]
