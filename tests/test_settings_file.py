"""secmod.host.ModuleSettingsFile: the public way a module's command reads and seals settings."""

from __future__ import annotations

import pytest

from secmod.host import ConfigError, ModuleSettingsFile
from secmod.settings import load_settings


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "secmod.toml"
    path.write_text('# the operator\'s notes stay\n[sealing]\nkey_file = "s.keys"\n[modules.word]\nclients = true\n')
    return path


def test_a_sealed_value_is_written_and_read_back_opened(config):
    table = ModuleSettingsFile("Word", config)
    table.set_sealed("secret", "hunter2-hunter2")
    text = config.read_text()
    assert "# the operator's notes stay" in text and "hunter2" not in text and 'secret = "sealed:' in text
    again = ModuleSettingsFile("word", config)
    assert again.get("secret") == "hunter2-hunter2"
    assert again.get("clients") is True and again.get("missing", 7) == 7
    assert "hunter2" not in repr(again)
    # The host opens it the same way.
    assert load_settings(config).modules["word"]["secret"].startswith("sealed:")


def test_a_table_of_secrets_is_sealed_value_by_value(config):
    table = ModuleSettingsFile("word", config)
    table.set("keys", {"k1": {"aes": table.seal("keys.k1.aes", "00112233"), "owner": "ada"}})
    assert "00112233" not in config.read_text()
    assert ModuleSettingsFile("word", config).get("keys") == {"k1": {"aes": "00112233", "owner": "ada"}}


def test_a_value_moved_to_another_key_does_not_open(config):
    table = ModuleSettingsFile("word", config)
    table.set("other", table.seal("secret", "hunter2-hunter2"))
    with pytest.raises(ConfigError, match=r"\[modules.word\] other"):
        ModuleSettingsFile("word", config).get("other")


def test_a_missing_key_file_is_a_config_error(config):
    table = ModuleSettingsFile("word", config)
    table.set_sealed("secret", "hunter2-hunter2")
    (config.parent / "s.keys").unlink()
    with pytest.raises(ConfigError):
        ModuleSettingsFile("word", config).get("secret")
