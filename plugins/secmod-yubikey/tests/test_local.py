"""Local mode: secmod validates with the AES keys the operator imported, no network."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from secmod.hookspecs import User, messages
from secmod.host import Enrolled, Outcome
from secmod.host.sealing import KeyRing
from secmod_yubikey.testing.soft_yubikey import SoftYubiKey
from secmod_yubikey import YubikeySettings
from secmod_yubikey.keys import KeyImportError, LocalKey, dump_keys, load_key_table, merge_keys, parse_key_export


def table_for(*keys: SoftYubiKey, **owners: str) -> dict[str, dict[str, str]]:
    return {
        k.public_id: {"aes_key": k.aes_key.hex(), "private_id": k.private_id.hex()}
        | ({"owner": owners[k.public_id]} if k.public_id in owners else {})
        for k in keys
    }


def local(*keys: SoftYubiKey, **extra: Any) -> dict[str, Any]:
    return {"mode": "local", "keys": table_for(*keys), **extra}


def enrol(host: Any, user: User, otp: str) -> Any:
    step = host.begin_setup(user, "yubikey")
    return host.continue_setup(user, step.setup_id, {"otp": otp})


def login(host: Any, user: User, otp: str) -> Any:
    started = host.begin_challenge(user)
    return host.verify(user, {"otp": otp}, challenge_id=started.challenge_id)


def test_local_mode_end_to_end_with_counters(yubikey_host: Any, ada: User) -> None:
    key = SoftYubiKey()
    host = yubikey_host(local(key), throttle={"max_code_failures": 100})
    setup_otp = key.press()
    done = enrol(host, ada, setup_otp)
    assert isinstance(done, Enrolled) and done.message == messages.YUBICO_SAVED
    assert login(host, ada, setup_otp).reason == "replayed", "the enrolment OTP is used up"
    early, late = key.press(), key.press()
    assert login(host, ada, late).accepted
    assert login(host, ada, late).reason == "replayed"
    assert login(host, ada, early).reason == "replayed", "older counters than the last accepted"
    key.plug_in()  # usage + 1, session back to 0: still newer
    assert login(host, ada, key.press()).accepted
    # Same public id, another AES key: a forged OTP does not decrypt.
    forged = SoftYubiKey(public_id=key.public_id, private_id=key.private_id)
    assert login(host, ada, forged.press()).reason == "bad_otp"
    # Right AES key, another private id: refused as well.
    other_uid = SoftYubiKey(public_id=key.public_id, aes_key=key.aes_key, usage=500)
    assert login(host, ada, other_uid.press()).reason == "bad_otp"
    assert login(host, ada, key.press()).accepted


def test_racing_double_submission_is_accepted_once(yubikey_host: Any, ada: User) -> None:
    key = SoftYubiKey()
    host = yubikey_host(local(key))
    assert isinstance(enrol(host, ada, key.press()), Enrolled)
    otp = key.press()
    challenges = [host.begin_challenge(ada) for _ in range(2)]
    barrier = threading.Barrier(2)
    results: list[Any] = [None, None]

    def submit(index: int) -> None:
        barrier.wait(timeout=10)
        results[index] = host.verify(ada, {"otp": otp}, challenge_id=challenges[index].challenge_id)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    outcomes = sorted(r.outcome for r in results)
    assert outcomes == [Outcome.ACCEPTED, Outcome.REJECTED], results
    assert [r.reason for r in results if not r.accepted] == ["replayed"]


def test_only_imported_keys_can_be_bound(yubikey_host: Any, ada: User, bob: User) -> None:
    imported, stranger, bobs = SoftYubiKey(), SoftYubiKey(), SoftYubiKey()
    table = table_for(imported, bobs, **{bobs.public_id: bob.id})
    host = yubikey_host({"mode": "local", "keys": table})
    refused = enrol(host, ada, stranger.press())
    assert refused.error == messages.YUBICO_INVALID and "administrator" in refused.detail
    refused = enrol(host, ada, bobs.press())  # the operator gave this key to Bob
    assert refused.error == messages.YUBICO_INVALID
    assert isinstance(enrol(host, bob, bobs.press()), Enrolled)
    assert isinstance(enrol(host, ada, imported.press()), Enrolled)
    assert login(host, bob, imported.press()).reason == "unknown_key"
    assert login(host, ada, imported.press()).accepted


def test_a_key_removed_by_the_operator_stops_working(yubikey_host: Any, ada: User, tmp_path: Path) -> None:
    key, spare = SoftYubiKey(), SoftYubiKey()
    host = yubikey_host(local(key, spare))
    assert isinstance(enrol(host, ada, key.press()), Enrolled)
    host.close()
    host = yubikey_host(local(spare))  # same database and key file, key no longer imported
    assert login(host, ada, key.press()).reason == "key_revoked"


def test_dvorak_and_quotes_in_local_mode(yubikey_host: Any, ada: User) -> None:
    key = SoftYubiKey(dvorak=True)
    host = yubikey_host(local(key))
    assert isinstance(enrol(host, ada, f' "{key.press()}" '), Enrolled)
    assert login(host, ada, key.press().upper() + "\n").accepted


def test_keys_sealed_as_one_value(make_host: Any, tmp_path: Path, ada: User) -> None:
    # What `secmod` will write after an import: the whole table as one sealed string.
    key = SoftYubiKey()
    ring = KeyRing.open(tmp_path / "secmod.keys")
    sealed = ring.seal_setting("yubikey", "keys", dump_keys(parse_key_export(key.csv_line(serial=123))))
    assert key.aes_key.hex() not in sealed
    host = make_host(
        {"yubikey": {"clients": True, "mode": "local", "keys": sealed}}, loading={"allow": ["yubikey"]}
    )
    settings = host.module_settings["yubikey"]
    assert set(settings.keys) == {key.public_id}
    assert key.aes_key.hex() not in repr(settings)
    assert isinstance(enrol(host, ada, key.press()), Enrolled)
    assert login(host, ada, key.press()).accepted


# -- importing keys ---------------------------------------------------------------------


def test_parse_ykman_and_personalization_tool_lines() -> None:
    first, second = SoftYubiKey(), SoftYubiKey()
    text = "\n".join(
        [
            "# exported 2026-11-28",
            "serial,public_id,private_id,aes_key,access_code,timestamp,",
            first.csv_line(serial=4455667),
            "",
            f"Yubico OTP,11/28/26 9:00 AM,1,{second.public_id},{second.private_id.hex()},"
            f"{second.aes_key.hex().upper()},,,0,0,0,0,0,0,0,0,0,0",
        ]
    )
    table = parse_key_export(text)
    assert set(table) == {first.public_id, second.public_id}
    assert table[second.public_id].aes_bytes() == second.aes_key
    assert table[first.public_id].uid_bytes() == first.private_id
    assert load_key_table(dump_keys(table)) == table
    assert load_key_table(text) == table  # CSV pasted as the setting value works too
    assert second.aes_key.hex() not in repr(table)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1,vvcccccccccc,0011223344,{aes},,,", "line 1: key vvcccccccccc: private_id must be 12 hex"),
        ("1,vvcccccccccc,001122334455,{bad},,,", "line 1: key vvcccccccccc: aes_key must be 32 hex"),
        ("1,vvcccccccccx,001122334455,{aes},,,", "line 1: public id 'vvcccccccccx' must be 12 modhex"),
        ("abc,vvcccccccccc,001122334455,{aes},,,", "serial number"),
        ("1,vvcccccccccc", "needs serial,public_id,private_id,aes_key"),
    ],
)
def test_import_errors_name_the_line_but_never_the_secret(line: str, message: str) -> None:
    aes, bad = "a1" * 16, "zz" + "a1" * 15
    with pytest.raises(KeyImportError, match=message) as error:
        parse_key_export(line.format(aes=aes, bad=bad))
    assert aes not in str(error.value) and bad not in str(error.value)


def test_import_refuses_duplicates_and_silent_replacement() -> None:
    key = SoftYubiKey()
    with pytest.raises(KeyImportError, match="appears twice"):
        parse_key_export(key.csv_line() + "\n" + key.csv_line())
    current = parse_key_export(key.csv_line())
    reprogrammed = parse_key_export(SoftYubiKey(public_id=key.public_id).csv_line())
    with pytest.raises(KeyImportError, match="already imported with other secrets"):
        merge_keys(current, reprogrammed)
    assert merge_keys(current, reprogrammed, replace=True) == reprogrammed
    assert merge_keys(current, current) == current


def test_keys_setting_validation() -> None:
    key = SoftYubiKey()
    with pytest.raises(ValueError, match="seal the whole table"):
        YubikeySettings.model_validate(
            {"mode": "local", "keys": {key.public_id: {"aes_key": "sealed:k1$abc", "private_id": "00" * 6}}}
        )
    with pytest.raises(ValueError, match="keys is still sealed"):
        YubikeySettings.model_validate({"mode": "local", "keys": "sealed:k1$abc"})
    with pytest.raises(ValueError, match="extra|Extra"):
        YubikeySettings.model_validate(
            {"keys": {key.public_id: {"aes_key": "00" * 16, "private_id": "00" * 6, "colour": "red"}}}
        )
    settings = YubikeySettings.model_validate({"clients": True, **local(key)})
    assert isinstance(settings.keys[key.public_id], LocalKey)
    assert key.aes_key.hex() not in repr(settings) and key.aes_key.hex() not in str(settings.model_dump())
