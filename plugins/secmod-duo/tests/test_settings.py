"""DuoSettings: bad values are refused at load with a clear message and no secret."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from secmod.host import Host
from secmod.settings import ConfigError, SecmodSettings
from secmod_duo import DuoSettings

GOOD = {
    "client_id": "DIABCDEFGHIJKLMNOPQR",
    "client_secret": "s" * 39 + "S",
    "api_hostname": "api-12345678.duosecurity.com",
    "redirect_url": "https://portal.example.com/login/duo/callback",
}


def refused(**changes: object) -> str:
    with pytest.raises(ValidationError) as caught:
        DuoSettings(**{**GOOD, **changes})
    return str(caught.value)


def test_good_settings_load_and_hide_the_secret():
    settings = DuoSettings(**GOOD, clients=True)
    assert settings.client_secret.get_secret_value() == GOOD["client_secret"]
    assert GOOD["client_secret"] not in repr(settings)
    assert settings.username == "email" and settings.http_timeout == 10


def test_pasted_whitespace_is_trimmed():
    settings = DuoSettings(**{k: f"  {v}\n" for k, v in GOOD.items()})
    assert settings.client_id == GOOD["client_id"]
    assert settings.client_secret.get_secret_value() == GOOD["client_secret"]


def test_an_installed_but_unused_module_needs_no_settings():
    assert not DuoSettings().configured


def test_the_redirect_url_is_an_optional_override():
    """The host builds the callback from [web] base_url; redirect_url is only an override."""
    settings = DuoSettings(**{**GOOD, "redirect_url": ""}, clients=True)
    assert settings.configured and settings.redirect_url == ""


def test_enabled_without_credentials_names_what_is_missing():
    with pytest.raises(ValidationError, match="client_secret .Client Secret.*api_hostname"):
        DuoSettings(clients=True, client_id=GOOD["client_id"], redirect_url=GOOD["redirect_url"])


@pytest.mark.parametrize("value", ["DI123", "DIABCDEFGHIJKLMNOPQRS", "DIABCDEFGHIJKLMNOP-R"])
def test_client_id_must_be_20_letters_and_digits(value):
    assert "Client ID must be exactly 20" in refused(client_id=value)


@pytest.mark.parametrize("length", [39, 41])
def test_client_secret_must_be_40_characters_and_is_never_echoed(length):
    secret = "x" * (length - 1) + "Q"
    message = refused(client_secret=secret)
    assert "Client Secret must be exactly 40 characters" in message
    assert f"has {length}" in message
    assert secret not in message


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("https://api-12345678.duosecurity.com", "must not include a scheme"),
        ("api-12345678.duosecurity.com/oauth", "without a path"),
        ("api-12345678.duosecurity.com:99999", "port"),
        ("api_1234.duosecurity.com", "not a valid host name"),
    ],
)
def test_api_hostname_is_a_bare_host(value, words):
    assert words in refused(api_hostname=value)


def test_api_hostname_may_carry_a_port_for_a_local_fake():
    assert DuoSettings(**{**GOOD, "api_hostname": "127.0.0.1:8443"}).api_hostname == "127.0.0.1:8443"


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("/login/duo/callback", "absolute https"),
        ("http://portal.example.com/login/duo/callback", "must use https"),
        ("https://portal.example.com/cb#x", "fragment"),
    ],
)
def test_redirect_url_is_absolute_and_https(value, words):
    assert words in refused(redirect_url=value)


def test_plain_http_redirect_is_allowed_on_loopback_only():
    assert DuoSettings(**{**GOOD, "redirect_url": "http://127.0.0.1:8000/login/duo/callback"}).redirect_url


def test_unknown_keys_are_refused_as_for_every_module():
    assert "Extra inputs are not permitted" in refused(integration_key="DIABCDEFGHIJKLMNOPQR")


def test_fail_mode_and_username_are_closed_lists():
    assert "fail_mode" in refused(fail_mode="maybe")
    assert "username" in refused(username="phone")


def test_ca_file_must_exist(tmp_path):
    assert "does not exist" in refused(ca_file=str(tmp_path / "missing.pem"))


def test_the_host_refuses_bad_settings_naming_the_key_and_not_the_secret(tmp_path):
    import secmod_duo

    bad_secret = "z" * 12
    settings = SecmodSettings(
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", sealing={"key_file": str(tmp_path / "keys")},
        modules={"duo": {**GOOD, "client_secret": bad_secret, "clients": True}},
    )
    with pytest.raises(ConfigError) as caught:
        Host(settings, entry_points=False, modules={"duo": secmod_duo})
    assert "[modules.duo] client_secret: Value error, Client Secret must be exactly 40" in str(caught.value)
    assert bad_secret not in str(caught.value)


def test_a_sealed_secret_in_the_settings_is_unsealed_by_the_host(tmp_path):
    import secmod_duo
    from secmod.host.sealing import KeyRing

    keys = tmp_path / "keys"
    sealed = KeyRing.open(keys).seal_setting("duo", "client_secret", GOOD["client_secret"])
    settings = SecmodSettings(
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", sealing={"key_file": str(keys)},
        modules={"duo": {**GOOD, "client_secret": sealed, "clients": True}},
    )
    with Host(settings, entry_points=False, modules={"duo": secmod_duo}) as host:
        loaded = host.module_settings["duo"]
    assert loaded.client_secret.get_secret_value() == GOOD["client_secret"]
