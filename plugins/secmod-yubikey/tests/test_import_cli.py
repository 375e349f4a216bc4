"""``secmod yubikey import-keys``: an export becomes a sealed key table a host can use."""

from __future__ import annotations

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
    assert "# operator's notes stay" in text and 'keys = "sealed:' in text and key.aes_key.hex() not in text

    again = runner.invoke(app, ["yubikey", "import-keys", str(export), "--config", str(config)])
    assert again.exit_code == 0 and "1 keys configured" in again.output

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
