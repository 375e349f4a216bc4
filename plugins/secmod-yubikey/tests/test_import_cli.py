"""``secmod yubikey import-keys``: an export becomes a sealed key table a host can use."""

from __future__ import annotations

import tomllib

from typer.testing import CliRunner

from secmod.hookspecs import Audience, User
from secmod.host import Host
from secmod.settings import load_settings
from secmod_yubikey.testing.soft_yubikey import SoftYubiKey
from secmod.host.cli import add_module_commands

runner = CliRunner()
app = add_module_commands([])


def test_imported_keys_are_sealed_into_the_config_and_validate(tmp_path):
    config = tmp_path / "secmod.toml"
    config.write_text(
        "# operator's notes stay\n"
        f'database_url = "sqlite:///{tmp_path / "s.db"}"\n'
        "[modules.yubikey]\nclients = true\nmode = \"local\"\n"
    )
    key = SoftYubiKey()
    export = tmp_path / "export.csv"
    export.write_text("serial,public_id,private_id,aes_key,access_code,timestamp,\n" + key.csv_line(serial=1) + "\n")
    result = runner.invoke(app, ["yubikey", "import-keys", str(export), "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert key.public_id in result.output and key.aes_key.hex() not in result.output
    text = config.read_text()
    assert "# operator's notes stay" in text and key.aes_key.hex() not in text
    # Sealed secret by secret, each bound to its key's place: the table stays readable.
    table = tomllib.loads(text)["modules"]["yubikey"]["keys"][key.public_id]
    assert table["aes_key"].startswith("sealed:") and table["private_id"].startswith("sealed:")

    again = runner.invoke(app, ["yubikey", "import-keys", str(export), "--config", str(config)])
    assert again.exit_code == 0 and "1 keys configured" in again.output

    from secmod.host.cli import app as secmod_app

    rotated = runner.invoke(secmod_app, ["--config", str(config), "keys", "rotate"])
    assert rotated.exit_code == 0 and "and 2 settings" in rotated.output, rotated.output
    assert tomllib.loads(config.read_text())["modules"]["yubikey"]["keys"][key.public_id] != table

    with Host(load_settings(config)) as host:
        user = User(id="7", audience=Audience.CLIENT)
        started = host.begin_setup(user, "yubikey")
        enrolled = host.continue_setup(user, started.setup_id, {"otp": key.press()})
        assert enrolled.backup_codes
        assert host.verify(user, {"otp": key.press()}).accepted


def test_a_bad_export_is_one_line_and_changes_nothing(tmp_path):
    config = tmp_path / "secmod.toml"
    config.write_text("[modules.yubikey]\n")
    export = tmp_path / "export.csv"
    export.write_text("1,vvcccccccccc,0011,zz,,,\n")
    result = runner.invoke(app, ["yubikey", "import-keys", str(export), "--config", str(config)])
    assert result.exit_code == 2 and "line 1" in result.output
    assert config.read_text() == "[modules.yubikey]\n"


def _config(tmp_path):
    config = tmp_path / "secmod.toml"
    config.write_text(f'database_url = "sqlite:///{tmp_path / "s.db"}"\n[modules.yubikey]\nclients = true\nmode = "local"\n')
    return config


def test_a_personalization_tool_log_is_read_and_other_events_are_skipped_with_a_note(tmp_path):
    """A real Traditional format log: a LOGGING START line, then one line per programmed slot."""
    config = _config(tmp_path)
    key = SoftYubiKey()
    otp = f"Yubico OTP,11/28/26 9:01 AM,1,{key.public_id},{key.private_id.hex()},{key.aes_key.hex()},,,0,0,0,0,0,0,0,0,0,0"
    log = tmp_path / "configuration_log.csv"
    log.write_text(
        "LOGGING START,11/28/26 9:00 AM\n"
        + otp + "\n"
        + "Static Password,11/28/26 9:02 AM,2,,,00112233445566778899aabbccddeeff,,,0,0,0,0,0,0,0,0,0,0\n"
        + "OATH-HOTP,11/28/26 9:03 AM,2,,,0011223344556677889900112233445566778899,,,0,0,0,0,0,0,0,0,0,0\n"
    )
    result = runner.invoke(app, ["yubikey", "import-keys", str(log), "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "line 3: skipped a Static Password configuration (only Yubico OTP keys are imported)" in result.output
    assert "line 4: skipped a OATH-HOTP configuration" in result.output
    assert "1 keys configured" in result.output and "00112233" not in result.output
    with Host(load_settings(config)) as host:
        assert set(host.module_settings["yubikey"].keys) == {key.public_id}


def test_a_table_sealed_whole_by_an_older_version_still_opens_and_is_merged(tmp_path):
    from secmod.host.sealing import KeyRing
    from secmod_yubikey.keys import dump_keys, parse_key_export

    config = _config(tmp_path)
    old, new = SoftYubiKey(), SoftYubiKey()
    ring = KeyRing.open(tmp_path / "secmod.keys")
    blob = ring.seal_setting("yubikey", "keys", dump_keys(parse_key_export(old.csv_line(serial=1))))
    config.write_text(config.read_text() + f'keys = "{blob}"\n')
    with Host(load_settings(config)) as host:
        assert set(host.module_settings["yubikey"].keys) == {old.public_id}
    export = tmp_path / "export.csv"
    export.write_text(new.csv_line(serial=2) + "\n")
    result = runner.invoke(app, ["yubikey", "import-keys", str(export), "--config", str(config)])
    assert result.exit_code == 0 and "2 keys configured" in result.output, result.output
    with Host(load_settings(config)) as host:
        assert set(host.module_settings["yubikey"].keys) == {old.public_id, new.public_id}
