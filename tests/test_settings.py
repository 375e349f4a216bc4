"""secmod.toml and SECMOD_* environment variables."""

from __future__ import annotations

import pytest

from secmod.host import ConfigError, Host, ModuleLoadError
from secmod.settings import load_settings


def write(tmp_path, text: str):
    path = tmp_path / "secmod.toml"
    path.write_text(text)
    return path


def test_missing_file_means_embedded_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.database_url == "sqlite:///secmod.db"
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'secmod.db'}"
    assert settings.throttle.max_code_failures == 5 and settings.backup_codes.count == 1


def test_an_explicit_file_that_does_not_exist_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml")


def test_values_come_from_the_file_and_paths_are_relative_to_it(tmp_path):
    path = write(tmp_path, 'database_url = "sqlite:///data/s.db"\nforce_clients = true\n[throttle]\nlockout_minutes = 5\n')
    settings = load_settings(path)
    assert settings.force_clients and settings.throttle.lockout_minutes == 5
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'data' / 's.db'}"
    assert settings.resolve(settings.sealing.key_file) == tmp_path / "secmod.keys"


def test_environment_overrides_the_file(tmp_path, monkeypatch):
    path = write(tmp_path, "force_admins = false\n[modules.totp]\ndigits = 6\n")
    monkeypatch.setenv("SECMOD_FORCE_ADMINS", "true")
    monkeypatch.setenv("SECMOD_THROTTLE__MAX_CODE_FAILURES", "7")
    monkeypatch.setenv("SECMOD_MODULES__TOTP__DIGITS", "8")
    settings = load_settings(path)
    assert settings.force_admins and settings.throttle.max_code_failures == 7
    assert settings.modules["totp"]["digits"] == "8"


def test_config_path_comes_from_the_environment(tmp_path, monkeypatch):
    path = write(tmp_path, 'issuer = "Example Co"\n')
    monkeypatch.setenv("SECMOD_CONFIG", str(path))
    assert load_settings().issuer == "Example Co"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("forse_clients = true\n", "forse_clients: unknown key"),
        ("[throttle]\nmax_code_failures = 0\n", "throttle.max_code_failures: Input should be greater than or equal to 1"),
        ("[throttle]\nlockout = 3\n", "throttle.lockout: unknown key"),
        ("force_clients = [\n", "secmod.toml"),
    ],
)
def test_a_bad_file_names_the_file_and_the_key(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert str(path) in str(caught.value) and expected in str(caught.value)


def test_module_tables_are_validated_by_the_module(tmp_path):
    path = write(tmp_path, f'[sealing]\nkey_file = "{tmp_path}/k"\n[modules.totp]\ndigits = 7\nperiod = 30\ncolour = "red"\n')
    with pytest.raises(ConfigError) as caught:
        Host(load_settings(path))
    message = str(caught.value)
    assert f"{path}: [modules.totp] digits: Input should be 6 or 8" in message
    assert f"{path}: [modules.totp] colour: unknown key" in message


def test_a_module_enabled_in_the_file_must_be_installed(tmp_path):
    path = write(tmp_path, f'[sealing]\nkey_file = "{tmp_path}/k"\n[modules.smoke_signals]\nclients = true\n')
    with pytest.raises(ModuleLoadError, match="'smoke_signals' is enabled in the settings but no installed distribution provides it"):
        Host(load_settings(path))


def test_secret_settings_can_be_sealed_in_the_file(tmp_path, make_host):
    host = make_host()
    sealed = host.keyring.seal_setting("totp", "issuer", "Sealed Co")
    other = make_host({"totp": {"issuer": sealed}})
    assert other.module_settings["totp"].issuer == "Sealed Co"
    # A sealed value is bound to its key: moved to another setting it does not open.
    moved = host.keyring.seal_setting("totp", "other", "Sealed Co")
    with pytest.raises(ConfigError, match=r"\[modules.totp\] issuer: sealed value does not open"):
        make_host({"totp": {"issuer": moved}})


@pytest.mark.parametrize("module", ["duo", "yubikey"])
def test_a_relative_ca_file_is_next_to_the_config_file_not_the_working_folder(tmp_path, monkeypatch, module):
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    path = write(folder, f'database_url = "sqlite:///s.db"\n[modules.{module}]\nca_file = "ca.pem"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with Host(load_settings(path)) as host:
        assert host.module_settings[module].ca_file == str(folder / "ca.pem")


def test_nested_sealed_values_open_each_under_their_own_name(tmp_path):
    """A table of secrets (YubiKey's keys) is sealed value by value; each is bound to its place."""
    from secmod.host.sealing import KeyRing
    from secmod_yubikey.testing.soft_yubikey import SoftYubiKey

    ring = KeyRing.open(tmp_path / "secmod.keys")
    key = SoftYubiKey()
    place = f"keys.{key.public_id}"
    aes = ring.seal_setting("yubikey", f"{place}.aes_key", key.aes_key.hex())
    uid = ring.seal_setting("yubikey", f"{place}.private_id", key.private_id.hex())
    path = write(tmp_path, f'database_url = "sqlite:///s.db"\n[modules.yubikey.{place}]\n'
                           f'aes_key = "{aes}"\nprivate_id = "{uid}"\n')
    with Host(load_settings(path)) as host:
        opened = host.module_settings["yubikey"].keys[key.public_id]
        assert opened.aes_key.get_secret_value() == key.aes_key.hex() and opened.private_id == key.private_id.hex()
    swapped = write(tmp_path, f'database_url = "sqlite:///s.db"\n[modules.yubikey.{place}]\n'
                              f'aes_key = "{uid}"\nprivate_id = "{aes}"\n')
    with pytest.raises(ConfigError, match=rf"\[modules.yubikey\] {place}.aes_key: sealed value does not open"):
        Host(load_settings(swapped))


@pytest.mark.parametrize("minutes", [float("inf"), float("nan"), 1e300, 0, -1])
def test_a_lockout_that_cannot_end_as_a_date_is_refused_by_the_model_itself(minutes):
    """An embedding application building settings in code gets the same bound as the file."""
    from pydantic import ValidationError

    from secmod.settings import SecmodSettings

    with pytest.raises(ValidationError, match="lockout_minutes"):
        SecmodSettings(throttle={"lockout_minutes": minutes})
